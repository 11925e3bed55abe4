//! Several computations in one process, sharing one [`MemoryBudget`] from
//! many threads, some of them failing:
//!
//! * threads run statistics, a two-pass standardize, an external sort and
//!   exact medians (the spill operators) side by side on engines sharing
//!   one budget — and, for half of them, one rayon pool;
//! * among them, computations whose user code panics: a `map_blocks`
//!   closure feeding a sum, a written output, a sort and a median, and a
//!   user [`Aggregate`] panicking in `update` (a worker) or in `merge`
//!   (the calling thread). Each returns [`Error::Panic`] — no panic
//!   escapes to the caller — and leaves no output behind;
//! * the others complete with the results of an in-memory reference;
//! * once at a roomy shared budget and once at the tiniest one: the
//!   largest of the smallest limits of every job, where the largest pass
//!   has one block in flight;
//! * a watchdog fails the test instead of hanging CI on a deadlock;
//! * afterwards the budget holds nothing, no output, temporary output or
//!   spill file is left, and a new computation on the same budget and the
//!   shared pool (and rayon's global pool) still work: nothing was
//!   poisoned.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{read_any, write_any};
use ndarray::{ArrayD, ArrayView2, IxDyn};
use outcore_exec::aggregate::Aggregate;
use outcore_exec::{AnyArray, Engine, Error, Expr};
use outcore_spill::MemoryBudget;
use rayon::ThreadPool;
use rayon::prelude::*;

const ROWS: usize = 3000;
const COLS: usize = 24;

/// A deterministic value for element `(i, j)`: multiples of 1/8 with many
/// duplicates, so sums are exact-ish, sorts have ties and medians are
/// exact.
fn value(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17 + (i * j) % 13) % 1000) as f64 / 8.0 - 60.0
}

/// What the engine must return, computed in memory.
struct Reference {
    sum: f64,
    mean0: Vec<f64>,
    std0: Vec<f64>,
    min0: Vec<f64>,
    max: f64,
    /// Each column sorted, row-major like the engine's output.
    sorted: Vec<f64>,
    median0: Vec<f64>,
    standardized: Vec<f64>,
}

fn reference() -> Reference {
    let col = |j: usize| (0..ROWS).map(|i| value(i, j)).collect::<Vec<f64>>();
    let mut mean0 = Vec::new();
    let mut std0 = Vec::new();
    let mut min0 = Vec::new();
    let mut median0 = Vec::new();
    let mut sorted = vec![0.0; ROWS * COLS];
    let mut max = f64::NEG_INFINITY;
    let mut sum = 0.0;
    for j in 0..COLS {
        let mut c = col(j);
        let s: f64 = c.iter().sum();
        sum += s;
        let m = s / ROWS as f64;
        let var = c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / ROWS as f64;
        mean0.push(m);
        std0.push(var.sqrt());
        c.sort_by(f64::total_cmp);
        min0.push(c[0]);
        max = max.max(c[ROWS - 1]);
        median0.push((c[ROWS / 2 - 1] + c[ROWS / 2]) / 2.0);
        for (i, v) in c.iter().enumerate() {
            sorted[i * COLS + j] = *v;
        }
    }
    let standardized = (0..ROWS * COLS)
        .map(|k| {
            let (i, j) = (k / COLS, k % COLS);
            (value(i, j) - mean0[j]) / std0[j]
        })
        .collect();
    Reference {
        sum,
        mean0,
        std0,
        min0,
        max,
        sorted,
        median0,
        standardized,
    }
}

fn write_input(path: &Path) {
    let data: Vec<f64> = (0..ROWS * COLS)
        .map(|k| value(k / COLS, k % COLS))
        .collect();
    let a = ArrayD::from_shape_vec(IxDyn(&[ROWS, COLS]), data).unwrap();
    write_any(path, &AnyArray::from(a));
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{what}[{k}]: engine {g}, reference {w}"
        );
    }
}

fn f64s(a: &AnyArray) -> Vec<f64> {
    a.to_f64().iter().copied().collect()
}

/// A user aggregate (a plain sum) that panics where told to.
struct Fragile {
    /// Panic in `update` for blocks starting at or after this row.
    update_from: Option<u64>,
    /// Panic in the second `merge`.
    merge: bool,
    merges: AtomicUsize,
}

impl Fragile {
    fn new(update_from: Option<u64>, merge: bool) -> Fragile {
        Fragile {
            update_from,
            merge,
            merges: AtomicUsize::new(0),
        }
    }
}

impl Aggregate<f64> for Fragile {
    type State = f64;
    type Output = f64;

    fn init(&self, _row_len: usize) -> f64 {
        0.0
    }

    fn update(&self, state: &mut f64, block: ArrayView2<'_, f64>, first_row: u64) {
        if self.update_from.is_some_and(|r| first_row >= r) {
            panic!("deliberate failure in Aggregate::update at row {first_row}");
        }
        *state += block.sum();
    }

    fn merge(&self, into: &mut f64, next: f64) {
        if self.merge && self.merges.fetch_add(1, Ordering::Relaxed) == 1 {
            panic!("deliberate failure in Aggregate::merge");
        }
        *into += next;
    }

    fn finish(&self, state: f64, _rows: u64, _row_len: usize) -> outcore_exec::Result<f64> {
        Ok(state)
    }
}

/// `x` through a `map_blocks` closure that panics on its third block.
fn fragile_map(x: &Expr) -> Expr {
    let calls = Arc::new(AtomicUsize::new(0));
    x.map_blocks::<f64, f64, _>(COLS, move |b| {
        if calls.fetch_add(1, Ordering::Relaxed) == 2 {
            panic!("deliberate failure in a map_blocks closure");
        }
        b.to_owned()
    })
}

/// `x` through a `map_blocks` closure that copies its block.
fn identity_map(x: &Expr) -> Expr {
    x.map_blocks::<f64, f64, _>(COLS, |b| b.to_owned())
}

/// Keeps the deliberate panics of this test off stderr (their messages
/// are checked through `Error::Panic`); every other panic is reported by
/// the default hook.
fn quiet_deliberate_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if !msg.contains("deliberate failure") {
            default(info);
        }
    }));
}

/// One computation of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Stats,
    Standardize,
    Sort,
    Median,
    PanicInSum,
    PanicInWrite,
    PanicInSort,
    PanicInMedian,
    PanicInUpdate,
    PanicInMerge,
}

const JOBS: [Job; 10] = [
    Job::Stats,
    Job::PanicInSum,
    Job::Sort,
    Job::PanicInUpdate,
    Job::Standardize,
    Job::PanicInSort,
    Job::Median,
    Job::PanicInWrite,
    Job::PanicInMedian,
    Job::PanicInMerge,
];

fn stats(x: &Expr) -> Vec<Expr> {
    vec![x.sum(None), x.mean(0), x.std(0, 0), x.min(0), x.max(None)]
}

fn standardized(x: &Expr) -> Expr {
    (x - &x.mean(0)) / &x.std(0, 0)
}

/// Runs `job` on `engine`; panics (failing the test) on a wrong result.
fn run_job(job: Job, engine: &Engine, input: &Path, out: &Path, r: &Reference) {
    let x = engine.open(input).expect("open");
    let expect_panic = |what: &str, result: outcore_exec::Result<()>| match result {
        Err(Error::Panic(msg)) => assert!(msg.contains("deliberate failure"), "{what}: {msg}"),
        other => panic!("{what}: expected Error::Panic, got {other:?}"),
    };
    match job {
        Job::Stats => {
            let got = engine.compute(stats(&x)).expect("stats");
            assert_close("sum", &f64s(&got[0]), &[r.sum]);
            assert_close("mean0", &f64s(&got[1]), &r.mean0);
            assert_close("std0", &f64s(&got[2]), &r.std0);
            assert_eq!(f64s(&got[3]), r.min0, "min0");
            assert_eq!(f64s(&got[4]), vec![r.max], "max");
        }
        Job::Standardize => {
            engine
                .write_npy(&standardized(&x), out)
                .expect("standardize");
            assert_close("standardized", &f64s(&read_any(out)), &r.standardized);
            std::fs::remove_file(out).unwrap();
        }
        Job::Sort => {
            engine.write_npy(&x.sort(), out).expect("sort");
            assert_eq!(f64s(&read_any(out)), r.sorted, "sorted columns");
            std::fs::remove_file(out).unwrap();
        }
        Job::Median => {
            let got = engine.compute(x.median(0)).expect("median");
            assert_eq!(f64s(&got), r.median0, "median0");
        }
        Job::PanicInSum => expect_panic(
            "map_blocks → sum",
            engine.compute(fragile_map(&x).sum(None)).map(drop),
        ),
        Job::PanicInWrite => {
            let result = engine.write_npy(&(fragile_map(&x) * 2.0), out);
            expect_panic("map_blocks → write", result.map(drop));
            assert!(!out.exists(), "{} left behind", out.display());
        }
        Job::PanicInSort => {
            let result = engine.write_npy(&fragile_map(&x).sort(), out);
            expect_panic("map_blocks → sort", result.map(drop));
            assert!(!out.exists(), "{} left behind", out.display());
        }
        Job::PanicInMedian => expect_panic(
            "map_blocks → median",
            engine.compute(fragile_map(&x).median(0)).map(drop),
        ),
        Job::PanicInUpdate => expect_panic(
            "Aggregate::update",
            engine
                .aggregate(&x, Fragile::new(Some(ROWS as u64 / 2), false))
                .map(drop),
        ),
        Job::PanicInMerge => expect_panic(
            "Aggregate::merge",
            engine.aggregate(&x, Fragile::new(None, true)).map(drop),
        ),
    }
}

/// Runs `f` on its own thread; fails if it takes longer than `limit` (a
/// deadlock fails the test instead of hanging it) and passes on a panic.
fn with_watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().expect("the watched thread panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(_) => unreachable!("the thread sends before it returns"),
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("not done after {limit:?}: computations sharing a budget deadlocked")
        }
    }
}

/// Where one phase's engines put things.
#[derive(Clone)]
struct Dirs {
    input: PathBuf,
    out: PathBuf,
    spill: PathBuf,
}

fn engine_on(budget: &MemoryBudget, pool: Option<&Arc<ThreadPool>>, dirs: &Dirs) -> Engine {
    let b = Engine::builder()
        .budget(budget.clone())
        .block_bytes(16 << 10)
        .spill_dir(&dirs.spill)
        .fsync(false);
    let b = match pool {
        Some(p) => b.thread_pool(p.clone()),
        None => b.threads(2),
    };
    b.build().expect("an engine")
}

/// `threads` threads, each with its own engine on `budget` (every other
/// one on the shared `pool`), run `rounds` jobs each, every job of the mix
/// at least once; the budget holds nothing afterwards.
fn run_phase(
    budget: &MemoryBudget,
    pool: &Arc<ThreadPool>,
    dirs: &Dirs,
    threads: usize,
    rounds: usize,
    reference: &Arc<Reference>,
) {
    assert!(threads * rounds >= JOBS.len(), "every job runs");
    let (budget, pool, dirs, reference) = (
        budget.clone(),
        pool.clone(),
        dirs.clone(),
        reference.clone(),
    );
    let watched_budget = budget.clone();
    let done = with_watchdog(Duration::from_secs(240), move || {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (budget, pool, dirs, reference) = (
                    budget.clone(),
                    pool.clone(),
                    dirs.clone(),
                    reference.clone(),
                );
                std::thread::spawn(move || {
                    let engine = engine_on(&budget, (t % 2 == 0).then_some(&pool), &dirs);
                    let mut ran = Vec::new();
                    for round in 0..rounds {
                        let job = JOBS[(t * rounds + round) % JOBS.len()];
                        let out = dirs.out.join(format!("out-{t}-{round}.npy"));
                        run_job(job, &engine, &dirs.input, &out, &reference);
                        ran.push(job);
                    }
                    ran
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(ran) => ran,
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect::<Vec<_>>()
    });
    let ran: Vec<Job> = done.into_iter().flatten().collect();
    for job in JOBS {
        assert!(ran.contains(&job), "{job:?} never ran");
    }
    assert_eq!(watched_budget.reserved(), 0, "{}", watched_budget.usage());
    let usage = watched_budget.usage();
    assert!(usage.peak <= watched_budget.limit(), "{usage}");
}

/// The smallest limit with which `run` is not refused: start at one byte
/// and raise it to the minimum each refusal names.
fn smallest_limit(
    dirs: &Dirs,
    pool: &Arc<ThreadPool>,
    run: impl Fn(&Engine) -> Option<Error>,
) -> u64 {
    let mut limit = 1;
    for _ in 0..8 {
        let budget = MemoryBudget::new(limit);
        match run(&engine_on(&budget, Some(pool), dirs)) {
            Some(Error::LimitTooSmall { minimum, .. }) => {
                assert!(minimum > limit, "minimum {minimum} at limit {limit}");
                limit = minimum;
            }
            Some(other) => panic!("unexpected error at limit {limit}: {other}"),
            None => return limit,
        }
    }
    panic!("no limit accepted");
}

#[test]
fn computations_sharing_a_budget_with_panics_among_them() {
    quiet_deliberate_panics();
    let dir = tempfile::tempdir().unwrap();
    let dirs = Dirs {
        input: dir.path().join("x.npy"),
        out: dir.path().join("out"),
        spill: dir.path().join("spill"),
    };
    std::fs::create_dir(&dirs.out).unwrap();
    std::fs::create_dir(&dirs.spill).unwrap();
    write_input(&dirs.input);
    let reference = Arc::new(reference());
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );

    // The tiniest budget: the largest of the smallest limits of the jobs.
    let x_of = |e: &Engine| e.open(&dirs.input).unwrap();
    let scratch = dir.path().join("probe.npy");
    let minima = [
        smallest_limit(&dirs, &pool, |e| e.explain(stats(&x_of(e))).err()),
        smallest_limit(&dirs, &pool, |e| {
            e.explain(vec![standardized(&x_of(e))]).err()
        }),
        smallest_limit(&dirs, &pool, |e| {
            let r = e.write_npy(&x_of(e).sort(), &scratch).err();
            let _ = std::fs::remove_file(&scratch);
            r
        }),
        smallest_limit(&dirs, &pool, |e| e.compute(x_of(e).median(0)).err()),
        smallest_limit(&dirs, &pool, |e| {
            e.explain(vec![fragile_map(&x_of(e)).sum(None)]).err()
        }),
        smallest_limit(&dirs, &pool, |e| {
            e.explain(vec![fragile_map(&x_of(e)) * 2.0]).err()
        }),
        smallest_limit(&dirs, &pool, |e| {
            let r = e.write_npy(&identity_map(&x_of(e)).sort(), &scratch).err();
            let _ = std::fs::remove_file(&scratch);
            r
        }),
        smallest_limit(&dirs, &pool, |e| {
            e.compute(identity_map(&x_of(e)).median(0)).err()
        }),
        smallest_limit(&dirs, &pool, |e| {
            e.aggregate(&x_of(e), Fragile::new(None, false)).err()
        }),
    ];
    let tiniest = *minima.iter().max().unwrap();
    // At that limit the pass that needs it runs one block at a time.
    {
        let budget = MemoryBudget::new(tiniest);
        let e = engine_on(&budget, Some(&pool), &dirs);
        let x = x_of(&e);
        let plans = [
            e.explain(stats(&x)).unwrap(),
            e.explain(vec![standardized(&x)]).unwrap(),
            e.explain(vec![fragile_map(&x).sum(None)]).unwrap(),
        ];
        assert!(
            plans
                .iter()
                .flat_map(|p| &p.passes)
                .any(|p| p.blocks_in_flight == 1 && p.peak_bytes <= tiniest),
            "no pass with one block in flight at {tiniest} B (minima {minima:?})"
        );
    }

    // Roomy enough for a few jobs at once: engines run side by side.
    let shared = MemoryBudget::new(3 * tiniest);
    run_phase(&shared, &pool, &dirs, 6, 3, &reference);
    // The tiniest: the engines take turns, pass by pass.
    let tiny = MemoryBudget::new(tiniest);
    run_phase(&tiny, &pool, &dirs, 4, 3, &reference);

    // Nothing left behind: no output, no temporary output, no spill file.
    let left = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(left(&dirs.out), Vec::<String>::new(), "outputs left behind");
    assert_eq!(left(&dirs.spill), Vec::<String>::new(), "spill files left");

    // Nothing poisoned: the same budgets and the shared pool still run
    // computations, and rayon's global pool still works.
    for budget in [&shared, &tiny] {
        let e = engine_on(budget, Some(&pool), &dirs);
        run_job(
            Job::Stats,
            &e,
            &dirs.input,
            &dirs.out.join("a.npy"),
            &reference,
        );
        run_job(
            Job::Sort,
            &e,
            &dirs.input,
            &dirs.out.join("b.npy"),
            &reference,
        );
        assert_eq!(budget.reserved(), 0);
    }
    let n: u64 = pool.install(|| (0..10_000u64).into_par_iter().sum());
    assert_eq!(n, 49_995_000);
    let (a, b) = rayon::join(|| 1 + 1, || (0..100u64).into_par_iter().sum::<u64>());
    assert_eq!((a, b), (2, 4950));
}
