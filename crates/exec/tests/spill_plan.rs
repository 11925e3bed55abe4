//! Intermediates that later passes need: spilled once and read back as
//! row-block sources (`persist`, and the results of `sort` and `cumsum`
//! used inside larger expressions), under the budget, leaving nothing in
//! the spill directory.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{read_any, write_any};
use ndarray::{Array2, ArrayD, IxDyn};
use outcore_exec::{AnyArray, Engine};

fn engine(limit: u64, spill: &std::path::Path) -> Engine {
    Engine::builder()
        .memory_limit(limit)
        .threads(3)
        .block_bytes(4096)
        .spill_dir(spill)
        .fsync(false)
        .build()
        .unwrap()
}

fn input(dir: &std::path::Path, rows: usize, cols: usize) -> (std::path::PathBuf, Vec<f64>) {
    let vals: Vec<f64> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1013) as f64 - 500.0)
        .collect();
    let path = dir.join("x.npy");
    let a = ArrayD::from_shape_vec(IxDyn(&[rows, cols]), vals.clone()).unwrap();
    write_any(&path, &AnyArray::F64(a));
    (path, vals)
}

fn empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// `persist()` runs an expensive `map_blocks` once: the two passes that
/// follow (statistics, then the write) read the spilled result.
#[test]
fn persist_computes_an_intermediate_once() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let (path, vals) = input(dir.path(), 2000, 3);
    let eng = engine(1 << 20, spill.path());
    let x = eng.open(&path).unwrap();
    let rows_seen = Arc::new(AtomicUsize::new(0));
    let seen = rows_seen.clone();
    let y = x
        .map_blocks(3, move |b: ndarray::ArrayView2<'_, f64>| -> Array2<f64> {
            seen.fetch_add(b.nrows(), Ordering::Relaxed);
            b.mapv(|v| v * 2.0)
        })
        .persist();
    let z = (&y - &y.mean(0)) / &y.std(0, 0);
    let out = dir.path().join("z.npy");
    let report = eng.write_npy(&z, &out).unwrap();
    // The closure saw every row exactly once, though two passes read y.
    assert_eq!(rows_seen.load(Ordering::Relaxed), 2000);
    assert!(report.bytes_spilled >= 2000 * 3 * 8, "{report:?}");
    let z = read_any(&out).to_f64();
    for j in 0..3 {
        let col: Vec<f64> = (0..2000).map(|i| 2.0 * vals[i * 3 + j]).collect();
        let m = col.iter().sum::<f64>() / 2000.0;
        let s = (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 2000.0).sqrt();
        for i in 0..2000 {
            let want = (col[i] - m) / s;
            assert!((z[[i, j]] - want).abs() < 1e-12, "{i},{j}");
        }
    }
    assert!(empty(spill.path()));

    // Without persist, the closure runs once per pass that needs y.
    rows_seen.store(0, Ordering::Relaxed);
    let seen = rows_seen.clone();
    let y = x.map_blocks(3, move |b: ndarray::ArrayView2<'_, f64>| -> Array2<f64> {
        seen.fetch_add(b.nrows(), Ordering::Relaxed);
        b.mapv(|v| v * 2.0)
    });
    let z = (&y - &y.mean(0)) / &y.std(0, 0);
    eng.write_npy(&z, dir.path().join("z2.npy")).unwrap();
    assert_eq!(rows_seen.load(Ordering::Relaxed), 4000);
}

/// A sorted array and a cumulative sum used inside larger expressions:
/// computed into spill files first, then streamed like inputs.
#[test]
fn sort_and_cumsum_results_feed_later_passes() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let (path, vals) = input(dir.path(), 999, 4);
    let eng = engine(256 << 10, spill.path());
    let x = eng.open(&path).unwrap();
    // The median is the middle row of the sorted array; the last row of
    // the cumsum is the column sum.
    let s = x.sort();
    let c = (&x * 2.0).cumsum();
    let (first, top, last_cs, total) = eng
        .compute((s.min(0), s.max(0), c.max(0), x.sum(0)))
        .unwrap();
    let col = |j: usize| -> Vec<f64> { (0..999).map(|i| vals[i * 4 + j]).collect() };
    let (first, top, last_cs, total) = (
        first.to_f64(),
        top.to_f64(),
        last_cs.to_f64(),
        total.to_f64(),
    );
    for j in 0..4 {
        let mut v = col(j);
        v.sort_by(f64::total_cmp);
        assert_eq!(first[j], v[0]);
        assert_eq!(top[j], v[998]);
        let mut acc = 0.0;
        let mut most = f64::NEG_INFINITY;
        for x in col(j) {
            acc += 2.0 * x;
            most = most.max(acc);
        }
        assert_eq!(last_cs[j], most);
        assert_eq!(total[j], col(j).iter().sum::<f64>());
    }
    // Sorted values minus their column's median, written: the sort runs
    // once, the quantile reads its spilled result.
    let centred = &s - &s.median(0);
    let out = dir.path().join("c.npy");
    eng.write_npy(&centred, &out).unwrap();
    let got = read_any(&out).to_f64();
    for j in 0..4 {
        let mut v = col(j);
        v.sort_by(f64::total_cmp);
        for i in 0..999 {
            assert_eq!(got[[i, j]], v[i] - v[499]);
        }
    }
    assert!(empty(spill.path()));
    // explain describes the operators before the passes.
    let plan = eng.explain(&centred).unwrap();
    assert!(plan.steps.iter().any(|s| s.starts_with("sort")), "{plan}");
    assert!(plan.steps.iter().any(|s| s.contains("median")), "{plan}");
}

/// A spill quota too small is an error naming the numbers; a missing
/// spill directory too (when the engine is built); the output is not
/// created.
#[test]
fn spill_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    // 312.5 KiB: more than the limit holds, so the sort spills.
    let (path, _) = input(dir.path(), 20_000, 2);
    let eng = Engine::builder()
        .memory_limit(64 << 10)
        .spill_quota(1000)
        .fsync(false)
        .build()
        .unwrap();
    let x = eng.open(&path).unwrap();
    let out = dir.path().join("s.npy");
    let err = eng.write_npy(&x.sort(), &out).unwrap_err();
    assert!(matches!(err, outcore_exec::Error::Spill(_)), "{err:?}");
    assert!(err.to_string().contains("spill quota exceeded"), "{err}");
    assert!(!out.exists());
    let err = Engine::builder()
        .spill_dir("/nonexistent/outcore-spill")
        .build()
        .unwrap_err();
    assert!(matches!(err, outcore_exec::Error::Spill(_)), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/outcore-spill"),
        "{err}"
    );
}

/// `explain` of a sort and a cumsum says what their runs then do: the
/// passes over the data, the bytes read, spilled and written, as the
/// run's report counts them.
#[test]
fn explain_of_operators_matches_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let (path, _) = input(dir.path(), 20_000, 8);
    let eng = engine(256 << 10, spill.path());
    let x = eng.open(&path).unwrap();
    let fmt = outcore_spill::format_bytes;
    for (what, e) in [("sort", x.sort()), ("cumsum", x.cumsum())] {
        let plan = eng.explain(&e).unwrap();
        assert!(plan.passes.is_empty(), "{what}: {plan}");
        assert!(
            plan.to_string()
                .starts_with("plan: 0 passes and 1 operator step"),
            "{what}: {plan}"
        );
        let step = &plan.steps[0];
        let out = dir.path().join(format!("{what}.npy"));
        let report = eng.write_npy(&e, &out).unwrap();
        let read = format!("{} read", fmt(report.bytes_read));
        let written = format!("{} written", fmt(report.bytes_written));
        assert!(
            step.contains(&read) && step.contains(&written),
            "{what}: {step} vs {report:?}"
        );
        if what == "sort" {
            let passes = format!("{} passes over the data", report.passes);
            let spilled = format!("{} spilled", fmt(report.bytes_spilled));
            assert!(
                step.contains(&passes) && step.contains(&spilled),
                "{step} vs {report:?}"
            );
            assert!(report.passes > 2, "{report:?}");
        }
    }
    assert!(empty(spill.path()));
}
