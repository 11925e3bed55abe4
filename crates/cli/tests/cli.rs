//! End-to-end tests of the `outcore` binary: each runs the built executable
//! in a temporary directory and checks its exit status, stdout and stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use outcore::{ArrayFile, ByteOrder, DType, RawSpec};
use serde_json::Value;

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as exactly one JSON object.
    fn json(&self) -> Value {
        let out = self.ok();
        assert_eq!(out.lines().count(), 1, "one line of JSON: {out:?}");
        let v: Value = serde_json::from_str(out).expect("stdout is JSON");
        assert!(v.is_object(), "{v}");
        v
    }

    /// Asserts failure with `code`, nothing on stdout, and exactly one line
    /// `error: ...` on stderr; returns that line.
    fn error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        self.stderr.trim_end()
    }
}

/// Runs `outcore ARGS...` in `dir`, with stdin closed.
fn cli<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Run {
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

/// A committed NumPy fixture (see tests/fixtures/manifest.json).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/npy")
        .join(name)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

const INFO_KEYS: [&str; 16] = [
    "path",
    "format",
    "version",
    "shape",
    "dtype",
    "byte_order",
    "layout",
    "data_offset",
    "nbytes",
    "rows",
    "row_len",
    "row_bytes",
    "available_memory_bytes",
    "fits_in_memory",
    "as_float32_bytes",
    "as_float16_bytes",
];

#[test]
fn gen_then_info_round_trip() {
    let dir = tempdir();
    let g = cli(
        dir.path(),
        &[
            "gen", "x.npy", "--shape", "1000,20", "--dtype", "f64", "--json",
        ],
    )
    .json();
    assert_eq!(g["path"], "x.npy");
    assert_eq!(g["shape"], serde_json::json!([1000, 20]));
    assert_eq!(g["dtype"], "float64");
    assert_eq!(g["nbytes"], 160_000);
    assert_eq!(g["bytes_written"], 160_128);
    assert!(g["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{g}");
    assert_eq!(
        std::fs::metadata(dir.path().join("x.npy")).unwrap().len(),
        160_128
    );

    let info = cli(dir.path(), &["info", "x.npy", "--json"]).json();
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = INFO_KEYS.to_vec();
    keys.sort_unstable();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(info["path"], "x.npy");
    assert_eq!(info["format"], "npy");
    assert_eq!(info["version"], "1.0");
    assert_eq!(info["shape"], serde_json::json!([1000, 20]));
    assert_eq!(info["dtype"], "float64");
    assert_eq!(info["byte_order"], ByteOrder::NATIVE.name());
    assert_eq!(info["layout"], "C");
    assert_eq!(info["data_offset"], 128);
    assert_eq!(info["nbytes"], 160_000);
    assert_eq!(info["rows"], 1000);
    assert_eq!(info["row_len"], 20);
    assert_eq!(info["row_bytes"], 160);
    assert_eq!(info["as_float32_bytes"], 80_000);
    assert_eq!(info["as_float16_bytes"], 40_000);
    match info["available_memory_bytes"].as_u64() {
        Some(avail) => assert_eq!(info["fits_in_memory"], avail >= 160_000),
        None => assert!(info["fits_in_memory"].is_null(), "{info}"),
    }
}

#[test]
fn info_text_shows_sizes_exactly_and_smaller_floats() {
    let dir = tempdir();
    cli(dir.path(), &["gen", "x.npy", "--shape", "300,40"]).ok();
    let text = cli(dir.path(), &["info", "x.npy"]).ok().to_string();
    for needle in [
        "path:",
        "x.npy",
        "npy 1.0",
        "(300, 40)",
        "float64",
        "C (row-major)",
        "128 bytes",
        "93.8 KiB (96000 bytes)",
        "as float32:",
        "46.9 KiB (48000 bytes)",
        "as float16:",
        "23.4 KiB (24000 bytes)",
        "available memory:",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn gen_summary_line_and_no_progress_bar_off_a_terminal() {
    let dir = tempdir();
    let run = cli(
        dir.path(),
        &["gen", "x.npy", "--shape", "64,8", "--dtype", "f32"],
    );
    let out = run.ok();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("wrote x.npy: (64, 8) float32"), "{out}");
    assert!(out.contains("2.0 KiB (2048 bytes)"), "{out}");
    assert!(out.contains("GB/s") || out.contains("instant"), "{out}");
    // stderr is a pipe here: no progress bar, nothing at all.
    assert_eq!(run.stderr, "");
    let run = cli(dir.path(), &["gen", "y.npy", "--shape", "64,8", "--json"]);
    run.json();
    assert_eq!(run.stderr, "");
}

#[test]
fn gen_is_reproducible_across_runs_and_thread_counts() {
    let dir = tempdir();
    let gen_file = |name: &str, seed: &str, threads: &str| {
        cli(
            dir.path(),
            &[
                "gen",
                name,
                "--shape",
                "257,33",
                "--seed",
                seed,
                "--threads",
                threads,
                "--block-size",
                "4KiB",
                "--no-fsync",
            ],
        )
        .ok();
        std::fs::read(dir.path().join(name)).unwrap()
    };
    let a = gen_file("a.npy", "7", "2");
    let again = gen_file("again.npy", "7", "2");
    let one = gen_file("one.npy", "7", "1");
    let three = gen_file("three.npy", "7", "3");
    let other = gen_file("other.npy", "8", "2");
    assert_eq!(a.len(), 128 + 257 * 33 * 8);
    assert_eq!(a, again, "same seed, same bytes");
    assert_eq!(one, three, "thread count does not change the data");
    assert_eq!(a, one);
    assert_ne!(a, other, "a different seed gives different data");
    assert_eq!(a[..128], other[..128], "but the same header");
}

#[test]
fn gen_default_seed_is_zero() {
    let dir = tempdir();
    cli(dir.path(), &["gen", "d.npy", "--shape", "10"]).ok();
    cli(
        dir.path(),
        &["gen", "z.npy", "--shape", "10", "--seed", "0"],
    )
    .ok();
    assert_eq!(
        std::fs::read(dir.path().join("d.npy")).unwrap(),
        std::fs::read(dir.path().join("z.npy")).unwrap()
    );
}

#[test]
fn gen_arange_reads_back_as_the_index() {
    let dir = tempdir();
    cli(
        dir.path(),
        &[
            "gen",
            "i.npy",
            "--shape",
            "50,7",
            "--dtype",
            "i32",
            "--dist",
            "arange",
            "--threads",
            "3",
            "--block-size",
            "100",
        ],
    )
    .ok();
    let file = ArrayFile::open(dir.path().join("i.npy")).unwrap();
    assert_eq!(file.meta().shape, vec![50, 7]);
    assert_eq!(file.meta().dtype, DType::I32);
    let block = file.read_rows(0..50).unwrap();
    let want: Vec<i32> = (0..350).collect();
    assert_eq!(block.as_slice::<i32>().unwrap(), &want[..]);
}

#[test]
fn gen_raw_big_endian_reads_back_and_info_describes_it() {
    let dir = tempdir();
    let g = cli(
        dir.path(),
        &[
            "gen",
            "r.bin",
            "--raw",
            "--shape",
            "6,4",
            "--dtype",
            "f32",
            "--byte-order",
            "big",
            "--dist",
            "arange",
            "--json",
        ],
    )
    .json();
    assert_eq!(g["format"], "raw");
    assert_eq!(g["byte_order"], "big");
    assert_eq!(g["bytes_written"], 96);
    let path = dir.path().join("r.bin");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 96);
    assert_eq!(bytes[4..8], 1.0f32.to_be_bytes());

    let spec = RawSpec {
        dtype: DType::F32,
        byte_order: ByteOrder::Big,
        shape: Some(vec![6, 4]),
        offset: 0,
        layout: outcore::Layout::C,
    };
    let file = ArrayFile::open_raw(&path, &spec).unwrap();
    let want: Vec<f32> = (0..24).map(|i| i as f32).collect();
    assert_eq!(
        file.read_rows(0..6).unwrap().as_slice::<f32>().unwrap(),
        &want[..]
    );

    let info = cli(
        dir.path(),
        &[
            "info", "r.bin", "--raw", "--dtype", ">f4", "--shape", "6,4", "--json",
        ],
    )
    .json();
    assert_eq!(info["format"], "raw");
    assert!(info["version"].is_null());
    assert_eq!(info["shape"], serde_json::json!([6, 4]));
    assert_eq!(info["dtype"], "float32");
    assert_eq!(info["byte_order"], "big");
    assert_eq!(info["data_offset"], 0);
    // Without --shape, a raw file is 1-d; --offset skips bytes.
    let info = cli(
        dir.path(),
        &[
            "info",
            "r.bin",
            "--raw",
            "--dtype",
            "f32",
            "--byte-order",
            "big",
            "--offset",
            "16",
            "--json",
        ],
    )
    .json();
    assert_eq!(info["shape"], serde_json::json!([20]));
    assert_eq!(info["data_offset"], 16);
    assert_eq!(info["nbytes"], 80);
    // One -1 is inferred from the file's size after the offset, as NumPy's
    // reshape; a size that is not a whole number of rows is a usage error
    // naming the numbers.
    let info = cli(
        dir.path(),
        &[
            "info", "r.bin", "--raw", "--dtype", ">f4", "--shape", "-1,4", "--json",
        ],
    )
    .json();
    assert_eq!(info["shape"], serde_json::json!([6, 4]));
    let args = [
        "info", "r.bin", "--raw", "--dtype", "f4", "--offset", "16", "--shape", "(-1,3)",
    ];
    let line = cli(dir.path(), &args).error(2).to_string();
    assert!(
        line.contains("r.bin") && line.contains("20 elements"),
        "{line}"
    );
}

#[test]
fn gen_zero_d_and_empty_shapes() {
    let dir = tempdir();
    cli(
        dir.path(),
        &["gen", "s.npy", "--shape", "", "--dist", "arange"],
    )
    .ok();
    let info = cli(dir.path(), &["info", "s.npy", "--json"]).json();
    assert_eq!(info["shape"], serde_json::json!([]));
    assert_eq!(
        (info["rows"].as_u64(), info["nbytes"].as_u64()),
        (Some(1), Some(8))
    );

    cli(dir.path(), &["gen", "e.npy", "--shape", "0,5"]).ok();
    let info = cli(dir.path(), &["info", "e.npy", "--json"]).json();
    assert_eq!(info["shape"], serde_json::json!([0, 5]));
    assert_eq!(info["nbytes"], 0);
    assert_eq!(info["row_len"], 5);
}

#[test]
fn info_on_numpy_fixtures() {
    let dir = tempdir();
    let info = |name: &str| {
        cli(
            dir.path(),
            &[
                OsStr::new("info"),
                fixture(name).as_os_str(),
                OsStr::new("--json"),
            ],
        )
        .json()
    };
    let be = info("int16_be_v1_4x3.npy");
    assert_eq!(be["dtype"], "int16");
    assert_eq!(be["byte_order"], "big");
    assert_eq!(be["layout"], "C");
    assert_eq!(be["shape"], serde_json::json!([4, 3]));
    assert_eq!(be["nbytes"], 24);

    let fortran = info("float64_le_v1_fortran_4x3.npy");
    assert_eq!(fortran["dtype"], "float64");
    assert_eq!(fortran["byte_order"], "little");
    assert_eq!(fortran["layout"], "Fortran");
    assert_eq!(fortran["data_offset"], 128);

    let both = info("int16_be_v1_fortran_3x5.npy");
    assert_eq!(
        (both["byte_order"].as_str(), both["layout"].as_str()),
        (Some("big"), Some("Fortran"))
    );

    let v3 = info("float32_le_v3_4x3.npy");
    assert_eq!(v3["version"], "3.0");

    let one_byte = info("int8_v1_4x3.npy");
    assert_eq!(one_byte["byte_order"], "none");

    let text = cli(
        dir.path(),
        &[
            OsStr::new("info"),
            fixture("int16_be_v1_fortran_3x5.npy").as_os_str(),
        ],
    )
    .ok()
    .to_string();
    assert!(text.contains("big (swapped to native when read)"), "{text}");
    assert!(text.contains("Fortran (column-major"), "{text}");
}

#[test]
fn info_errors_are_one_line_naming_the_path() {
    let dir = tempdir();
    let line = cli(dir.path(), &["info", "missing.npy"])
        .error(1)
        .to_string();
    assert!(line.contains("missing.npy"), "{line}");
    // The OS error is said once, not repeated by the error chain.
    assert_eq!(line.matches("No such file").count(), 1, "{line}");

    for (name, what) in [
        ("bad_magic_first_byte.npy", "magic"),
        ("refused_complex128.npy", "unsupported dtype"),
        ("size_data_truncated.npy", "truncated"),
    ] {
        let path = fixture(name);
        let run = cli(dir.path(), &[OsStr::new("info"), path.as_os_str()]);
        let line = run.error(1);
        assert!(line.contains(name), "{line}");
        assert!(line.contains(what), "{line}");
    }

    // A directory is not an array.
    let line = cli(dir.path(), &["info", "."]).error(1).to_string();
    assert!(line.contains("directory"), "{line}");

    // A raw file whose size does not match the shape.
    std::fs::write(dir.path().join("r.bin"), [0u8; 10]).unwrap();
    let line = cli(
        dir.path(),
        &["info", "r.bin", "--raw", "--dtype", "f64", "--shape", "2"],
    )
    .error(1)
    .to_string();
    assert!(line.contains("r.bin"), "{line}");
}

#[test]
fn gen_refuses_an_existing_output_without_force() {
    let dir = tempdir();
    let path = dir.path().join("x.npy");
    std::fs::write(&path, b"keep me").unwrap();
    let line = cli(dir.path(), &["gen", "x.npy", "--shape", "10,2"])
        .error(1)
        .to_string();
    assert!(line.contains("x.npy"), "{line}");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    // No temporary file is left behind either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    cli(dir.path(), &["gen", "x.npy", "--shape", "10,2", "--force"]).ok();
    let file = ArrayFile::open(&path).unwrap();
    assert_eq!(file.meta().shape, vec![10, 2]);
}

#[test]
fn gen_runtime_errors() {
    let dir = tempdir();
    let line = cli(dir.path(), &["gen", "no/such/dir/x.npy", "--shape", "3"])
        .error(1)
        .to_string();
    assert!(line.contains("no/such/dir"), "{line}");

    let line = cli(
        dir.path(),
        &["gen", "huge.npy", "--shape", "4294967296,4294967296"],
    )
    .error(1)
    .to_string();
    assert!(
        line.contains("huge.npy") && line.contains("overflow"),
        "{line}"
    );
    assert!(!dir.path().join("huge.npy").exists());
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let dir = tempdir();
    let cases: &[(&[&str], &str)] = &[
        (&["gen", "x.npy", "--shape", "4,x"], "--shape"),
        (&["gen", "x.npy", "--shape", "-3"], "-3"),
        (
            &["gen", "x.npy", "--shape", "4", "--dtype", "complex128"],
            "--dtype",
        ),
        (&["gen", "x.npy", "--shape", "4", "--dtype", "f5"], "f5"),
        (&["gen", "x.npy"], "--shape"),
        (
            &["gen", "x.npy", "--shape", "4", "--dist", "poisson"],
            "--dist",
        ),
        (
            &["gen", "x.npy", "--shape", "4", "--threads", "0"],
            "--threads",
        ),
        (
            &["gen", "x.npy", "--shape", "4", "--block-size", "big"],
            "--block-size",
        ),
        (
            &["gen", "x.npy", "--shape", "4", "--frobnicate"],
            "--frobnicate",
        ),
        (
            &[
                "gen",
                "x.npy",
                "--shape",
                "4",
                "--dtype",
                ">f8",
                "--byte-order",
                "little",
            ],
            "byte-order",
        ),
        (&["info", "x.npy", "--dtype", "f8"], "--raw"),
        (&["info", "x.npy", "--raw"], "--dtype"),
        (&["info"], "PATH"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let run = cli(dir.path(), args);
        let line = run.error(2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn help_and_version_succeed() {
    let dir = tempdir();
    let help = cli(dir.path(), &["--help"]).ok().to_string();
    assert!(help.contains("info") && help.contains("gen"), "{help}");
    let help = cli(dir.path(), &["gen", "--help"]).ok().to_string();
    for flag in [
        "--shape",
        "--dtype",
        "--seed",
        "--dist",
        "--threads",
        "--block-size",
        "--force",
    ] {
        assert!(help.contains(flag), "{flag} not in\n{help}");
    }
    let version = cli(dir.path(), &["--version"]).ok().to_string();
    assert!(version.starts_with("outcore "), "{version}");
    // Bare `outcore` prints help, as a usage error.
    let bare = cli::<&str>(dir.path(), &[]);
    assert_eq!(bare.code, Some(2));
    assert!(bare.stderr.contains("Usage"), "{bare:#?}");
}

/// A memory limit above the memory the machine has is accepted (memory
/// may be freed before a run needs it) with one warning on stderr naming
/// both numbers; the run itself goes on.
#[test]
fn a_limit_above_the_available_memory_is_a_warning() {
    let dir = tempdir();
    let spec = outcore::OutputSpec::npy(DType::F64, vec![3, 2]);
    let w = outcore::ArrayWriter::create(dir.path().join("x.npy"), spec).unwrap();
    w.write_block(
        0,
        ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]].view(),
    )
    .unwrap();
    w.finish().unwrap();
    let run = cli(
        dir.path(),
        &[
            "stats",
            "x.npy",
            "--memory-limit",
            "1000TiB",
            "--ops",
            "sum",
            "--json",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["results"]["sum"], serde_json::json!(21.0));
    if outcore::available_memory().is_some() {
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(
            run.stderr
                .starts_with("warning: --memory-limit 1000.0 TiB is more than the "),
            "{run:#?}"
        );
    }
}
