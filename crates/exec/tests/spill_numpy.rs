//! Sort, cumsum, median and quantiles against answers computed by NumPy.
//!
//! `tests/fixtures/spill/` holds inputs written by `np.save` and NumPy's
//! results (`tests/fixtures/make_spill_expected.py` regenerates them; its
//! `manifest.json` lists every answer, and what NumPy refuses). Each is
//! computed here under budgets from roomy to tiny — tiny enough that the
//! external sort makes many runs and merges them in several levels — with
//! one and three threads, by radix selection and by the external sort,
//! and must equal NumPy's bit for bit (any NaN equals any NaN).

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::{Json, fixtures_dir, read_any, same_bits};
use outcore_exec::{AnyArray, Engine, Expr, QuantileMethod, ReduceAxis};

fn manifest() -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = fixtures_dir().join("spill/manifest.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Json::parse(&text).expect("manifest.json parses")
    })
}

fn spill_dir() -> std::path::PathBuf {
    fixtures_dir().join("spill")
}

/// Engines from roomy to tiny, threads 1 and 3, both quantile methods.
fn engines() -> Vec<(String, Engine)> {
    let mut out = Vec::new();
    for limit in [64u64 << 20, 96 << 10, 40 << 10] {
        for threads in [1, 3] {
            for method in [QuantileMethod::Select, QuantileMethod::Sort] {
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
    } else {
        ReduceAxis::Axis0
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

fn computed(
    engine: &Engine,
    x: &Expr,
    op: &str,
    axis: ReduceAxis,
    q: f64,
    out: &Path,
) -> outcore_exec::Result<AnyArray> {
    match op {
        "sort" => {
            engine.write_npy(&x.sort(), out)?;
            Ok(read_any(out))
        }
        "cumsum" => {
            engine.write_npy(&x.cumsum(), out)?;
            Ok(read_any(out))
        }
        "median" => engine.compute(x.median(axis)),
        "quantile" => engine.compute(x.quantile(q, axis)),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn every_answer_equals_numpy() {
    let m = manifest();
    let engines = engines();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for e in m.get("expected").arr() {
        let input = spill_dir().join(format!("{}.npy", e.get("input").str()));
        let want = read_any(&spill_dir().join(e.get("file").str()));
        let op = e.get("op").str();
        let axis = axis_of(e.get("axis"));
        let q = if e.get("q").is_null() {
            0.0
        } else {
            e.get("q").f64()
        };
        for (name, engine) in &engines {
            let x = engine.open(&input).unwrap();
            let out = dir.path().join(format!("out{checked}.npy"));
            let got = computed(engine, &x, op, axis, q, &out)
                .unwrap_or_else(|err| panic!("{}: {err} ({name})", e.get("file").str()));
            if let Err(msg) = same(&got, &want) {
                panic!("{}: {msg} ({name})", e.get("file").str());
            }
            let _ = std::fs::remove_file(&out);
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} answers checked");
}

#[test]
fn what_numpy_refuses_is_an_error() {
    let m = manifest();
    let engines = engines();
    let dir = tempfile::tempdir().unwrap();
    for e in m.get("refused").arr() {
        let input = spill_dir().join(format!("{}.npy", e.get("input").str()));
        let op = e.get("op").str();
        let axis = axis_of(e.get("axis"));
        let q = if e.get("q").is_null() {
            0.0
        } else {
            e.get("q").f64()
        };
        let (_, engine) = &engines[0];
        let x = engine.open(&input).unwrap();
        let err = computed(engine, &x, op, axis, q, &dir.path().join("o.npy"))
            .expect_err(e.get("file").str());
        assert!(err.to_string().contains("bool"), "{err}");
    }
}
