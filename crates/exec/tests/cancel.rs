//! Cancellation: a run whose token is cancelled stops between blocks with
//! `Error::Cancelled`, writes no output (even when cancelled after its last
//! block), leaves no spill file and returns every reservation.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array2, ArrayView2};
use outcore_chunker::{ArrayWriter, CancelToken, DType, OutputSpec, ReadMode};
use outcore_exec::{Engine, Error, Expr};

const ROWS: u64 = 10_000;
const COLS: u64 = 8;

/// A `ROWS × COLS` float64 input.
fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("x.npy");
    let spec = OutputSpec::npy(DType::F64, vec![ROWS, COLS]).fsync(false);
    let w = ArrayWriter::create(&path, spec).unwrap();
    let a = Array2::from_shape_fn((ROWS as usize, COLS as usize), |(r, c)| {
        ((r * 7 + c * 13) % 101) as f64
    });
    w.write_block(0, a.view()).unwrap();
    w.finish().unwrap();
    path
}

fn engine(token: &CancelToken, threads: usize, mode: ReadMode, spill: &Path) -> Engine {
    Engine::builder()
        .memory_limit(64 << 20)
        .threads(threads)
        .block_bytes(8 << 10)
        .read_mode(mode)
        .fsync(false)
        .spill_dir(spill)
        .cancel(token.clone())
        .build()
        .unwrap()
}

/// `x` through a `map_blocks` that cancels `token` when it has seen
/// `after` blocks (0: never).
fn cancelling(x: &Expr, token: &CancelToken, after: u64) -> Expr {
    let (token, seen) = (token.clone(), Arc::new(AtomicU64::new(0)));
    x.map_blocks(COLS as usize, move |b: ArrayView2<'_, f64>| {
        if seen.fetch_add(1, Ordering::SeqCst) + 1 == after {
            token.cancel();
        }
        b.to_owned()
    })
}

fn blocks_of(engine: &Engine, e: &Expr) -> u64 {
    let plan = engine.explain(e).unwrap();
    let pass = plan.passes.last().unwrap();
    pass.rows.div_ceil(pass.block_rows)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Nothing left behind: no output (only the input in `dir`), no spill
/// file, no reservation, no spill quota in use.
fn assert_clean(engine: &Engine, dir: &Path, spill: &Path) {
    assert_eq!(entries(dir), ["x.npy"]);
    assert!(entries(spill).is_empty(), "{:?}", entries(spill));
    assert_eq!(engine.budget().reserved(), 0);
    assert_eq!(engine.spill_space().used(), 0);
}

/// One operation of a test, run for its error.
type Run<'a> = dyn Fn() -> Result<(), Error> + 'a;

fn cancelled(err: Error) -> (&'static str, u64, u64) {
    match err {
        Error::Cancelled { stage, done, total } => (stage, done, total),
        other => panic!("expected Cancelled, got {other}"),
    }
}

#[test]
fn a_cancelled_token_stops_every_operation_before_its_first_block() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let x_path = input(dir.path());
    let token = CancelToken::new();
    let engine = engine(&token, 2, ReadMode::Mmap, spill.path());
    assert!(!engine.cancel_token().is_cancelled());
    let x = engine.open(&x_path).unwrap();
    token.cancel();
    assert!(engine.cancel_token().is_cancelled());
    let out = dir.path().join("out.npy");
    let cases: [(&str, Box<Run<'_>>); 6] = [
        (
            "blocks of a pass",
            Box::new(|| engine.compute(&x.sum(0)).map(drop)),
        ),
        (
            "blocks of a pass",
            Box::new(|| engine.write_npy(&(&x * 2.0), &out).map(drop)),
        ),
        // The limit holds the array: sorted in memory.
        (
            "blocks of the array to sort",
            Box::new(|| engine.write_npy(&x.sort(), &out).map(drop)),
        ),
        (
            "blocks of a cumsum",
            Box::new(|| engine.write_npy(&x.cumsum(), &out).map(drop)),
        ),
        (
            "blocks of a quantile pass",
            Box::new(|| engine.compute(&x.median(0)).map(drop)),
        ),
        // The argument of a sort is spilled first, by an ordinary pass.
        (
            "blocks of a pass",
            Box::new(|| engine.write_npy(&(&x + 1.0).sort(), &out).map(drop)),
        ),
    ];
    for (want, run) in cases {
        let (stage, done, total) = cancelled(run().unwrap_err());
        assert_eq!((stage, done), (want, 0));
        assert!(total > 0);
        assert_clean(&engine, dir.path(), spill.path());
    }
    let msg = engine.compute(&x.sum(0)).unwrap_err().to_string();
    assert!(
        msg.starts_with("cancelled after 0 of ") && msg.contains("no output was written"),
        "{msg}"
    );
}

#[test]
fn cancelled_mid_pass_stops_between_blocks_and_writes_nothing() {
    for threads in [1, 2] {
        for mode in [ReadMode::Mmap, ReadMode::Pread] {
            let dir = tempfile::tempdir().unwrap();
            let spill = tempfile::tempdir().unwrap();
            let x_path = input(dir.path());
            let token = CancelToken::new();
            let engine = engine(&token, threads, mode, spill.path());
            let x = engine.open(&x_path).unwrap();
            let total = blocks_of(&engine, &(&x * 1.0));
            assert!(total > 20, "{total} blocks");

            // A write, cancelled at its fifth block.
            let y = cancelling(&x, &token, 5);
            let out = dir.path().join("y.npy");
            let (stage, done, n) = cancelled(engine.write_npy(&y, &out).unwrap_err());
            assert_eq!((stage, n), ("blocks of a pass", total));
            // Stopped between blocks: at most one block per slot in flight
            // after the cancelling one.
            assert!(done < 5 + 2 * threads as u64 + 1, "{done} of {n}");
            assert_clean(&engine, dir.path(), spill.path());

            // A reduction over the same kind of expression.
            let token = CancelToken::new();
            let engine = self::engine(&token, threads, mode, spill.path());
            let x = engine.open(&x_path).unwrap();
            let y = cancelling(&x, &token, 3);
            let (_, done, n) = cancelled(engine.compute(&y.mean(0)).unwrap_err());
            assert!(done < n, "{done} of {n}");
            assert_clean(&engine, dir.path(), spill.path());
        }
    }
}

#[test]
fn cancelled_after_the_last_block_still_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let x_path = input(dir.path());
    let token = CancelToken::new();
    let engine = engine(&token, 1, ReadMode::Mmap, spill.path());
    let x = engine.open(&x_path).unwrap();
    let total = blocks_of(&engine, &(&x * 1.0));
    // Cancelled while the last block is computed: every block is merged,
    // and the output still does not take its name.
    let y = cancelling(&x, &token, total);
    let out = dir.path().join("y.npy");
    let err = engine.write_npy(&y, &out).unwrap_err();
    let (_, done, n) = cancelled(err);
    assert_eq!(done, n);
    assert_clean(&engine, dir.path(), spill.path());

    // The same engine keeps refusing; a new token runs to the end.
    assert!(matches!(
        engine.write_npy(&(&x * 1.0), &out),
        Err(Error::Cancelled { done: 0, .. })
    ));
    let engine = self::engine(&CancelToken::new(), 2, ReadMode::Mmap, spill.path());
    let x = engine.open(&x_path).unwrap();
    engine.write_npy(&cancelling(&x, &token, 0), &out).unwrap();
    assert!(out.exists());
}

#[test]
fn a_sort_whose_spilled_argument_is_cancelled_releases_its_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let x_path = input(dir.path());
    let token = CancelToken::new();
    // A small limit: the sort needs several runs and merge levels.
    let engine = Engine::builder()
        .memory_limit(256 << 10)
        .threads(2)
        .fsync(false)
        .spill_dir(spill.path())
        .cancel(token.clone())
        .build()
        .unwrap();
    let x = engine.open(&x_path).unwrap();
    let y = cancelling(&x, &token, 4).sort();
    let out = dir.path().join("sorted.npy");
    let (stage, done, n) = cancelled(engine.write_npy(&y, &out).unwrap_err());
    assert_eq!(stage, "blocks of a pass");
    assert!(done < n, "{done} of {n}");
    assert_clean(&engine, dir.path(), spill.path());
}
