//! `nanmedian` / `nanquantile` (axis 0, axis 1, all elements) and
//! `median` / `quantile` along axis 1, against answers computed by NumPy.
//!
//! `tests/fixtures/nanq/` holds inputs written by `np.save` and NumPy's
//! answers (`tests/fixtures/make_nan_quantiles.py` regenerates them; its
//! `manifest.json` lists them). Each is computed here under budgets from
//! roomy to tiny, with one and three threads, by radix selection and by
//! the external sort, and must equal NumPy's bit for bit (any NaN equals
//! any NaN) — including NumPy's float16 `nanmedian` along an axis shorter
//! than 600, which overflows where `median` does not.

mod common;

use std::sync::OnceLock;

use common::{Json, fixtures_dir, read_any, same_bits};
use outcore_exec::{AnyArray, Engine, Error, Expr, QuantileMethod, ReduceAxis};

fn manifest() -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = fixtures_dir().join("nanq/manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Json::parse(&text).expect("manifest.json parses")
    })
}

fn dir() -> std::path::PathBuf {
    fixtures_dir().join("nanq")
}

/// Engines from roomy to tiny, threads 1 and 3, each quantile method.
fn engines() -> Vec<(String, Engine)> {
    let mut out = Vec::new();
    for limit in [64u64 << 20, 96 << 10, 40 << 10] {
        for threads in [1, 3] {
            for method in [
                QuantileMethod::Auto,
                QuantileMethod::Select,
                QuantileMethod::Sort,
            ] {
                let e = Engine::builder()
                    .memory_limit(limit)
                    .threads(threads)
                    .block_bytes(256)
                    .quantile_method(method)
                    .fsync(false)
                    .build()
                    .expect("engine builds");
                out.push((format!("limit {limit}, {threads} threads, {method:?}"), e));
            }
        }
    }
    out
}

fn axis_of(a: &Json) -> ReduceAxis {
    if a.is_null() {
        ReduceAxis::All
    } else if a.u64() == 0 {
        ReduceAxis::Axis0
    } else {
        ReduceAxis::Axis1
    }
}

/// Element-by-element equality, bit for bit (NaN = NaN).
fn same(got: &AnyArray, want: &AnyArray) -> Result<(), String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Err(format!(
            "got {} {:?}, want {} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    for (i, (g, w)) in got.scalars().zip(want.scalars()).enumerate() {
        if !same_bits(g, w) {
            return Err(format!("element {i}: got {g:?}, want {w:?}"));
        }
    }
    Ok(())
}

fn expr(x: &Expr, op: &str, axis: ReduceAxis, q: f64) -> Expr {
    match op {
        "nanmedian" => x.nanmedian(axis),
        "nanquantile" => x.nanquantile(q, axis),
        "median" => x.median(axis),
        "quantile" => x.quantile(q, axis),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn every_answer_equals_numpy() {
    let engines = engines();
    let mut checked = 0;
    for e in manifest().get("expected").arr() {
        let input = dir().join(format!("{}.npy", e.get("input").str()));
        let want = read_any(&dir().join(e.get("file").str()));
        let (op, axis) = (e.get("op").str(), axis_of(e.get("axis")));
        let q = if e.get("q").is_null() {
            0.0
        } else {
            e.get("q").f64()
        };
        for (name, engine) in &engines {
            let x = engine.open(&input).unwrap();
            let got = match engine.compute(expr(&x, op, axis, q)) {
                Ok(got) => got,
                // Radix selection forced on wide rows under a tiny limit
                // (Auto would sort): refused before reading, as planned.
                Err(Error::LimitTooSmall { .. }) if name.ends_with("Select") => continue,
                Err(err) => panic!("{}: {err} ({name})", e.get("file").str()),
            };
            if let Err(msg) = same(&got, &want) {
                panic!("{}: {msg} ({name})", e.get("file").str());
            }
            checked += 1;
        }
    }
    assert!(checked > 3000, "only {checked} answers checked");
}

#[test]
fn plain_and_nan_variants_computed_together() {
    // One computation asking for both: each group is its own step, and
    // each answer is still NumPy's.
    let engine = Engine::builder()
        .memory_limit(1 << 20)
        .threads(2)
        .build()
        .unwrap();
    let x = engine.open(dir().join("f64.npy")).unwrap();
    for axis in [ReduceAxis::Axis0, ReduceAxis::Axis1, ReduceAxis::All] {
        let al = match axis {
            ReduceAxis::Axis0 => "0",
            ReduceAxis::Axis1 => "1",
            _ => "all",
        };
        let (a, b) = engine
            .compute((x.nanmedian(axis), x.nanquantile(0.25, axis)))
            .unwrap();
        same(
            &a,
            &read_any(&dir().join(format!("f64.nanmedian_{al}.npy"))),
        )
        .unwrap();
        same(&b, &read_any(&dir().join(format!("f64.nanq0.25_{al}.npy")))).unwrap();
        let (m, n) = engine.compute((x.median(axis), x.nanmedian(axis))).unwrap();
        same(
            &n,
            &read_any(&dir().join(format!("f64.nanmedian_{al}.npy"))),
        )
        .unwrap();
        // Column 2 is all NaN: the plain median is NaN where NaN are.
        assert!(m.scalars().any(|s| common::scalar_f64(s).is_nan()));
    }
}

#[test]
fn axis1_needs_one_row_and_the_results() {
    let dirt = tempfile::tempdir().unwrap();
    let path = dirt.path().join("wide.npy");
    // 3 rows of 100000 float64: one row is 800000 B.
    let a = AnyArray::F64(ndarray::ArrayD::from_shape_fn(
        ndarray::IxDyn(&[3, 100_000]),
        |i| ((i[1] * 7919 + i[0]) % 1000) as f64,
    ));
    common::write_any(&path, &a);
    let small = Engine::builder()
        .memory_limit(1 << 20)
        .threads(1)
        .build()
        .unwrap();
    let x = small.open(&path).unwrap();
    match small.compute(x.median(1)) {
        Err(Error::LimitTooSmall { minimum, .. }) => assert!(minimum > 1 << 20, "{minimum}"),
        other => panic!("expected LimitTooSmall, got {other:?}"),
    }
    let enough = Engine::builder()
        .memory_limit(4 << 20)
        .threads(2)
        .build()
        .unwrap();
    let x = enough.open(&path).unwrap();
    let (m, report) = enough.compute_with_report(x.median(1)).unwrap();
    assert_eq!(m.shape(), &[3]);
    assert!(report.peak_reserved <= 4 << 20, "{report:?}");
    // Every row reserved at least once: a copy of a row besides the read.
    assert!(report.peak_reserved >= 2 * 800_000, "{report:?}");
}

#[test]
fn nanquantile_of_an_empty_axis_is_nan_and_quantile_an_error() {
    let dirt = tempfile::tempdir().unwrap();
    let path = dirt.path().join("e.npy");
    common::write_any(
        &path,
        &AnyArray::F64(ndarray::ArrayD::zeros(ndarray::IxDyn(&[0, 3]))),
    );
    let engine = Engine::builder().memory_limit(1 << 20).build().unwrap();
    let x = engine.open(&path).unwrap();
    let got = engine.compute(x.nanquantile(0.5, 0)).unwrap();
    assert_eq!(got.shape(), &[3]);
    assert!(got.scalars().all(|s| common::scalar_f64(s).is_nan()));
    assert!(matches!(
        engine.compute(x.quantile(0.5, 0)),
        Err(Error::Empty { .. })
    ));
    let got = engine.compute(x.nanmedian(1)).unwrap();
    assert_eq!(got.shape(), &[0]);
}
