//! `--raw` on every command that reads an array: a file written by
//! `arr.tofile()` (no header) is read with `--raw --raw-dtype DTYPE
//! --shape ...` (plus `--offset`, `--byte-order`, `--order`) by `info`,
//! `stats`, `convert`, `sort`, `cumsum` and `standardize`, with the same
//! results as its `.npy` twin.

mod common;

use common::{cli, read_npy, tempdir, write_npy};

/// `x` (8 × 3 float32, C order) as raw bytes of `order` (little- or
/// big-endian, C or Fortran order), after `offset` bytes of junk.
fn raw_bytes(x: &[f32], big: bool, fortran: bool, offset: usize) -> Vec<u8> {
    let mut out = vec![0xAB; offset];
    let (rows, cols) = (8, 3);
    let at = |k: usize| {
        if fortran {
            x[(k % rows) * cols + k / rows]
        } else {
            x[k]
        }
    };
    for k in 0..rows * cols {
        let v = at(k);
        out.extend(if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }
    out
}

fn values() -> Vec<f32> {
    (0..24).map(|i| ((i * 7) % 11) as f32 - 3.5).collect()
}

/// Every command that reads an array, with its arguments before and after
/// the input (`OUT` for the commands that write one).
fn commands() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("info", vec!["--json"]),
        (
            "stats",
            vec!["--axis", "0", "--ops", "sum,median", "--json"],
        ),
        ("convert", vec!["OUT", "--dtype", "f64", "--json"]),
        ("sort", vec!["OUT", "--json"]),
        ("cumsum", vec!["OUT", "--json"]),
        ("standardize", vec!["OUT", "--json"]),
    ]
}

/// Runs `command` on `input` (with `raw` options), returning its JSON and
/// the array it wrote, if any.
fn run(
    dir: &std::path::Path,
    command: &str,
    rest: &[&str],
    input: &str,
    raw: &[&str],
    out: &str,
) -> (serde_json::Value, Option<Vec<f64>>) {
    let mut args = vec![command, input];
    let mut wrote = false;
    for &a in rest {
        if a == "OUT" {
            args.push(out);
            wrote = true;
        } else {
            args.push(a);
        }
    }
    args.extend(raw);
    let v = cli(dir, &args).json();
    let written = wrote.then(|| {
        let path = dir.join(out);
        match outcore::ArrayFile::open(&path).unwrap().meta().dtype {
            outcore::DType::F64 => read_npy::<f64>(&path).2,
            _ => read_npy::<f32>(&path)
                .2
                .into_iter()
                .map(f64::from)
                .collect(),
        }
    });
    (v, written)
}

#[test]
fn every_command_reads_raw_like_npy() {
    let dir = tempdir();
    let x = values();
    write_npy(&dir.path().join("x.npy"), &[8, 3], &x);
    let cases: [(&str, Vec<u8>, Vec<&str>); 4] = [
        (
            "c.bin",
            raw_bytes(&x, cfg!(target_endian = "big"), false, 0),
            vec!["--raw", "--raw-dtype", "f32", "--shape", "8,3"],
        ),
        (
            "be.bin",
            raw_bytes(&x, true, false, 16),
            vec![
                "--raw",
                "--raw-dtype",
                ">f4",
                "--shape",
                "-1,3",
                "--offset",
                "16",
            ],
        ),
        (
            "le.bin",
            raw_bytes(&x, false, false, 0),
            vec![
                "--raw",
                "--raw-dtype",
                "f32",
                "--byte-order",
                "little",
                "--shape",
                "8,3",
            ],
        ),
        (
            "f.bin",
            raw_bytes(&x, cfg!(target_endian = "big"), true, 0),
            vec![
                "--raw",
                "--raw-dtype",
                "f32",
                "--shape",
                "8,3",
                "--order",
                "F",
            ],
        ),
    ];
    for (name, bytes, _) in &cases {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    for (command, rest) in commands() {
        let (want, want_out) = run(dir.path(), command, &rest, "x.npy", &[], "want.npy");
        for (name, _, raw) in &cases {
            let out = format!("{command}-{name}.npy");
            let (got, got_out) = run(dir.path(), command, &rest, name, raw, &out);
            let what = format!("{command} {name} {raw:?}");
            assert_eq!(got["shape"], want["shape"], "{what}: {got}");
            if command == "stats" {
                assert_eq!(got["results"], want["results"], "{what}: {got}");
            }
            assert_eq!(got_out, want_out, "{what}");
        }
        let _ = std::fs::remove_file(dir.path().join("want.npy"));
    }
}

#[test]
fn raw_options_are_refused_without_raw_or_dtype() {
    let dir = tempdir();
    std::fs::write(dir.path().join("r.bin"), [0u8; 16]).unwrap();
    let commands: [(&str, &[&str]); 4] = [
        ("convert", &["--dtype", "f8"]),
        ("sort", &[]),
        ("cumsum", &[]),
        ("standardize", &[]),
    ];
    for (command, own) in commands {
        let with = |more: &[&'static str]| {
            let mut args = vec![command, "r.bin", "o.npy"];
            args.extend(own);
            args.extend(more);
            cli(dir.path(), &args)
        };
        // --raw needs the element type.
        let e = with(&["--raw"]).error(2).to_string();
        assert!(e.contains("--raw-dtype"), "{command}: {e}");
        // The raw options need --raw.
        let e = with(&["--raw-dtype", "f4"]).error(2).to_string();
        assert!(e.contains("--raw"), "{command}: {e}");
        let e = with(&["--raw", "--raw-dtype", "f4", "--order", "X"])
            .error(2)
            .to_string();
        assert!(e.contains("order"), "{command}: {e}");
        assert!(!dir.path().join("o.npy").exists());
    }
    // info and stats also take --dtype for the raw dtype; not both.
    cli(
        dir.path(),
        &["info", "r.bin", "--raw", "--dtype", "f4", "--json"],
    )
    .json();
    let e = cli(
        dir.path(),
        &[
            "info",
            "r.bin",
            "--raw",
            "--dtype",
            "f4",
            "--raw-dtype",
            "f4",
        ],
    )
    .error(2)
    .to_string();
    assert!(e.contains("--raw-dtype"), "{e}");
    // A raw file's size must match its shape: the numbers are named.
    let e = cli(
        dir.path(),
        &[
            "convert",
            "r.bin",
            "o.npy",
            "--raw",
            "--raw-dtype",
            "f4",
            "--shape",
            "3,2",
            "--dtype",
            "f8",
        ],
    )
    .error(1)
    .to_string();
    assert!(e.contains("r.bin") && e.contains("16"), "{e}");
}
