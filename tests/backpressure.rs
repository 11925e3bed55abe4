//! Back-pressure and refusal, in process: the budget's accounting (not the
//! resident set — see `memory_promise.rs` for that).
//!
//! * A limit that fits exactly one block in flight still completes reads
//!   and writes, with the results a generous limit gives.
//! * Several engines sharing one [`MemoryBudget`], each on its own thread,
//!   never deadlock (a watchdog fails the test instead of hanging CI), give
//!   correct results, and leave nothing reserved.
//! * A limit that cannot hold one row is refused before anything is read,
//!   with an error naming the smallest limit that works — and that limit
//!   does work, for one-pass and two-pass pipelines alike.
//!
//! See `docs/memory.md` for the model these tests check.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ndarray::{Array2, ArrayD};
use outcore::{
    ArrayFile, ArrayWriter, DType, Engine, Error, Expr, MemoryBudget, OutputSpec, ReadMode,
};

const MIB: u64 = 1 << 20;

/// A deterministic, non-trivial value for element `(i, j)`: exactly
/// representable, so elementwise outputs can be checked exactly.
fn value(i: u64, j: u64) -> f64 {
    ((i * 31 + j * 17 + (i * j) % 13) % 1000) as f64 / 8.0 - 60.0
}

/// Writes a `rows × cols` float64 `.npy` file of [`value`]s, in blocks.
fn write_input(path: &Path, rows: u64, cols: u64) {
    let w = ArrayWriter::create(path, OutputSpec::npy(DType::F64, vec![rows, cols]))
        .expect("create the input");
    let step = (65_536 / cols).max(1);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        let block = Array2::from_shape_fn(((r1 - r0) as usize, cols as usize), |(i, j)| {
            value(r0 + i as u64, j as u64)
        });
        w.write_block(r0, block.view()).expect("write the input");
        r0 = r1;
    }
    w.finish().expect("finish the input");
}

/// Every element of a `.npy` file, as float64, row-major.
fn read_all(path: &Path) -> (Vec<u64>, Vec<f64>) {
    let f = ArrayFile::open(path).expect("open an output");
    let meta = f.meta().clone();
    let block = f.read_rows(0..meta.rows()).expect("read an output");
    let values = match meta.dtype {
        DType::F64 => block.view::<f64>().unwrap().iter().copied().collect(),
        DType::F32 => block
            .view::<f32>()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        other => panic!("unexpected output dtype {other}"),
    };
    (meta.shape.clone(), values)
}

fn engine(limit: u64) -> Engine {
    Engine::builder()
        .memory_limit(limit)
        .threads(2)
        .fsync(false)
        .build()
        .expect("an engine")
}

/// Asserts two float arrays agree to a relative 1e-12 (block sizes change
/// the order of summation, nothing more); NaNs must match.
fn assert_close(what: &str, a: &ArrayD<f64>, b: &ArrayD<f64>) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    for (k, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
        let ok =
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0);
        assert!(ok, "{what}[{k}]: {x} vs {y}");
    }
}

fn assert_close_slices(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (k, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ok =
            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0);
        assert!(ok, "{what}[{k}]: {x} vs {y}");
    }
}

/// The reductions every test computes: over all elements, down the rows
/// and along each row, in one pass.
fn stats(x: &Expr) -> Vec<Expr> {
    vec![
        x.sum(None),
        x.mean(0),
        x.std(0, 0),
        x.min(0),
        x.max(None),
        x.mean(1),
        x.var(1, 1),
    ]
}

fn compute_stats(engine: &Engine, path: &Path) -> Vec<ArrayD<f64>> {
    let x = engine.open(path).expect("open");
    let (values, report) = engine
        .compute_with_report(stats(&x))
        .expect("stats complete");
    assert!(
        report.peak_reserved <= engine.budget().limit(),
        "peak reserved {} over the limit {}",
        report.peak_reserved,
        engine.budget().limit()
    );
    values.iter().map(|v| v.to_f64()).collect()
}

/// The limit named by a `LimitTooSmall` error.
fn minimum_of(err: Error) -> u64 {
    match err {
        Error::LimitTooSmall { minimum, .. } => minimum,
        other => panic!("expected LimitTooSmall, got {other}"),
    }
}

/// The smallest limit with which `explain` accepts every pass of `exprs`:
/// start from the minimum a one-byte limit is refused with, and raise it
/// while a later pass asks for more.
fn explained_minimum(path: &Path, exprs: impl Fn(&Expr) -> Vec<Expr>) -> u64 {
    let mut limit = 1;
    for _ in 0..8 {
        let e = engine(limit);
        let x = e.open(path).expect("open");
        match e.explain(exprs(&x)) {
            Ok(_) => return limit,
            Err(err) => {
                let min = minimum_of(err);
                assert!(
                    min > limit,
                    "minimum {min} is not above the refused limit {limit}"
                );
                limit = min;
            }
        }
    }
    panic!("explain never accepted a limit");
}

fn standardized(x: &Expr) -> Expr {
    (x - &x.mean(0)) / &x.std(0, 0)
}

/// (a) One block in flight: the smallest limit `explain` accepts runs
/// with blocks of one row, one at a time, on two threads — reads and
/// writes complete with the results of a generous limit.
#[test]
fn one_block_in_flight_completes_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let (rows, cols) = (6_000u64, 64u64);
    write_input(&path, rows, cols);
    let generous = compute_stats(&engine(256 * MIB), &path);

    // Statistics, one pass.
    let limit = explained_minimum(&path, stats);
    let tight = engine(limit);
    let x = tight.open(&path).unwrap();
    let plan = tight.explain(stats(&x)).unwrap();
    assert_eq!(plan.passes.len(), 1);
    let pass = &plan.passes[0];
    assert_eq!(pass.blocks_in_flight, 1, "{plan}");
    assert_eq!(pass.block_rows, 1, "{plan}");
    assert!(pass.peak_bytes <= limit, "{plan}");
    let got = compute_stats(&tight, &path);
    for (k, (a, b)) in got.iter().zip(&generous).enumerate() {
        assert_close(&format!("stat {k}"), a, b);
    }
    assert_eq!(tight.budget().reserved(), 0);
    let usage = tight.budget().usage();
    assert!(usage.peak <= limit && usage.peak > 0, "{usage}");

    // A one-pass write: exact values.
    let write = |x: &Expr| vec![(x * 2.0 + 1.0).cast(DType::F32)];
    let limit = explained_minimum(&path, write);
    let tight = engine(limit);
    let x = tight.open(&path).unwrap();
    let plan = tight.explain(write(&x)).unwrap();
    assert_eq!(plan.passes[0].blocks_in_flight, 1, "{plan}");
    let out = dir.path().join("y.npy");
    let report = tight
        .write_npy(&write(&x)[0], &out)
        .expect("write completes");
    assert!(report.peak_reserved <= limit);
    assert_eq!(report.blocks, rows);
    let (shape, y) = read_all(&out);
    assert_eq!(shape, vec![rows, cols]);
    for (k, &v) in y.iter().enumerate() {
        let (i, j) = (k as u64 / cols, k as u64 % cols);
        assert_eq!(
            v,
            f64::from((value(i, j) * 2.0 + 1.0) as f32),
            "y[{i}, {j}]"
        );
    }
    assert_eq!(tight.budget().reserved(), 0);

    // A two-pass write (standardize), at the largest minimum of its passes.
    let limit = explained_minimum(&path, |x| vec![standardized(x)]);
    let tight = engine(limit);
    let x = tight.open(&path).unwrap();
    let plan = tight.explain(vec![standardized(&x)]).unwrap();
    assert_eq!(plan.passes.len(), 2, "{plan}");
    assert!(
        plan.passes.iter().any(|p| p.blocks_in_flight == 1),
        "{plan}"
    );
    assert!(plan.passes.iter().all(|p| p.peak_bytes <= limit), "{plan}");
    let z_tight = dir.path().join("z-tight.npy");
    let report = tight
        .write_npy(&standardized(&x), &z_tight)
        .expect("standardize completes");
    assert_eq!(report.passes, 2);
    assert!(report.peak_reserved <= limit);
    let roomy = engine(256 * MIB);
    let x = roomy.open(&path).unwrap();
    let z_roomy = dir.path().join("z-roomy.npy");
    roomy.write_npy(&standardized(&x), &z_roomy).unwrap();
    let (_, a) = read_all(&z_tight);
    let (_, b) = read_all(&z_roomy);
    assert_close_slices("standardized", &a, &b);
    assert_eq!(tight.budget().reserved(), 0);
}

/// What one engine of the shared-budget test does.
#[derive(Clone, Copy, Debug)]
enum Job {
    Stats,
    Scale,
    Standardize,
}

/// Runs `f` on its own thread; fails if it takes longer than `limit` (a
/// deadlock fails the test instead of hanging it) or panics.
fn with_watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().expect("the watched thread panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The thread panicked before sending: report its panic.
            match handle.join() {
                Ok(_) => unreachable!("the thread sends before it returns"),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("not done after {limit:?}: engines sharing a budget deadlocked (or starved)")
        }
    }
}

/// (b) Four engines, each on its own thread, share one small budget and
/// run statistics, one-pass and two-pass writes, repeatedly. Each pass
/// reserves all or nothing, so none waits while holding part of its
/// memory: all finish, with correct results, and the budget is empty after.
#[test]
fn engines_sharing_one_budget_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let (rows, cols) = (4_000u64, 64u64);
    write_input(&path, rows, cols);
    let reference = compute_stats(&engine(256 * MIB), &path);
    let z_ref = dir.path().join("z-ref.npy");
    {
        let e = engine(256 * MIB);
        let x = e.open(&path).unwrap();
        e.write_npy(&standardized(&x), &z_ref).unwrap();
    }
    let (_, z_ref) = read_all(&z_ref);

    // Small: a few times the largest per-pass minimum, so every pass needs
    // most of the budget and the engines queue for it.
    let need = [
        explained_minimum(&path, stats),
        explained_minimum(&path, |x| vec![x * 2.0 + 1.0]),
        explained_minimum(&path, |x| vec![standardized(x)]),
    ];
    let limit = need.iter().max().unwrap() * 3;
    let budget = MemoryBudget::new(limit);
    const ENGINES: usize = 4;
    const ROUNDS: usize = 4;

    let dir_path: PathBuf = dir.path().to_path_buf();
    let shared = budget.clone();
    let results = with_watchdog(Duration::from_secs(60), move || {
        let handles: Vec<_> = (0..ENGINES)
            .map(|i| {
                let budget = shared.clone();
                let path = path.clone();
                let dir = dir_path.clone();
                std::thread::spawn(move || {
                    let e = Engine::builder()
                        .budget(budget)
                        .threads(2)
                        .fsync(false)
                        .build()
                        .unwrap();
                    let mut out = Vec::new();
                    for round in 0..ROUNDS {
                        let job = [Job::Stats, Job::Scale, Job::Standardize][(i + round) % 3];
                        let x = e.open(&path).unwrap();
                        match job {
                            Job::Stats => out.push((job, compute_stats(&e, &path), None)),
                            Job::Scale | Job::Standardize => {
                                let expr = match job {
                                    Job::Scale => x * 2.0 + 1.0,
                                    _ => standardized(&x),
                                };
                                let file = dir.join(format!("out-{i}-{round}.npy"));
                                let report = e.write_npy(&expr, &file).unwrap();
                                assert!(report.peak_reserved <= e.budget().limit());
                                let (_, v) = read_all(&file);
                                std::fs::remove_file(&file).unwrap();
                                out.push((job, Vec::new(), Some(v)));
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an engine thread panicked"))
            .collect::<Vec<_>>()
    });

    let mut runs = 0;
    for (job, stats, file) in results.into_iter().flatten() {
        runs += 1;
        match job {
            Job::Stats => {
                for (k, (a, b)) in stats.iter().zip(&reference).enumerate() {
                    assert_close(&format!("shared stat {k}"), a, b);
                }
            }
            Job::Scale => {
                let v = file.unwrap();
                for (k, &got) in v.iter().enumerate() {
                    let (i, j) = (k as u64 / cols, k as u64 % cols);
                    assert_eq!(got, value(i, j) * 2.0 + 1.0);
                }
            }
            Job::Standardize => assert_close_slices("shared standardize", &file.unwrap(), &z_ref),
        }
    }
    assert_eq!(runs, ENGINES * ROUNDS);
    assert_eq!(budget.reserved(), 0, "{}", budget.usage());
    let usage = budget.usage();
    assert!(usage.peak <= limit, "{usage}");
}

/// Truncates a file to its header (`data_offset` bytes): reading any data
/// from it now fails.
fn truncate_data(path: &Path) {
    let offset = ArrayFile::open(path).unwrap().meta().data_offset;
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(offset)
        .unwrap();
}

/// An engine reading with `pread`, so that reading a truncated file is an
/// I/O error (a mapped window would raise SIGBUS instead).
fn pread_engine(limit: u64) -> Engine {
    pread_engine_on(limit, 2)
}

fn pread_engine_on(limit: u64, threads: usize) -> Engine {
    Engine::builder()
        .memory_limit(limit)
        .threads(threads)
        .read_mode(ReadMode::Pread)
        .fsync(false)
        .build()
        .unwrap()
}

/// Asserts `result` is a `LimitTooSmall` refusal naming the smallest limit,
/// and returns that limit.
fn refused<T: std::fmt::Debug>(what: &str, result: outcore::Result<T>) -> u64 {
    let err = result.expect_err(what);
    let message = err.to_string();
    assert!(
        matches!(err, Error::LimitTooSmall { .. }),
        "{what}: expected a refusal, got: {message}"
    );
    assert!(message.contains("smallest limit"), "{what}: {message}");
    let minimum = minimum_of(err);
    assert!(message.contains(&minimum.to_string()), "{what}: {message}");
    minimum
}

/// Only the input file (and nothing else, temporary or not) is in `dir`.
fn assert_only_input(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["x.npy".to_string()], "files left behind");
}

/// (c) One row of 1,000,000 float64 (8 MB) cannot fit in 1 MiB: the
/// engine refuses before reading (the data was truncated away after the
/// header was read; a read would be an I/O error, not a refusal), the
/// error names the smallest limit, and that limit works.
#[test]
fn a_limit_below_one_row_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let cols = 1_000_000u64;
    write_input(&path, 1, cols);
    let one_row = |x: &Expr| vec![x.sum(None), x.mean(0), x.max(1)];
    let reference: Vec<ArrayD<f64>> = {
        let e = engine(256 * MIB);
        let x = e.open(&path).unwrap();
        e.compute(one_row(&x))
            .unwrap()
            .iter()
            .map(|v| v.to_f64())
            .collect()
    };
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("x.npy");
    std::fs::copy(&path, &victim).unwrap();

    // Statistics: refused without touching the (now missing) data.
    let e = pread_engine(MIB);
    let x = e.open(&victim).unwrap();
    truncate_data(&victim);
    let minimum = refused("stats at 1 MiB", e.compute(one_row(&x)));
    assert!(
        minimum > 8 * 1_000_000,
        "one row is 8 MB; minimum {minimum}"
    );
    assert_eq!(e.budget().reserved(), 0);
    let m2 = refused("explain at 1 MiB", e.explain(one_row(&x)));
    assert_eq!(m2, minimum, "explain and compute name the same minimum");

    // The minimum works.
    let e = pread_engine(minimum);
    let x = e.open(&path).unwrap();
    let (got, report) = e
        .compute_with_report(one_row(&x))
        .expect("the smallest limit named works");
    assert!(report.peak_reserved <= minimum);
    for (k, (a, b)) in got.iter().zip(&reference).enumerate() {
        assert_close(&format!("stat {k} at the minimum"), &a.to_f64(), b);
    }

    // A one-pass write: refused, and no output (nor temporary) left.
    std::fs::copy(&path, &victim).unwrap();
    let e = pread_engine(MIB);
    let x = e.open(&victim).unwrap();
    truncate_data(&victim);
    let out = victim_dir.path().join("y.npy");
    let minimum = refused("write at 1 MiB", e.write_npy(&(&x * 2.0), &out));
    assert_only_input(victim_dir.path());
    let e = pread_engine(minimum);
    let x = e.open(&path).unwrap();
    let out = dir.path().join("y.npy");
    e.write_npy(&(&x * 2.0), &out)
        .expect("the smallest limit named works for a write");
    let (_, y) = read_all(&out);
    assert!(
        y.iter()
            .enumerate()
            .all(|(j, &v)| v == value(0, j as u64) * 2.0)
    );
}

/// (c, two passes) standardize is a statistics pass, then a write pass
/// whose fused program keeps one register per instruction and thread —
/// here each a whole 8 MB row, so on eight threads the write pass needs
/// more than the statistics pass. The refusal at 1 MiB must name a limit
/// that runs *every* pass; and a limit that fits only the first pass must
/// be refused before that pass reads the input, not after.
#[test]
fn a_two_pass_refusal_names_a_limit_that_runs_every_pass() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_input(&path, 1, 1_000_000);

    let e = pread_engine_on(MIB, THREADS);
    let x = e.open(&path).unwrap();
    let out = dir.path().join("z.npy");
    let minimum = refused("standardize at 1 MiB", e.write_npy(&standardized(&x), &out));
    assert_only_input(dir.path());

    // Does every pass fit at the limit named? explain sizes them all.
    let e = pread_engine_on(minimum, THREADS);
    let x = e.open(&path).unwrap();
    if let Err(err) = e.explain(vec![standardized(&x)]) {
        let needed = minimum_of(err);
        // A pass does not fit: the run must be refused before reading.
        // With the data truncated away, a refusal is fine; an I/O error
        // means the first pass read the input before the second was found
        // not to fit.
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("x.npy");
        std::fs::copy(&path, &victim).unwrap();
        let e = pread_engine_on(minimum, THREADS);
        let x = e.open(&victim).unwrap();
        truncate_data(&victim);
        let early = match e.write_npy(&standardized(&x), victim_dir.path().join("z.npy")) {
            Ok(_) => "succeeded on a truncated input?".to_string(),
            Err(Error::LimitTooSmall { .. }) => "was refused before reading".to_string(),
            Err(other) => format!("read the input in pass 1 and failed on it ({other})"),
        };
        panic!(
            "the refusal at 1 MiB named {minimum} B as the smallest limit that works, but a \
             later pass needs {needed} B: passes are sized one at a time, just before each \
             runs. At {minimum} B the run {early}."
        );
    }
    let e = pread_engine_on(minimum, THREADS);
    let x = e.open(&path).unwrap();
    e.write_npy(&standardized(&x), &out)
        .expect("standardize runs at the smallest limit its refusal named");
}
