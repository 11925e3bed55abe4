//! Helpers shared by the engine commands' end-to-end tests: run the built
//! `outcore` binary in a temporary directory, write small arrays with
//! exact values, read arrays back.

#![allow(dead_code)] // each test file uses a different subset of these helpers

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use ndarray::ArrayView2;
use outcore::{ArrayFile, ArrayWriter, DType, Element, OutputSpec};
use serde_json::Value;

/// What one run of the binary produced.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts success with nothing on stderr (no progress bar off a
    /// terminal) and returns stdout.
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        assert_eq!(self.stderr, "", "{self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as exactly one JSON object.
    pub(crate) fn json(&self) -> Value {
        let out = self.ok();
        assert_eq!(out.lines().count(), 1, "one line of JSON: {out:?}");
        let v: Value = serde_json::from_str(out).expect("stdout is JSON");
        assert!(v.is_object(), "{v}");
        v
    }

    /// Asserts failure with `code`, nothing on stdout, and exactly one line
    /// `error: ...` on stderr; returns that line.
    pub(crate) fn error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        self.stderr.trim_end()
    }
}

/// Runs `outcore ARGS...` in `dir`, with stdin closed.
pub(crate) fn cli<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A committed NumPy fixture (see tests/fixtures/manifest.json).
pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/npy")
        .join(name)
}

/// Writes `data` (C order) as a `.npy` file of `shape`.
pub(crate) fn write_npy<T: Element>(path: &Path, shape: &[u64], data: &[T]) {
    let writer = ArrayWriter::create(path, OutputSpec::npy(T::DATA_TYPE, shape.to_vec()))
        .expect("create the array");
    let meta = writer.meta().clone();
    let view = ArrayView2::from_shape((meta.rows() as usize, meta.row_len()), data)
        .expect("data matches the shape");
    writer.write_block(0, view).expect("write the array");
    writer.finish().expect("finish the array");
}

/// Reads a whole array: its dtype, shape and values (C order).
pub(crate) fn read_npy<T: Element>(path: &Path) -> (DType, Vec<u64>, Vec<T>) {
    let file = ArrayFile::open(path).expect("open the array");
    let meta = file.meta().clone();
    let block = file.read_rows(0..meta.rows()).expect("read the array");
    let values = block.as_slice::<T>().expect("the expected dtype").to_vec();
    (meta.dtype, meta.shape, values)
}

/// Generates an array with `outcore gen` (extra arguments appended).
pub(crate) fn generate(dir: &Path, name: &str, shape: &str, dtype: &str, extra: &[&str]) {
    let mut args = vec!["gen", name, "--shape", shape, "--dtype", dtype];
    args.extend_from_slice(extra);
    cli(dir, &args).ok();
}

/// A JSON number (or "nan"/"inf"/"-inf" string) as `f64`.
pub(crate) fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("a number"),
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

/// A JSON list of numbers as `f64`s.
pub(crate) fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("a list").iter().map(num).collect()
}

/// Asserts `a` and `b` agree to a relative tolerance `rel` (absolute
/// near zero).
pub(crate) fn close(a: f64, b: f64, rel: f64) {
    let scale = a.abs().max(b.abs()).max(1.0);
    assert!((a - b).abs() <= rel * scale, "{a} vs {b} (rel {rel})");
}

/// Asserts two lists agree element by element (see [`close`]).
pub(crate) fn all_close(a: &[f64], b: &[f64], rel: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        close(*x, *y, rel);
    }
}
