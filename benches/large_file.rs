//! The large-file benchmark: the tasks of `shared/measurements.md` (colsum,
//! colstats, standardize, cast) plus median (axis 0), sort, gram (`x.T @ x`) and cov, on a
//! page-cache-resident float64 `.npy` (default 4 GiB, 2,097,152 × 256),
//! each compared with this machine's own limits measured in the same run.
//!
//! ```sh
//! cargo bench --bench large_file                          # 4 GiB
//! cargo bench --bench large_file -- --size 1GiB --memory-limit 128MiB --threads 2
//! OUTCORE_BENCH_SIZE=512MiB cargo bench --bench large_file -- --dir /data/bench
//! ```
//!
//! The input is kept in `--dir` (default: `outcore-bench` under the system
//! temporary directory) and reused by later runs of the same size; outputs
//! are removed. Each task runs `--runs` times (default 3; median and sort,
//! which take tens of seconds, once unless `--runs` is given); the table
//! gives the median. `--tasks colsum,sort` runs only those.
//!
//! - read limit: a plain parallel sum over a memory map of the input.
//! - write limit: a plain parallel `pwrite` of zeroes of the output's size
//!   into a fresh file (page cache, no fsync), then the file is deleted.
//! - peak RSS: the engine's `RunReport::peak_rss`, with the process's
//!   high-water mark reset (`/proc/self/clear_refs`) before each run.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memmap2::MmapOptions;
use outcore::chunker::synth::{Distribution, Generator, write_array};
use outcore::{ArrayFile, DType, Engine, OutputSpec, RunReport, format_bytes, parse_size};

type BoxError = Box<dyn std::error::Error>;

/// Columns of the input, as in `shared/measurements.md`.
const COLS: u64 = 256;
/// Runs per task by default; the median is reported.
const RUNS: usize = 3;
/// The tasks, in the order they run.
const TASKS: [&str; 8] = [
    "colsum",
    "colstats",
    "standardize",
    "cast",
    "median",
    "sort",
    "gram",
    "cov",
];

struct Args {
    size: u64,
    dir: PathBuf,
    memory_limit: u64,
    threads: usize,
    /// Runs per task (`None`: [`RUNS`], one for median and sort).
    runs: Option<usize>,
    tasks: Vec<String>,
}

impl Args {
    fn runs(&self, task: &str) -> usize {
        self.runs.unwrap_or(if matches!(task, "median" | "sort") {
            1
        } else {
            RUNS
        })
    }

    fn wants(&self, task: &str) -> bool {
        self.tasks.iter().any(|t| t == task)
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn parse_args() -> Result<Args, BoxError> {
    let mut size = std::env::var("OUTCORE_BENCH_SIZE").unwrap_or_else(|_| "4GiB".into());
    let mut dir = std::env::temp_dir().join("outcore-bench");
    let mut memory_limit = "256MiB".to_string();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = None;
    let mut tasks: Vec<String> = TASKS.iter().map(|t| t.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--size" => size = value()?,
            "--dir" => dir = PathBuf::from(value()?),
            "--memory-limit" => memory_limit = value()?,
            "--threads" => threads = value()?.parse()?,
            "--runs" => runs = Some(value()?.parse::<usize>()?.max(1)),
            "--tasks" => {
                tasks = value()?.split(',').map(str::to_string).collect();
                if let Some(t) = tasks.iter().find(|t| !TASKS.contains(&t.as_str())) {
                    return Err(format!("unknown task {t} (tasks: {})", TASKS.join(",")).into());
                }
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(Args {
        size: parse_size(&size)?,
        dir,
        memory_limit: parse_size(&memory_limit)?,
        threads: threads.max(1),
        runs,
        tasks,
    })
}

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    let rows = (args.size / (COLS * 8)).max(1);
    let nbytes = rows * COLS * 8;
    std::fs::create_dir_all(&args.dir)?;
    let input = args.dir.join(format!("x-f64-{rows}x{COLS}.npy"));
    prepare_input(&input, rows, args.threads)?;

    // The read limit; it also brings the whole input into the page cache
    // (the first, unmeasured run).
    let read_secs = median_secs(|| {
        let t = Instant::now();
        std::hint::black_box(mmap_sum(&input, args.threads)?);
        Ok(t.elapsed())
    })?;
    let read_gbs = gbs(nbytes, read_secs);

    let engine = Engine::builder()
        .memory_limit(args.memory_limit)
        .threads(args.threads)
        .fsync(false)
        .overwrite(true)
        .build()?;
    let x = engine.open(&input)?;

    let fsync_engine = Engine::builder()
        .memory_limit(args.memory_limit)
        .threads(args.threads)
        .overwrite(true)
        .build()?;
    let out_path = args.dir.join("large-file-out.npy");
    let z = (&x - &x.mean(0)) / &x.std(0, 0);
    let cast = x.cast(DType::F32);
    let sorted = x.sort();
    // (task, figures, bytes written) in the order they ran.
    let mut done: Vec<(&str, Measured, Option<u64>)> = Vec::new();
    for &task in &TASKS {
        if !args.wants(task) {
            continue;
        }
        let runs = args.runs(task);
        let write = |e: &Engine, what: &outcore::Expr| -> Result<RunReport, BoxError> {
            Ok(e.write_npy(what, &out_path)?)
        };
        let (name, m, out): (&str, Measured, Option<u64>) = match task {
            "colsum" => (
                task,
                measure(runs, || Ok(engine.compute_with_report(x.sum(0))?.1))?,
                None,
            ),
            "colstats" => (
                task,
                measure(runs, || {
                    Ok(engine.compute_with_report((x.mean(0), x.std(0, 0)))?.1)
                })?,
                None,
            ),
            "median" => (
                task,
                measure(runs, || Ok(engine.compute_with_report(x.median(0))?.1))?,
                None,
            ),
            // x.T @ x and np.cov(x, rowvar=False): the c × c matrix on faer.
            "gram" => (
                task,
                measure(runs, || Ok(engine.compute_with_report(x.gram())?.1))?,
                None,
            ),
            "cov" => (
                task,
                measure(runs, || Ok(engine.compute_with_report(x.cov(1))?.1))?,
                None,
            ),
            "standardize" | "cast" | "sort" => {
                let what = match task {
                    "standardize" => &z,
                    "cast" => &cast,
                    _ => &sorted,
                };
                let m = measure(runs, || write(&engine, what))?;
                let bytes = std::fs::metadata(&out_path)?.len();
                std::fs::remove_file(&out_path)?;
                if task != "sort" {
                    // The fsync'd default, once, beside the page-cache figure.
                    let f = measure(1, || write(&fsync_engine, what))?;
                    std::fs::remove_file(&out_path)?;
                    done.push((task, m, Some(bytes)));
                    (
                        if task == "cast" {
                            "cast, fsync'd"
                        } else {
                            "standardize, fsync'd"
                        },
                        f,
                        Some(bytes),
                    )
                } else {
                    (task, m, Some(bytes))
                }
            }
            _ => unreachable!("tasks are checked when parsed"),
        };
        done.push((name, m, out));
    }

    println!(
        "\ninput: {} float64 ({rows} × {COLS}) at {} (kept for reuse)",
        format_bytes(nbytes),
        input.display()
    );
    println!(
        "threads: {}, memory limit: {}, median of the runs shown, input in the page cache\n",
        args.threads,
        format_bytes(args.memory_limit)
    );
    println!(
        "| task | runs | median s | GB/s of input | × read limit | peak RSS | peak reserved | memory limit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!("| read limit (mmap sum) | {RUNS} | {read_secs:.3} | {read_gbs:.2} | 1.00 | | | |");
    for (name, m, _) in &done {
        let g = gbs(nbytes, m.secs);
        println!(
            "| {name} | {} | {:.3} | {g:.2} | {:.2} | {} | {} | {} |",
            m.runs,
            m.secs,
            g / read_gbs,
            m.peak_rss.map_or("n/a".into(), format_bytes),
            format_bytes(m.peak_reserved),
            format_bytes(args.memory_limit),
        );
    }

    for (name, m, _) in &done {
        if matches!(*name, "gram" | "cov") {
            // As a full product: 2·n·c² flops (one triangle is computed).
            let flops = 2.0 * rows as f64 * (COLS * COLS) as f64;
            println!(
                "{name}: {:.1} GFLOP/s counted as a full 2·n·c² product",
                flops / m.secs / 1e9
            );
        }
    }

    // The write targets: a plain write of each output's bytes, same run.
    let scratch = args.dir.join("write-limit.tmp");
    let mut header = false;
    for (name, m, bytes) in &done {
        let Some(bytes) = *bytes else { continue };
        if !header {
            println!(
                "\nwrite targets: task ÷ (one read pass + a plain pwrite of the output's bytes to the page cache, same run)"
            );
            header = true;
        }
        let w = median_secs(|| plain_write(&scratch, bytes, args.threads))?;
        println!(
            "  {name}: writes {} — plain write {w:.3} s ({:.2} GB/s); task {:.3} s = {:.2}× (read + write = {:.3} s)",
            format_bytes(bytes),
            gbs(bytes, w),
            m.secs,
            m.secs / (read_secs + w),
            read_secs + w,
        );
    }
    Ok(())
}

/// Creates the input unless a file of the right dtype and shape is there.
fn prepare_input(path: &Path, rows: u64, threads: usize) -> Result<(), BoxError> {
    if let Ok(f) = ArrayFile::open(path) {
        let m = f.meta();
        if m.dtype == DType::F64 && m.shape == [rows, COLS] {
            println!("reusing {}", path.display());
            return Ok(());
        }
    }
    println!(
        "generating {} of float64 ({rows} × {COLS}) at {}",
        format_bytes(rows * COLS * 8),
        path.display()
    );
    let t = Instant::now();
    write_array(
        path,
        OutputSpec::npy(DType::F64, vec![rows, COLS])
            .fsync(false)
            .overwrite(true),
        &Generator::new(Distribution::Normal, 1),
        8 << 20,
        threads,
        &|_| {},
    )?;
    println!("  {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// One task's figures over its runs.
struct Measured {
    /// Median wall time.
    secs: f64,
    /// Largest `peak_rss` of the runs.
    peak_rss: Option<u64>,
    /// Largest `peak_reserved` of the runs.
    peak_reserved: u64,
    /// Runs made.
    runs: usize,
}

/// Runs `task` `runs` times, resetting the process's peak RSS first.
fn measure(
    runs: usize,
    mut task: impl FnMut() -> Result<RunReport, BoxError>,
) -> Result<Measured, BoxError> {
    let mut times = Vec::with_capacity(runs);
    let mut peak_rss = None;
    let mut peak_reserved = 0;
    for _ in 0..runs {
        reset_peak_rss();
        let t = Instant::now();
        let report = task()?;
        times.push(t.elapsed());
        peak_rss = peak_rss.max(report.peak_rss);
        peak_reserved = peak_reserved.max(report.peak_reserved);
    }
    Ok(Measured {
        secs: median(times),
        peak_rss,
        peak_reserved,
        runs,
    })
}

/// One unmeasured run, then the median of [`RUNS`] runs; `f` returns the
/// time of the part it measures.
fn median_secs(mut f: impl FnMut() -> Result<Duration, BoxError>) -> Result<f64, BoxError> {
    f()?;
    let times = (0..RUNS).map(|_| f()).collect::<Result<Vec<_>, _>>()?;
    Ok(median(times))
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64()
}

fn gbs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux; a
/// no-op elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Sums the input's elements over a read-only memory map, `threads`
/// contiguous ranges in parallel: the machine's read limit. The map is
/// dropped on return, so its pages leave this process's RSS.
fn mmap_sum(path: &Path, threads: usize) -> Result<f64, BoxError> {
    let meta = ArrayFile::open(path)?.meta().clone();
    let file = File::open(path)?;
    // SAFETY: the input is this benchmark's own file, which nothing
    // truncates or writes while it is mapped (a truncation would raise
    // SIGBUS on access); the map is read-only and dropped before return.
    let map = unsafe {
        MmapOptions::new()
            .offset(meta.data_offset)
            .len(meta.nbytes() as usize)
            .map(&file)?
    };
    // The .npy data offset is a multiple of 64, so the view is 8-aligned.
    let values: &[f64] = bytemuck::try_cast_slice(&map).map_err(|e| format!("{e:?}"))?;
    let per_thread = values.len().div_ceil(threads).max(1);
    let total = std::thread::scope(|s| {
        let handles: Vec<_> = values
            .chunks(per_thread)
            .map(|part| s.spawn(|| sum_f64(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sum thread panicked"))
            .sum()
    });
    Ok(total)
}

/// A sum with eight independent accumulators, so the compiler can use
/// vector registers.
fn sum_f64(values: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// Writes `bytes` zero bytes into a fresh file at `path` with `pwrite`
/// from `threads` threads (contiguous ranges, 1 MiB writes), without
/// fsync, then deletes it. Returns the time of the create and the writes.
fn plain_write(path: &Path, bytes: u64, threads: usize) -> Result<Duration, BoxError> {
    const BUF: u64 = 1 << 20;
    let t = Instant::now();
    let file = File::create(path)?;
    let per_thread = bytes.div_ceil(threads as u64).div_ceil(BUF) * BUF;
    std::thread::scope(|s| -> std::io::Result<()> {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let file = &file;
                s.spawn(move || -> std::io::Result<()> {
                    let buf = vec![0u8; BUF as usize];
                    let end = ((t + 1) * per_thread).min(bytes);
                    let mut at = t * per_thread;
                    while at < end {
                        let n = (end - at).min(BUF) as usize;
                        file.write_all_at(&buf[..n], at)?;
                        at += n as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("write thread panicked")?;
        }
        Ok(())
    })?;
    drop(file);
    let elapsed = t.elapsed();
    std::fs::remove_file(path)?;
    Ok(elapsed)
}
