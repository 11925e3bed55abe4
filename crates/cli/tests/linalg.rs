//! End-to-end tests of `outcore cov`, `outcore gram` and `outcore pca`:
//! NumPy's and scikit-learn's answers (`tests/fixtures/linalg`), `--out`
//! files, JSON keys, the budget refusal and usage errors.

mod common;

use std::path::{Path, PathBuf};

use common::{all_close, cli, num, nums, read_npy, tempdir, write_npy};
use outcore::DType;
use serde_json::Value;

fn linalg_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/linalg")
        .join(name)
}

fn expected() -> Value {
    let text = std::fs::read_to_string(linalg_fixture("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("JSON")
}

/// The flat values of an answer of `expected.json`.
fn values(v: &Value) -> Vec<f64> {
    v["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|x| match x {
            Value::String(s) => s.parse().expect("float"),
            other => other.as_f64().expect("number"),
        })
        .collect()
}

/// A JSON matrix (list of rows) flattened.
fn flat(v: &Value) -> Vec<f64> {
    v.as_array().expect("rows").iter().flat_map(nums).collect()
}

#[test]
fn cov_and_corr_match_numpy() {
    let dir = tempdir();
    let exp = expected();
    let x = linalg_fixture("f64.npy");
    let v = cli(
        dir.path(),
        &[
            "cov".as_ref(),
            x.as_os_str(),
            "--json".as_ref(),
            "--threads".as_ref(),
            "2".as_ref(),
            "--out".as_ref(),
            "c.npy".as_ref(),
        ],
    )
    .json();
    assert_eq!(v["op"], "cov");
    assert_eq!(v["ddof"], 1);
    assert_eq!(v["result_shape"], serde_json::json!([7, 7]));
    for key in [
        "path",
        "shape",
        "dtype",
        "out",
        "seconds",
        "passes",
        "peak_rss_bytes",
    ] {
        assert!(v.get(key).is_some(), "{key}: {v}");
    }
    let want = values(&exp["inputs"]["f64"]["cov_ddof1"]);
    all_close(&flat(&v["result"]), &want, 1e-12);
    let (dtype, shape, file) = read_npy::<f64>(&dir.path().join("c.npy"));
    assert_eq!((dtype, shape), (DType::F64, vec![7, 7]));
    all_close(&file, &want, 1e-12);

    let v = cli(
        dir.path(),
        &[
            "cov".as_ref(),
            x.as_os_str(),
            "--corr".as_ref(),
            "--json".as_ref(),
        ],
    )
    .json();
    assert_eq!(v["op"], "corrcoef");
    all_close(
        &flat(&v["result"]),
        &values(&exp["inputs"]["f64"]["corrcoef"]),
        1e-12,
    );

    let v = cli(
        dir.path(),
        &[
            "cov".as_ref(),
            x.as_os_str(),
            "--ddof".as_ref(),
            "0".as_ref(),
            "--json".as_ref(),
        ],
    )
    .json();
    all_close(
        &flat(&v["result"]),
        &values(&exp["inputs"]["f64"]["cov_ddof0"]),
        1e-12,
    );

    // NaN propagates, as a string in JSON.
    let v = cli(
        dir.path(),
        &[
            "cov".as_ref(),
            linalg_fixture("f64_nan.npy").as_os_str(),
            "--json".as_ref(),
        ],
    )
    .json();
    assert_eq!(v["result"][2][0], "nan");
    assert!(num(&v["result"][0][0]).is_finite());

    // Text: the matrix's corner and the run.
    let text = cli(dir.path(), &["cov".as_ref(), x.as_os_str()])
        .ok()
        .to_string();
    assert!(
        text.contains("cov (ddof=1): 7 x 7 float64") || text.contains("cov (ddof=1)"),
        "{text}"
    );
    assert!(text.contains("top-left 6 x 6 of 7 x 7"), "{text}");
}

#[test]
fn gram_matches_numpy() {
    let dir = tempdir();
    let exp = expected();
    let v = cli(
        dir.path(),
        &[
            "gram".as_ref(),
            linalg_fixture("i16.npy").as_os_str(),
            "--json".as_ref(),
            "--memory-limit".as_ref(),
            "1MiB".as_ref(),
        ],
    )
    .json();
    assert_eq!(v["op"], "gram");
    all_close(
        &flat(&v["result"]),
        &values(&exp["inputs"]["i16"]["gram"]),
        1e-12,
    );
    let err = cli(
        dir.path(),
        &["gram".as_ref(), linalg_fixture("f64_1d.npy").as_os_str()],
    )
    .error(1)
    .to_string();
    assert!(err.contains("2-d"), "{err}");
}

#[test]
fn a_limit_too_small_for_the_matrix_is_refused_up_front() {
    let dir = tempdir();
    let data: Vec<f64> = (0..32 * 600).map(|i| f64::from(i).sin()).collect();
    write_npy(&dir.path().join("wide.npy"), &[32, 600], &data);
    let err = cli(dir.path(), &["cov", "wide.npy", "--memory-limit", "2MiB"])
        .error(1)
        .to_string();
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn pca_matches_scikit_learn() {
    let dir = tempdir();
    let exp = expected();
    let want = &exp["pca"]["f64"];
    let v = cli(
        dir.path(),
        &[
            "pca".as_ref(),
            linalg_fixture("f64.npy").as_os_str(),
            "-k".as_ref(),
            "3".as_ref(),
            "--json".as_ref(),
            "--out".as_ref(),
            "fit".as_ref(),
            "--transform".as_ref(),
            "z.npy".as_ref(),
        ],
    )
    .json();
    assert_eq!(v["k"], 3);
    all_close(&flat(&v["components"]), &values(&want["components"]), 1e-8);
    all_close(
        &nums(&v["explained_variance"]),
        &values(&want["explained_variance"]),
        1e-10,
    );
    all_close(
        &nums(&v["explained_variance_ratio"]),
        &values(&want["explained_variance_ratio"]),
        1e-10,
    );
    all_close(&nums(&v["mean"]), &values(&want["mean"]), 1e-12);
    let (_, shape, comps) = read_npy::<f64>(&dir.path().join("fit/components.npy"));
    assert_eq!(shape, vec![3, 7]);
    all_close(&comps, &values(&want["components"]), 1e-8);
    let (dtype, shape, z) = read_npy::<f64>(&dir.path().join("z.npy"));
    assert_eq!((dtype, shape), (DType::F64, vec![300, 3]));
    all_close(&z, &values(&want["transform"]), 1e-9);

    // The transform output is not replaced without --force.
    let err = cli(
        dir.path(),
        &[
            "pca".as_ref(),
            linalg_fixture("f64.npy").as_os_str(),
            "-k".as_ref(),
            "2".as_ref(),
            "--transform".as_ref(),
            "z.npy".as_ref(),
        ],
    )
    .error(1)
    .to_string();
    assert!(err.contains("z.npy"), "{err}");

    let err = cli(
        dir.path(),
        &[
            "pca".as_ref(),
            linalg_fixture("f64.npy").as_os_str(),
            "-k".as_ref(),
            "9".as_ref(),
        ],
    )
    .error(1)
    .to_string();
    assert!(err.contains("components"), "{err}");
}

#[test]
fn with_out_a_matrix_too_large_goes_by_panels() {
    let dir = tempdir();
    let data: Vec<f64> = (0..150 * 600)
        .map(|i| (f64::from(i) * 0.37).sin())
        .collect();
    write_npy(&dir.path().join("wide.npy"), &[150, 600], &data);
    // Without --out: refused, with the hint.
    let err = cli(dir.path(), &["gram", "wide.npy", "--memory-limit", "4MiB"])
        .error(1)
        .to_string();
    assert!(err.contains("--out") && err.contains("limit"), "{err}");
    // The plan, then the panels.
    let v = cli(
        dir.path(),
        &[
            "gram",
            "wide.npy",
            "--memory-limit",
            "4MiB",
            "--out",
            "g.npy",
            "--explain",
            "--json",
        ],
    )
    .json();
    assert!(v["panels"].as_u64().unwrap() > 1, "{v}");
    assert!(!dir.path().join("g.npy").exists());
    let v = cli(
        dir.path(),
        &[
            "gram",
            "wide.npy",
            "--memory-limit",
            "4MiB",
            "--out",
            "g.npy",
            "--json",
        ],
    )
    .json();
    assert!(
        v["result"].is_null() && v["panels"].as_u64().unwrap() > 1,
        "{v}"
    );
    let (_, shape, g) = read_npy::<f64>(&dir.path().join("g.npy"));
    assert_eq!(shape, vec![600, 600]);
    for (i, j) in [(0, 0), (3, 577), (599, 12)] {
        let want: f64 = (0..150)
            .map(|r| data[r * 600 + i] * data[r * 600 + j])
            .sum();
        assert!((g[i * 600 + j] - want).abs() < 1e-9, "{i},{j}");
    }
}
