//! End-to-end tests of `outcore sort`, `outcore cumsum` and the exact
//! `median` / `quantile:Q` ops of `outcore stats`, against NumPy's answers
//! in `tests/fixtures/spill` (see `tests/fixtures/make_spill_expected.py`).

mod common;

use std::path::{Path, PathBuf};

use common::{cli, read_npy, tempdir, write_npy};
use outcore::Element;
use serde_json::Value;

fn spill_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/spill")
        .join(name)
}

/// A 1-d float64 input of 40,000 values (312.5 KiB, NaN among them): too
/// big for a 32 KiB limit to sort in memory.
fn big_1d(dir: &Path) -> (PathBuf, Vec<f64>) {
    let values: Vec<f64> = (0..40_000u64)
        .map(|i| match i % 997 {
            0 => f64::NAN,
            _ => ((i * 7919) % 10_007) as f64 - 5000.5,
        })
        .collect();
    let path = dir.join("big.npy");
    write_npy(&path, &[values.len() as u64], &values);
    let mut sorted = values.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    (path, sorted)
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Values bit for bit (NaN equal to NaN), via their f64 images.
fn same_f64(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits(),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn data<T: Element>(path: &Path) -> Vec<T> {
    read_npy::<T>(path).2
}

/// A JSON number or "nan"/"inf"/"-inf" string.
fn json_f64(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap(),
    }
}

#[test]
fn sort_and_cumsum_equal_numpy_under_a_tiny_limit() {
    let dir = tempdir();
    for name in ["f64", "f32", "i16", "u64"] {
        let x = spill_fixture(&format!("{name}.npy"));
        for (cmd, suffix) in [("sort", "sort"), ("cumsum", "cumsum")] {
            let out = dir.path().join(format!("{name}.{suffix}.npy"));
            let v = cli(
                dir.path(),
                &[
                    cmd,
                    arg(&x),
                    arg(&out),
                    "--memory-limit",
                    "40KiB",
                    "--threads",
                    "3",
                    "--spill-dir",
                    arg(dir.path()),
                    "--json",
                ],
            )
            .json();
            assert_eq!(v["shape"], serde_json::json!([37, 5]), "{v}");
            assert!(v["passes"].as_u64().unwrap() >= 1, "{v}");
            let want = spill_fixture(&format!("{name}.{suffix}.npy"));
            // Same header (np.save's) and the same bytes.
            assert_eq!(
                std::fs::read(&out).unwrap(),
                std::fs::read(&want).unwrap(),
                "{cmd} {name}"
            );
        }
    }
    // Only the outputs: the spill files were unnamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 8);
}

#[test]
fn sort_spills_and_reports_it() {
    let dir = tempdir();
    let x = spill_fixture("f64_1d.npy");
    let out = dir.path().join("s.npy");
    let v = cli(
        dir.path(),
        &[
            "sort",
            arg(&x),
            arg(&out),
            "--memory-limit",
            "32KiB",
            "--json",
        ],
    )
    .json();
    // It fits the limit: sorted in memory, nothing spilled.
    assert_eq!(v["bytes_spilled"].as_u64(), Some(0), "{v}");
    same_f64(
        &data::<f64>(&out),
        &data::<f64>(&spill_fixture("f64_1d.sort.npy")),
    );
    // One that does not fit spills (runs, then merges), as NumPy sorts.
    let (big, want) = big_1d(dir.path());
    let big_out = dir.path().join("big.sorted.npy");
    let v = cli(
        dir.path(),
        &[
            "sort",
            arg(&big),
            arg(&big_out),
            "--memory-limit",
            "32KiB",
            "--json",
        ],
    )
    .json();
    assert!(
        v["bytes_spilled"].as_u64().unwrap() >= 2 * 40_000 * 8,
        "{v}"
    );
    same_f64(&data::<f64>(&big_out), &want);
    // --explain describes the runs and merges without running them.
    let plan = cli(
        dir.path(),
        &[
            "sort",
            arg(&big),
            "y.npy",
            "--memory-limit",
            "32KiB",
            "--explain",
        ],
    );
    let text = plan.ok().to_string();
    assert!(
        text.contains("sorted runs") && text.contains("merge level"),
        "{text}"
    );
    assert!(!dir.path().join("y.npy").exists());
}

#[test]
fn median_and_quantiles_in_stats() {
    let dir = tempdir();
    let x = spill_fixture("f64_even.npy");
    let v = cli(
        dir.path(),
        &[
            "stats",
            arg(&x),
            "--axis",
            "0",
            "--ops",
            "median,quantile:0.9,mean,quantile:0.999",
            "--memory-limit",
            "48KiB",
            "--json",
        ],
    )
    .json();
    assert_eq!(
        v["ops"],
        serde_json::json!(["median", "quantile:0.9", "mean", "quantile:0.999"])
    );
    for (key, file) in [
        ("median", "f64_even.median0.npy"),
        ("quantile:0.9", "f64_even.q0.9_0.npy"),
        ("quantile:0.999", "f64_even.q0.999_0.npy"),
    ] {
        let got: Vec<f64> = v["results"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(json_f64)
            .collect();
        same_f64(&got, &data::<f64>(&spill_fixture(file)));
    }
    // Over all elements: one number each; NaN where the data has one.
    let v = cli(
        dir.path(),
        &[
            "stats",
            arg(&spill_fixture("f32.npy")),
            "--ops",
            "median,quantile:0.25",
            "--json",
        ],
    )
    .json();
    assert_eq!(v["results"]["median"], "nan", "{v}");
    let v = cli(
        dir.path(),
        &[
            "stats",
            arg(&spill_fixture("f64_1d.npy")),
            "--ops",
            "quantile:0.25",
            "--json",
        ],
    )
    .json();
    let want = data::<f64>(&spill_fixture("f64_1d.q0.25_all.npy"))[0];
    assert_eq!(
        json_f64(&v["results"]["quantile:0.25"]).to_bits(),
        want.to_bits()
    );
}

#[test]
fn errors_are_clear() {
    let dir = tempdir();
    let x = spill_fixture("f64.npy");
    // A quantile outside [0, 1]: a usage error.
    let e = cli(dir.path(), &["stats", arg(&x), "--ops", "quantile:1.5"])
        .error(2)
        .to_string();
    assert!(e.contains("bad quantile"), "{e}");
    // NumPy refuses quantiles of bool arrays; so do we.
    let e = cli(
        dir.path(),
        &[
            "stats",
            arg(&spill_fixture("bool.npy")),
            "--ops",
            "quantile:0.5",
        ],
    )
    .error(1)
    .to_string();
    assert!(e.contains("bool"), "{e}");
    // A quantile outside [0, 1] along axis 1 is refused too.
    let e = cli(
        dir.path(),
        &["stats", arg(&x), "--axis", "1", "--ops", "nanquantile:2"],
    )
    .error(2)
    .to_string();
    assert!(e.contains("bad quantile"), "{e}");
    // A spill quota too small for the runs.
    let (big, _) = big_1d(dir.path());
    let e = cli(
        dir.path(),
        &[
            "sort",
            arg(&big),
            "s.npy",
            "--memory-limit",
            "32KiB",
            "--spill-quota",
            "1KiB",
        ],
    )
    .error(1)
    .to_string();
    assert!(e.contains("spill quota exceeded"), "{e}");
    assert!(!dir.path().join("s.npy").exists());
    // An existing output is not replaced without --force.
    std::fs::write(dir.path().join("t.npy"), b"keep").unwrap();
    let e = cli(dir.path(), &["cumsum", arg(&x), "t.npy"])
        .error(1)
        .to_string();
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(dir.path().join("t.npy")).unwrap(), b"keep");
    // A missing spill directory.
    let e = cli(
        dir.path(),
        &[
            "sort",
            arg(&x),
            "u.npy",
            "--spill-dir",
            "/nonexistent/spill",
        ],
    )
    .error(1)
    .to_string();
    assert!(e.contains("/nonexistent/spill"), "{e}");
}
