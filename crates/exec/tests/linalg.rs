//! `gram`, `cov`, `corrcoef`, `dot` and `pca` (issue 14) against NumPy and
//! scikit-learn, against an in-memory reference, and for their promises:
//! stability far from zero, determinism across threads, the budget.
//!
//! * NumPy / scikit-learn: `tests/fixtures/linalg/expected.json` (made by
//!   `tests/fixtures/make_linalg.py`) holds `np.cov` (ddof 0, 1, 2),
//!   `np.corrcoef`, `x.T @ x`, `x @ w` and `PCA(svd_solver="full")` of the
//!   inputs beside it, computed with every engine configuration below.
//! * The ill-conditioned case: columns of mean 1e8 and standard deviation
//!   1, within 1e-9 relative of NumPy's (centred) `np.cov`.
//! * Reference: random arrays, block sizes from one row to all rows, 1–4
//!   threads, against plain loops; results bit-identical across threads.

mod common;

use common::{close_rel, engine, fixtures_dir, write_any};
use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2, IxDyn};
use outcore_chunker::{DType, ReadMode};
use outcore_exec::{AnyArray, Engine, Error, Expr};
use proptest::prelude::*;
use serde_json::Value;

/// The engine configurations every fixture is computed with: threads,
/// block bytes (one row of the widest input and up) and read mode.
fn engines() -> Vec<Engine> {
    vec![
        engine(1, 1, ReadMode::Mmap),
        engine(2, 700, ReadMode::Pread),
        engine(3, 4096, ReadMode::Mmap),
        engine(4, 8 << 20, ReadMode::Mmap),
    ]
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("linalg/expected.json"))
        .expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

/// An answer of `expected.json` as (dtype, shape, values).
fn answer(v: &Value) -> (String, Vec<usize>, Vec<f64>) {
    let dtype = v["dtype"].as_str().expect("dtype").to_string();
    let shape = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let values = v["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|x| match x {
            Value::String(s) => s.parse::<f64>().expect("float"),
            other => other.as_f64().expect("number"),
        })
        .collect();
    (dtype, shape, values)
}

/// `got` matches NumPy's answer: dtype, shape, and values within `rel`
/// relative to the largest magnitude of the answer (NaN where NaN).
fn check(what: &str, got: &AnyArray, want: &Value, rel: f64) {
    let (dtype, shape, values) = answer(want);
    assert_eq!(got.dtype().name(), dtype, "{what}: dtype");
    assert_eq!(got.shape(), shape.as_slice(), "{what}: shape");
    let scale = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for (i, (g, w)) in got.to_f64().iter().zip(&values).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= rel * scale
        };
        assert!(ok, "{what}[{i}]: got {g}, NumPy {w}");
    }
}

fn open(e: &Engine, name: &str) -> Expr {
    e.open(fixtures_dir().join(format!("linalg/{name}.npy")))
        .expect("open fixture")
}

#[test]
fn cov_corrcoef_gram_match_numpy() {
    let exp = expected();
    for e in engines() {
        for (name, answers) in exp["inputs"].as_object().expect("inputs") {
            let x = open(&e, name);
            let mut exprs = vec![x.cov(0), x.cov(1), x.cov(2), x.corrcoef()];
            let keys = ["cov_ddof0", "cov_ddof1", "cov_ddof2", "corrcoef"];
            if x.shape().len() == 2 {
                exprs.push(x.gram());
            }
            // All in one pass over the input.
            let (got, report) = e.compute_with_report(exprs.clone()).expect("compute");
            assert_eq!(report.passes, 1, "{name}");
            let rel = if name == "big_mean" { 1e-9 } else { 1e-12 };
            for (k, key) in keys.iter().enumerate() {
                check(&format!("{name} {key}"), &got[k], &answers[*key], rel);
            }
            if exprs.len() == 5 {
                let gram = &got[4];
                let want = &answers["gram"];
                if name == "f32" {
                    // float32 stays float32 (NumPy's dtype of x.T @ x).
                    assert_eq!(gram.dtype(), DType::F32);
                    let as64 = AnyArray::from(gram.to_f64());
                    let mut w = want.clone();
                    w["dtype"] = Value::from("float64");
                    check("f32 gram", &as64, &w, 1e-6);
                } else {
                    check(&format!("{name} gram"), gram, want, 1e-12);
                }
            }
        }
    }
}

#[test]
fn ill_conditioned_covariance_keeps_its_digits() {
    // Mean 1e8, standard deviation 1: X.T X − nμμᵀ would lose every digit.
    let exp = expected();
    let want = &exp["inputs"]["big_mean"]["cov_ddof1"];
    let (_, _, values) = answer(want);
    for e in engines() {
        let x = open(&e, "big_mean");
        let got = e.compute(x.cov(1)).expect("cov").to_f64();
        for (g, w) in got.iter().zip(&values) {
            assert!(close_rel(*g, *w, 1e-9), "got {g}, NumPy {w}");
        }
    }
}

#[test]
fn dot_matches_numpy_and_streams() {
    let exp = expected();
    let dir = tempfile::tempdir().expect("tempdir");
    let w_any = common::read_any(&fixtures_dir().join("linalg/w.npy"));
    let w: Array2<f64> = w_any.to_f64().into_dimensionality::<Ix2>().expect("2-d");
    for (k, e) in engines().into_iter().enumerate() {
        let x = open(&e, "f64");
        let y = x.dot(w.clone());
        assert_eq!(y.shape(), vec![300, 3]);
        let got = e.compute(&y).expect("dot");
        check("dot", &got, &exp["dot_f64_w"], 1e-12);
        // Written to a file, and fused with a reduction in the same pass.
        let out = dir.path().join(format!("y{k}.npy"));
        e.write_npy(&y, &out).expect("write");
        check(
            "dot written",
            &common::read_any(&out),
            &exp["dot_f64_w"],
            1e-12,
        );
        let (s, report) = e.compute_with_report(y.sum(0)).expect("sum");
        assert_eq!(report.passes, 1);
        let (_, _, values) = answer(&exp["dot_f64_w"]);
        for (j, got) in s.to_f64().iter().enumerate() {
            let want: f64 = (0..300).map(|r| values[r * 3 + j]).sum();
            assert!(close_rel(*got, want, 1e-10), "{got} {want}");
        }
    }
    let e = engine(1, 1 << 20, ReadMode::Mmap);
    let err = e
        .compute(open(&e, "f64").dot(Array2::zeros((6, 2))))
        .unwrap_err();
    assert!(err.to_string().contains("not aligned"), "{err}");
}

#[test]
fn pca_matches_scikit_learn() {
    let exp = expected();
    for e in engines() {
        for name in ["f64", "f32"] {
            let want = &exp["pca"][name];
            let x = open(&e, name);
            let fit = e.pca(&x, 3).expect("pca");
            let as_any = |a: ArrayD<f64>| AnyArray::from(a);
            check(
                "components",
                &as_any(fit.components.clone().into_dyn()),
                &want["components"],
                1e-8,
            );
            for (key, got) in [
                ("explained_variance", &fit.explained_variance),
                ("explained_variance_ratio", &fit.explained_variance_ratio),
                ("singular_values", &fit.singular_values),
                ("mean", &fit.mean),
            ] {
                check(key, &as_any(got.clone().into_dyn()), &want[key], 1e-10);
            }
            let (_, _, nv) = answer(&want["noise_variance"]);
            assert!(close_rel(fit.noise_variance, nv[0], 1e-9));
            let z = e.compute(&fit.transform(&x)).expect("transform");
            check("transform", &z, &want["transform"], 1e-9);
        }
    }
    let e = engine(1, 1 << 20, ReadMode::Mmap);
    let x = open(&e, "f64");
    for k in [0, 8] {
        let err = e.pca(&x, k).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("components"), "{err}");
    }
    let err = e.pca(&open(&e, "f64_nan"), 2).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn refusals_are_errors_not_panics() {
    let e = engine(1, 1 << 20, ReadMode::Mmap);
    let x1 = open(&e, "f64_1d");
    let err = e.compute(x1.gram()).unwrap_err();
    assert!(err.to_string().contains("2-d"), "{err}");
    let x = open(&e, "f64");
    let err = e.compute(x.mean(0).cov(1)).unwrap_err();
    assert!(err.to_string().contains("reduced value"), "{err}");
    // A 1-d input is one variable: a 0-d result, as np.cov gives.
    let v = e.compute(x1.cov(1)).expect("cov of 1-d");
    assert_eq!(v.shape(), &[] as &[usize]);
}

#[test]
fn the_matrix_counts_in_the_budget() {
    // 400 columns: each state holds 400² f64 = 1.25 MiB plus its buffer.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.npy");
    let x = Array2::from_shape_fn((64, 400), |(i, j)| ((i * 400 + j) as f64).sin());
    write_any(&path, &AnyArray::from(x.into_dyn()));
    let small = Engine::builder()
        .memory_limit(2 << 20)
        .threads(2)
        .build()
        .expect("engine");
    let err = small
        .compute(small.open(&path).expect("open").gram())
        .unwrap_err();
    match &err {
        Error::LimitTooSmall { minimum, .. } => {
            assert!(*minimum > 2 << 20, "{err}");
            // The smallest limit named works.
            let ok = Engine::builder()
                .memory_limit(*minimum)
                .threads(2)
                .build()
                .expect("engine");
            ok.compute(ok.open(&path).expect("open").gram())
                .expect("at the minimum");
        }
        other => panic!("expected LimitTooSmall, got {other}"),
    }
    // explain reports the matrix's bytes before anything is read.
    let big = engine(2, 1 << 20, ReadMode::Mmap);
    let plan = big
        .explain(vec![big.open(&path).expect("open").cov(1)])
        .expect("explain");
    assert!(plan.to_string().contains("cov("), "{plan}");
}

/// Plain loops: the covariance (NumPy's definition, centred first) and
/// the Gram matrix of `x`.
fn reference(x: &Array2<f64>, ddof: u32) -> (Array2<f64>, Array2<f64>) {
    let (n, c) = x.dim();
    let mean: Array1<f64> = (0..c)
        .map(|j| x.column(j).iter().sum::<f64>() / n as f64)
        .collect();
    let mut cov = Array2::zeros((c, c));
    let mut gram = Array2::zeros((c, c));
    for i in 0..c {
        for j in 0..c {
            let mut s = 0.0;
            let mut g = 0.0;
            for r in 0..n {
                s += (x[[r, i]] - mean[i]) * (x[[r, j]] - mean[j]);
                g += x[[r, i]] * x[[r, j]];
            }
            cov[[i, j]] = s / (n as f64 - f64::from(ddof));
            gram[[i, j]] = g;
        }
    }
    (cov, gram)
}

proptest! {
    #![proptest_config(common::config(24))]

    #[test]
    fn matches_reference_across_blocks_and_threads(
        rows in 2usize..700,
        cols in 1usize..12,
        seed in any::<u64>(),
        offset in prop::sample::select(vec![0.0, 1.0, 1e6]),
        ddof in 0u32..3,
        block_rows in 1u64..300,
    ) {
        let mut rng = common::Rng(seed | 1);
        let x = Array2::from_shape_fn((rows, cols), |_| offset + rng.unit() * 10.0 - 5.0);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.npy");
        write_any(&path, &AnyArray::from(x.clone().into_dyn()));
        let (want_cov, want_gram) = reference(&x, ddof);
        let mut first: Option<Vec<AnyArray>> = None;
        for threads in [1, 2, 4] {
            let e = engine(threads, block_rows * cols as u64 * 8, ReadMode::Mmap);
            let xe = e.open(&path).expect("open");
            let got = e.compute(vec![xe.cov(ddof), xe.gram(), xe.corrcoef()]).expect("compute");
            let cov = got[0].to_f64().into_dimensionality::<Ix2>().expect("2-d");
            let gram = got[1].to_f64().into_dimensionality::<Ix2>().expect("2-d");
            let corr = got[2].to_f64().into_dimensionality::<Ix2>().expect("2-d");
            let cscale = want_cov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let gscale = want_gram.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for ((i, j), w) in want_cov.indexed_iter() {
                prop_assert!((cov[[i, j]] - w).abs() <= 1e-9 * cscale.max(1e-300),
                    "cov[{i},{j}] {} vs {w}", cov[[i, j]]);
                prop_assert!((gram[[i, j]] - want_gram[[i, j]]).abs() <= 1e-12 * gscale,
                    "gram[{i},{j}]");
                prop_assert!(cov[[i, j]] == cov[[j, i]] && gram[[i, j]] == gram[[j, i]]);
                let r = want_cov[[i, j]] / (want_cov[[i, i]] * want_cov[[j, j]]).sqrt();
                prop_assert!((corr[[i, j]] - r.clamp(-1.0, 1.0)).abs() <= 1e-8, "corr");
            }
            // Bit-identical whatever the thread count (fixed block size).
            match &first {
                None => first = Some(got),
                Some(f) => prop_assert_eq!(f, &got),
            }
        }
    }
}

#[test]
fn one_row_and_no_rows_follow_numpy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(2, 1 << 20, ReadMode::Mmap);
    let one = dir.path().join("one.npy");
    write_any(
        &one,
        &AnyArray::from(ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, 2.0]).expect("1x2")),
    );
    // n − ddof = 0: NumPy warns and gives NaN (0 · inf).
    let c = e.compute(e.open(&one).expect("open").cov(1)).expect("cov");
    assert!(c.to_f64().iter().all(|v| v.is_nan()));
    let c0 = e.compute(e.open(&one).expect("open").cov(0)).expect("cov");
    assert!(c0.to_f64().iter().all(|v| *v == 0.0));
    let g = e
        .compute(e.open(&one).expect("open").gram())
        .expect("gram")
        .to_f64()
        .into_dimensionality::<Ix2>()
        .expect("2-d");
    assert_eq!(g, ndarray::array![[1.0, 2.0], [2.0, 4.0]]);
    let m = e
        .compute(e.open(&one).expect("open").cast(DType::F64).mean(0))
        .expect("mean");
    assert_eq!(
        m.to_f64().into_dimensionality::<Ix1>().expect("1-d").len(),
        2
    );
}

#[test]
fn t_dot_matches_numpy() {
    let exp = expected();
    for e in engines() {
        let x = open(&e, "f64");
        let y = open(&e, "y_f32");
        let xty = x.t_dot(&y);
        assert_eq!(xty.shape(), vec![7, 2]);
        assert_eq!(xty.dtype(), DType::F64);
        // With the other reductions over x, in one pass.
        let (got, report) = e
            .compute_with_report(vec![xty, x.gram(), (&x * 2.0).t_dot(&y)])
            .expect("t_dot");
        assert_eq!(report.passes, 1);
        check("t_dot", &got[0], &exp["t_dot_f64_y"], 1e-12);
        let (_, _, values) = answer(&exp["t_dot_f64_y"]);
        for (g, w) in got[2].to_f64().iter().zip(&values) {
            assert!(close_rel(*g, 2.0 * w, 1e-12), "{g} {w}");
        }
    }
    let e = engine(1, 1 << 20, ReadMode::Mmap);
    let x = open(&e, "f64");
    for (y, msg) in [
        (open(&e, "f64_nan"), "not aligned"),
        (x.mean(0), "opened file"),
        (open(&e, "f64_1d"), "2-d"),
    ] {
        let err = e.compute(x.t_dot(&y)).unwrap_err();
        assert!(err.to_string().contains(msg), "{err}");
    }
}

#[test]
fn matrices_too_large_for_the_limit_go_by_panels() {
    use outcore_exec::Matrix;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.npy");
    let x = Array2::from_shape_fn((150, 600), |(i, j)| {
        1e4 + ((i * 600 + j) as f64 * 0.37).sin() * (1.0 + (j % 7) as f64)
    });
    write_any(&path, &AnyArray::from(x.into_dyn()));
    let big = engine(2, 1 << 20, ReadMode::Mmap);
    let xb = big.open(&path).expect("open");
    let small = Engine::builder()
        .memory_limit(4 << 20)
        .threads(2)
        .fsync(false)
        .build()
        .expect("engine");
    let xs = small.open(&path).expect("open");
    for (what, whole) in [
        (Matrix::Gram, xb.gram()),
        (Matrix::Cov { ddof: 1 }, xb.cov(1)),
        (Matrix::Corrcoef, xb.corrcoef()),
    ] {
        let want = big.compute(&whole).expect("whole").to_f64();
        // The whole matrix does not fit the small limit ...
        let err = small
            .compute(&match what {
                Matrix::Gram => xs.gram(),
                Matrix::Cov { ddof } => xs.cov(ddof),
                Matrix::Corrcoef => xs.corrcoef(),
            })
            .unwrap_err();
        assert!(matches!(err, Error::LimitTooSmall { .. }), "{err}");
        // ... its panels do: planned before anything is read, then written.
        let plan = small.matrix_panels(&xs, what).expect("panels");
        assert!(plan.passes > 1 && plan.panel_rows < 600, "{plan}");
        assert!(plan.pass_peak_bytes <= 4 << 20, "{plan}");
        let out = dir.path().join(format!("{what:?}.npy").replace(' ', ""));
        let done = small.write_matrix_npy(&xs, what, &out).expect("by panels");
        assert_eq!(done, plan);
        let got = common::read_any(&out).to_f64();
        assert_eq!(got.shape(), &[600, 600]);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-11 * scale, "{what:?}: {g} vs {w}");
        }
    }
    // A limit too small even for a panel of one row names the minimum.
    let tiny = Engine::builder()
        .memory_limit(64 << 10)
        .build()
        .expect("engine");
    let err = tiny
        .matrix_panels(&tiny.open(&path).expect("open"), Matrix::Gram)
        .unwrap_err();
    assert!(matches!(err, Error::LimitTooSmall { .. }), "{err}");
}
