//! End-to-end tests of `outcore standardize`: output columns have mean 0
//! and std 1 (recomputed with `outcore stats`), values match
//! `(x - mean) / std` computed here, dtypes, ddof, constant columns, the
//! two-pass plan, and errors.

mod common;

use std::path::Path;

use common::{cli, close, generate, num, nums, read_npy, tempdir, write_npy};
use outcore::{DType, f16};
use serde_json::{Value, json};

/// `(x - mean) / std` per column of a `rows × cols` array, in `f64`.
fn standardize(x: &[f64], cols: usize, ddof: u32) -> Vec<f64> {
    let rows = x.len() / cols;
    let mut z = vec![0.0; x.len()];
    for c in 0..cols {
        let col: Vec<f64> = (0..rows).map(|r| x[r * cols + c]).collect();
        let mean = col.iter().sum::<f64>() / rows as f64;
        let var =
            col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (rows as f64 - f64::from(ddof));
        for r in 0..rows {
            z[r * cols + c] = (x[r * cols + c] - mean) / var.sqrt();
        }
    }
    z
}

/// `outcore stats --axis 0 --json` of `name` with `extra` arguments.
fn column_stats(dir: &Path, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["stats", name, "--axis", "0", "--ops", "mean,std", "--json"];
    args.extend_from_slice(extra);
    cli(dir, &args).json()
}

#[test]
fn integer_input_gives_float64_columns_of_mean_0_and_std_1() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "500,4", "i32", &["--dist", "normal"]);
    let v = cli(
        dir.path(),
        &[
            "standardize",
            "x.npy",
            "z.npy",
            "--memory-limit",
            "256KiB",
            "--threads",
            "3",
            "--json",
        ],
    )
    .json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "path",
        "out",
        "dtype_in",
        "dtype",
        "shape",
        "ddof",
        "skipna",
        "seconds",
        "passes",
        "blocks",
        "bytes_read",
        "bytes_written",
        "bytes_spilled",
        "peak_reserved_bytes",
        "peak_rss_bytes",
        "memory_limit_bytes",
        "threads",
    ];
    want.sort_unstable();
    assert_eq!(keys, want, "{v}");
    assert_eq!(v["dtype_in"], "int32");
    assert_eq!(v["dtype"], "float64");
    assert_eq!(v["shape"], json!([500, 4]));
    assert_eq!(v["ddof"], 0);
    assert_eq!(v["passes"], 2);
    // Two passes over the input, one output.
    assert_eq!(v["bytes_read"], 2 * 500 * 4 * 4);
    assert_eq!(v["bytes_written"], 500 * 4 * 8);
    assert_eq!(v["memory_limit_bytes"], 256 << 10);

    let s = column_stats(dir.path(), "z.npy", &[]);
    assert_eq!(s["dtype"], "float64");
    for m in nums(&s["results"]["mean"]) {
        assert!(m.abs() < 1e-12, "{s}");
    }
    for sd in nums(&s["results"]["std"]) {
        close(sd, 1.0, 1e-12);
    }

    let (_, _, x) = read_npy::<i32>(&dir.path().join("x.npy"));
    let x: Vec<f64> = x.into_iter().map(f64::from).collect();
    let (dtype, shape, z) = read_npy::<f64>(&dir.path().join("z.npy"));
    assert_eq!((dtype, shape), (DType::F64, vec![500, 4]));
    for (got, want) in z.iter().zip(standardize(&x, 4, 0)) {
        close(*got, want, 1e-12);
    }
}

#[test]
fn float_inputs_keep_their_dtype_unless_asked() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "400,3", "f32", &["--dist", "normal"]);
    let (_, _, x) = read_npy::<f32>(&dir.path().join("x.npy"));
    let x: Vec<f64> = x.into_iter().map(f64::from).collect();
    let want = standardize(&x, 3, 0);

    let v = cli(dir.path(), &["standardize", "x.npy", "z32.npy", "--json"]).json();
    assert_eq!(v["dtype_in"], "float32");
    assert_eq!(v["dtype"], "float32");
    let (dtype, _, z) = read_npy::<f32>(&dir.path().join("z32.npy"));
    assert_eq!(dtype, DType::F32);
    for (got, want) in z.iter().zip(&want) {
        close(f64::from(*got), *want, 1e-6);
    }

    let v = cli(
        dir.path(),
        &[
            "standardize",
            "x.npy",
            "z64.npy",
            "--dtype",
            "f64",
            "--json",
        ],
    )
    .json();
    assert_eq!(v["dtype"], "float64");
    let (_, _, z) = read_npy::<f64>(&dir.path().join("z64.npy"));
    for (got, want) in z.iter().zip(&want) {
        close(*got, *want, 1e-12);
    }

    generate(dir.path(), "h.npy", "200,2", "f16", &["--dist", "normal"]);
    cli(dir.path(), &["standardize", "h.npy", "zh.npy"]).ok();
    let (dtype, _, zh) = read_npy::<f16>(&dir.path().join("zh.npy"));
    assert_eq!(dtype, DType::F16);
    let s = column_stats(dir.path(), "zh.npy", &[]);
    for m in nums(&s["results"]["mean"]) {
        assert!(m.abs() < 1e-2, "{s}");
    }
    assert_eq!(zh.len(), 400);
}

#[test]
fn ddof_1_gives_sample_std_1() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "50,3", "f64", &[]);
    cli(
        dir.path(),
        &["standardize", "x.npy", "z.npy", "--ddof", "1"],
    )
    .ok();
    let s = column_stats(dir.path(), "z.npy", &["--ddof", "1"]);
    for sd in nums(&s["results"]["std"]) {
        close(sd, 1.0, 1e-12);
    }
    // A 1-d array is one column.
    generate(dir.path(), "v.npy", "30", "i64", &["--dist", "arange"]);
    cli(dir.path(), &["standardize", "v.npy", "zv.npy"]).ok();
    let (_, shape, z) = read_npy::<f64>(&dir.path().join("zv.npy"));
    assert_eq!(shape, vec![30]);
    let x: Vec<f64> = (0..30).map(f64::from).collect();
    for (got, want) in z.iter().zip(standardize(&x, 1, 0)) {
        close(*got, want, 1e-12);
    }
}

#[test]
fn a_constant_column_gives_nan_as_numpy_does() {
    let dir = tempdir();
    write_npy(
        &dir.path().join("c.npy"),
        &[4, 2],
        &[1.0f64, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0],
    );
    cli(dir.path(), &["standardize", "c.npy", "z.npy"]).ok();
    let (_, _, z) = read_npy::<f64>(&dir.path().join("z.npy"));
    let want = standardize(&[1.0, 2.0, 3.0, 4.0], 1, 0);
    for r in 0..4 {
        close(z[2 * r], want[r], 1e-12);
        assert!(z[2 * r + 1].is_nan(), "{z:?}");
    }
    let s = column_stats(dir.path(), "z.npy", &[]);
    assert_eq!(s["results"]["std"][1], "nan");
    close(num(&s["results"]["std"][0]), 1.0, 1e-12);
}

#[test]
fn explain_shows_two_passes_and_writes_nothing() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "1000,4", "f32", &[]);
    let v = cli(
        dir.path(),
        &[
            "standardize",
            "x.npy",
            "z.npy",
            "--explain",
            "--json",
            "--memory-limit",
            "1MiB",
        ],
    )
    .json();
    let passes = v["passes"].as_array().expect("a list of passes");
    assert_eq!(passes.len(), 2, "{v}");
    // First the statistics, then the write.
    assert!(
        !passes[0]["reductions"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert_eq!(passes[0]["bytes_written"], 0);
    assert_eq!(passes[1]["bytes_written"], 1000 * 4 * 4);
    for p in passes {
        assert_eq!(p["bytes_read"], 1000 * 4 * 4);
        assert!(p["peak_bytes"].as_u64().unwrap() <= 1 << 20, "{v}");
    }
    assert_eq!(v["memory_limit_bytes"], 1 << 20);
    assert_eq!(v["dtype"], "float32");
    assert!(!dir.path().join("z.npy").exists());

    let text = cli(dir.path(), &["standardize", "x.npy", "z.npy", "--explain"])
        .ok()
        .to_string();
    assert!(text.starts_with("plan: 2 passes"), "{text}");
    assert!(!dir.path().join("z.npy").exists());
}

#[test]
fn errors_are_one_line_with_the_right_exit_status() {
    let dir = tempdir();
    generate(dir.path(), "x.npy", "10,2", "f64", &[]);
    let out = dir.path().join("z.npy");
    std::fs::write(&out, b"keep me").unwrap();
    let line = cli(dir.path(), &["standardize", "x.npy", "z.npy"])
        .error(1)
        .to_string();
    assert!(line.contains("z.npy") && line.contains("--force"), "{line}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    cli(
        dir.path(),
        &["standardize", "x.npy", "z.npy", "--force", "--no-fsync"],
    )
    .ok();
    assert_eq!(read_npy::<f64>(&out).1, vec![10, 2]);

    generate(dir.path(), "w.npy", "2,100000", "f64", &[]);
    let line = cli(
        dir.path(),
        &["standardize", "w.npy", "zw.npy", "--memory-limit", "1"],
    )
    .error(1)
    .to_string();
    assert!(
        line.contains("w.npy") && line.contains("memory limit") && line.contains("smallest limit"),
        "{line}"
    );
    assert!(!dir.path().join("zw.npy").exists());

    generate(dir.path(), "s.npy", "", "f64", &[]);
    let line = cli(dir.path(), &["standardize", "s.npy", "zs.npy"])
        .error(1)
        .to_string();
    assert!(line.contains("s.npy") && line.contains("0-d"), "{line}");

    let line = cli(dir.path(), &["standardize", "missing.npy", "zm.npy"])
        .error(1)
        .to_string();
    assert!(line.contains("missing.npy"), "{line}");

    for (args, needle) in [
        (
            &["standardize", "x.npy", "q.npy", "--ddof", "x"][..],
            "--ddof",
        ),
        (
            &["standardize", "x.npy", "q.npy", "--dtype", "f5"][..],
            "--dtype",
        ),
        (&["standardize", "x.npy"][..], "OUT"),
    ] {
        let line = cli(dir.path(), args).error(2).to_string();
        assert!(line.contains(needle), "{args:?}: {line}");
    }
}
