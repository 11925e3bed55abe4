//! The memory promise, measured from outside the process: for every engine
//! command of the `outcore` binary, the process's peak resident set stays
//! under `--memory-limit` plus [`OVERHEAD`], on an input 16–32 times the
//! limit, for reads and writes alike.
//!
//! Each command runs as its own process on one generated 512 MiB float64
//! array (262144 × 256, made once per test binary with `outcore gen`).
//! Its peak resident set is taken twice:
//!
//! * `peak_rss_bytes` in the command's `--json` report: the child's own
//!   `VmHWM`, read when the engine's run ends (so it misses whatever the
//!   command does after the run, such as building its JSON output);
//! * `ru_maxrss` of that child alone, from `wait4` after it exited:
//!   everything, to the last byte of output. (`wait4` rather than
//!   `getrusage(RUSAGE_CHILDREN)`, which is the largest of *all* children
//!   ever waited for — `gen`, and the children of tests running in
//!   parallel.) On Linux, `exec` folds the high-water mark of the address
//!   space it replaces into the new program's `ru_maxrss`, and a child
//!   spawned with `vfork` (as `std` does) replaces its parent's: measured
//!   straight from this process, every command would inherit this
//!   process's own peak, which one panicking test raises to ~60 MiB
//!   (symbolising the backtrace). So each command is started by a small
//!   intermediary — this test binary re-executed to run only the
//!   `spawner` "test" — which reaps it and reports its `ru_maxrss`; the
//!   floor this leaves is the intermediary's own ~3 MiB.
//!
//! Both must be at most the limit + [`OVERHEAD`]. The same harness runs
//! library pipelines in a fresh process (this test binary, re-executed
//! with one test selected), where results are returned in memory.
//!
//! **Finding the binary.** The root package's tests cannot use
//! `CARGO_BIN_EXE_outcore` (the binary belongs to `outcore-cli`), so the
//! test runs `cargo build -p outcore-cli --bin outcore` with the profile
//! and target directory of its own executable (`target/<profile>/deps/..`),
//! which is a no-op after `cargo test --workspace` and builds the binary
//! after a plain `cargo test`. If that build fails (no `cargo` on `PATH`,
//! a custom layout), an existing `target/<profile>/outcore` is used with a
//! warning; `OUTCORE_BIN=/path/to/outcore` overrides all of this.
//!
//! Run with `--nocapture` to see the measured numbers (`docs/memory.md`
//! records them). Linux only: the numbers are Linux's (`VmHWM`, and
//! `ru_maxrss` in KiB).

#![cfg(target_os = "linux")]

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use ndarray::Array2;
use outcore::{AnyArray, ArrayWriter, DType, Engine, OutputSpec};
use serde::Deserialize;

const MIB: u64 = 1 << 20;

/// What the process may hold beyond the memory limit: the binary and its
/// libraries, thread stacks, allocator slack, buffers outside the engine.
/// The binary's baseline (`outcore info` on a tiny file) is about 4 MiB;
/// see `baseline_rss_of_the_binary` and `docs/memory.md`.
const OVERHEAD: u64 = 16 * MIB;

/// The generated input: 262144 rows of 256 float64, 512 MiB of data.
const ROWS: u64 = 262_144;
const COLS: u64 = 256;
const DATA_BYTES: u64 = ROWS * COLS * 8;

// ---- the binary ---------------------------------------------------------

/// The `outcore` binary (see the module documentation for how it is found).
fn outcore_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("OUTCORE_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/memory_promise-HASH
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let bin = profile_dir.join(format!("outcore{}", std::env::consts::EXE_SUFFIX));
        let target_dir = profile_dir.parent().expect("target/<profile>");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "outcore-cli", "--bin", "outcore"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        match build.status() {
            Ok(s) if s.success() => {}
            outcome => {
                assert!(
                    bin.exists(),
                    "building outcore-cli failed ({outcome:?}) and {} does not exist; \
                     build it or set OUTCORE_BIN",
                    bin.display()
                );
                eprintln!(
                    "warning: building outcore-cli failed ({outcome:?}); using the existing {}",
                    bin.display()
                );
            }
        }
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

// ---- running a child and measuring it -----------------------------------

/// How one child process ended, and its peak resident set.
struct Exit {
    code: Option<i32>,
    stdout: File,
    stderr: String,
    /// The child's own `ru_maxrss`, in bytes.
    maxrss: u64,
    /// This process's own peak resident set after the child ended.
    parent_hwm: u64,
}

/// Environment of the measuring intermediary (see [`spawner`]).
const SPAWN_PROGRAM: &str = "OUTCORE_MEMORY_SPAWN_PROGRAM";
const SPAWN_ARGS: &str = "OUTCORE_MEMORY_SPAWN_ARGS";
const SPAWN_STDOUT: &str = "OUTCORE_MEMORY_SPAWN_STDOUT";
const SPAWN_STDERR: &str = "OUTCORE_MEMORY_SPAWN_STDERR";
/// Separates the arguments in `SPAWN_ARGS` (the ASCII unit separator).
const ARG_SEP: char = '\u{1f}';
/// Marks the line the intermediary reports on.
const SPAWN_MARK: &str = "OUTCORE-MEMORY-SPAWNED";

/// Runs `cmd` with stdout and stderr going to temporary files and returns
/// its own peak resident set.
///
/// On Linux, `exec` folds the high-water mark of the address space it
/// replaces into the new program's `ru_maxrss`; a child spawned with
/// `vfork` (as `std` does) replaces *this* process's address space, so its
/// `ru_maxrss` would be at least this process's peak — which a panicking
/// test raises by tens of MiB (symbolising the backtrace). So `cmd` is
/// started by a fresh, small intermediary (this test binary running only
/// [`spawner`]), which reaps it with `wait4` and reports its `ru_maxrss`:
/// at least the intermediary's own few MiB, nothing of this process.
fn spawn_measured(cmd: Command) -> Exit {
    let stdout = tempfile::NamedTempFile::new().expect("a temporary file");
    let stderr = tempfile::NamedTempFile::new().expect("a temporary file");
    let args: Vec<&str> = cmd
        .get_args()
        .map(|a| a.to_str().expect("UTF-8 arguments"))
        .collect();
    assert!(args.iter().all(|a| !a.contains(ARG_SEP)));
    let mut spawner = Command::new(std::env::current_exe().unwrap());
    spawner
        .args(["spawner", "--exact", "--nocapture", "--test-threads", "1"])
        .env(SPAWN_PROGRAM, cmd.get_program())
        .env(SPAWN_ARGS, args.join(&ARG_SEP.to_string()))
        .env(SPAWN_STDOUT, stdout.path())
        .env(SPAWN_STDERR, stderr.path())
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => spawner.env(key, v),
            None => spawner.env_remove(key),
        };
    }
    let out = spawner.output().expect("the measuring intermediary starts");
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<i64> = text
        .lines()
        .find_map(|l| l.split_once(SPAWN_MARK).map(|(_, n)| n.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "the measuring intermediary reported nothing: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let mut err = String::new();
    stderr.reopen().unwrap().read_to_string(&mut err).unwrap();
    Exit {
        code: (nums[0] >= 0).then(|| i32::try_from(nums[0]).unwrap()),
        stdout: stdout.reopen().unwrap(),
        stderr: err,
        maxrss: u64::try_from(nums[1]).expect("a size"),
        parent_hwm: own_peak_rss(),
    }
}

/// Not a test: the measuring intermediary of [`spawn_measured`]. Without
/// its environment (a normal test run) it does nothing. With it, it runs
/// the program named there, reaps it with `wait4`, and prints its exit
/// code (-1 when killed by a signal) and `ru_maxrss` in bytes.
#[test]
fn spawner() {
    let Some(program) = std::env::var_os(SPAWN_PROGRAM) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set"));
    let args = var(SPAWN_ARGS);
    let mut cmd = Command::new(program);
    if !args.is_empty() {
        cmd.args(args.split(ARG_SEP));
    }
    for k in [SPAWN_PROGRAM, SPAWN_ARGS, SPAWN_STDOUT, SPAWN_STDERR] {
        cmd.env_remove(k);
    }
    cmd.stdin(Stdio::null())
        .stdout(File::create(var(SPAWN_STDOUT)).unwrap())
        .stderr(File::create(var(SPAWN_STDERR)).unwrap());
    let child = cmd.spawn().expect("the measured program starts");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers and `timeval`s, for
    // which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (`std` reaps only
        // in `wait`/`try_wait`, never called here, and not on drop);
        // `status` and `usage` are valid for writes for the whole call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
    drop(child);
    let code = if libc::WIFEXITED(status) {
        i64::from(libc::WEXITSTATUS(status))
    } else {
        -1
    };
    // Linux reports ru_maxrss in KiB.
    let maxrss = u64::try_from(usage.ru_maxrss).expect("a size") * 1024;
    println!("{SPAWN_MARK} {code} {maxrss}");
}

fn own_peak_rss() -> u64 {
    outcore::process_memory().map_or(0, |m| m.peak_rss)
}

/// The keys of an engine command's `--json` report that these tests read;
/// the others (the results, which may be large) are skipped while parsing.
#[derive(Debug, Deserialize)]
struct Report {
    passes: u64,
    blocks: u64,
    bytes_read: u64,
    bytes_written: u64,
    bytes_spilled: u64,
    peak_reserved_bytes: u64,
    peak_rss_bytes: Option<u64>,
    memory_limit_bytes: u64,
    threads: u64,
}

/// One engine command's run.
struct Measured {
    label: String,
    limit: u64,
    report: Report,
    maxrss: u64,
    parent_hwm: u64,
    stdout: File,
}

/// Runs `outcore ARGS... --memory-limit LIMIT --json` and parses its report.
fn run_engine(label: &str, args: &[&str], limit: u64) -> Measured {
    let mut cmd = Command::new(outcore_bin());
    cmd.args(args)
        .arg("--memory-limit")
        .arg(limit.to_string())
        .arg("--json");
    let exit = spawn_measured(cmd);
    assert_eq!(
        exit.code,
        Some(0),
        "{label}: outcore {args:?} failed: {}",
        exit.stderr
    );
    assert_eq!(exit.stderr, "", "{label}: nothing on stderr");
    let report: Report = serde_json::from_reader(BufReader::new(exit.stdout.try_clone().unwrap()))
        .unwrap_or_else(|e| panic!("{label}: the report is not JSON: {e}"));
    let m = Measured {
        label: label.to_string(),
        limit,
        report,
        maxrss: exit.maxrss,
        parent_hwm: exit.parent_hwm,
        stdout: exit.stdout,
    };
    record(&m);
    m
}

/// Prints one measurement (visible with `--nocapture`).
fn record(m: &Measured) {
    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "memory: {:<28} limit {:>5.1} MiB | peak reserved {:>6.2} MiB | VmHWM (json) {:>6.2} MiB | \
         ru_maxrss {:>6.2} MiB | {} blocks, {} threads | test process {:.1} MiB",
        m.label,
        mib(m.limit),
        mib(m.report.peak_reserved_bytes),
        mib(m.report.peak_rss_bytes.unwrap_or(0)),
        mib(m.maxrss),
        m.report.blocks,
        m.report.threads,
        mib(m.parent_hwm),
    );
}

/// The promise, for one run: the accounting stays under the limit, and so
/// does the whole process's peak resident set, give or take [`OVERHEAD`].
fn assert_promise(m: &Measured, passes: u64) {
    let r = &m.report;
    let label = &m.label;
    assert_eq!(r.passes, passes, "{label}");
    // The whole input was streamed, once per pass.
    assert_eq!(r.bytes_read, passes * DATA_BYTES, "{label}");
    assert_memory(m);
}

/// The memory half of the promise: reservations within the limit, the
/// process's peak resident set within the limit plus [`OVERHEAD`].
fn assert_memory(m: &Measured) {
    let r = &m.report;
    let label = &m.label;
    assert_eq!(r.memory_limit_bytes, m.limit, "{label}");
    assert!(
        r.peak_reserved_bytes <= m.limit,
        "{label}: the engine reserved {} bytes under a limit of {}",
        r.peak_reserved_bytes,
        m.limit
    );
    let bound = m.limit + OVERHEAD;
    if let Some(hwm) = r.peak_rss_bytes {
        assert!(
            hwm <= bound,
            "{label}: VmHWM at the end of the run is {hwm} bytes ({:.1} MiB), over the \
             limit {} + overhead {} = {bound}; peak reserved {}",
            hwm as f64 / MIB as f64,
            m.limit,
            OVERHEAD,
            r.peak_reserved_bytes
        );
    }
    assert!(
        m.maxrss <= bound,
        "{label}: the process's peak RSS (ru_maxrss from wait4) is {} bytes ({:.1} MiB), over \
         the limit {} + overhead {} = {bound} ({:.1} MiB over the limit); VmHWM when the \
         engine's run ended was {:?}, peak reserved {}",
        m.maxrss,
        m.maxrss as f64 / MIB as f64,
        m.limit,
        OVERHEAD,
        (m.maxrss as f64 - m.limit as f64) / MIB as f64,
        r.peak_rss_bytes,
        r.peak_reserved_bytes,
    );
}

// ---- the input ----------------------------------------------------------

/// The generated input, made once per test binary.
struct Fixture {
    dir: PathBuf,
    x: PathBuf,
    /// `outcore gen`'s own peak and its report.
    gen_maxrss: u64,
    gen_threads: u64,
    gen_block_bytes: u64,
}

/// The directory removed when the test binary exits (statics are never
/// dropped, so a `TempDir` in one would leave 512 MiB behind).
static FIXTURE_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn remove_fixture_dir() {
    if let Ok(mut dir) = FIXTURE_DIR.lock()
        && let Some(dir) = dir.take()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("outcore-memory-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temporary directory")
            .keep();
        *FIXTURE_DIR.lock().unwrap() = Some(dir.clone());
        // SAFETY: `remove_fixture_dir` is an `extern "C" fn()` that does not
        // unwind (it ignores every error) and touches only a static.
        let registered = unsafe { libc::atexit(remove_fixture_dir) };
        assert_eq!(registered, 0, "atexit");

        let x = dir.join("x.npy");
        let mut cmd = Command::new(outcore_bin());
        cmd.arg("gen")
            .arg(&x)
            .args(["--shape", &format!("{ROWS},{COLS}"), "--dtype", "f64"])
            .args(["--seed", "7", "--dist", "normal", "--no-fsync", "--json"]);
        let exit = spawn_measured(cmd);
        assert_eq!(exit.code, Some(0), "outcore gen failed: {}", exit.stderr);

        #[derive(Deserialize)]
        struct Gen {
            threads: u64,
            block_bytes: u64,
            nbytes: u64,
        }
        let g: Gen = serde_json::from_reader(BufReader::new(exit.stdout)).unwrap();
        assert_eq!(g.nbytes, DATA_BYTES);
        eprintln!(
            "memory: gen 512 MiB ({} threads x {} MiB blocks): ru_maxrss {:.2} MiB",
            g.threads,
            g.block_bytes / MIB,
            exit.maxrss as f64 / MIB as f64
        );
        Fixture {
            dir,
            x,
            gen_maxrss: exit.maxrss,
            gen_threads: g.threads,
            gen_block_bytes: g.block_bytes,
        }
    })
}

/// A temporary directory for one test's outputs, removed when dropped.
fn outputs() -> tempfile::TempDir {
    tempfile::tempdir_in(&fixture().dir).expect("a temporary directory")
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// A big-endian copy of the input, written by `outcore convert` (a write
/// with a byte swap); reading it goes through `pread` and a byte swap
/// instead of mapped windows.
struct BigEndian {
    path: PathBuf,
    convert: Measured,
}

fn big_endian() -> &'static BigEndian {
    static BE: OnceLock<BigEndian> = OnceLock::new();
    BE.get_or_init(|| {
        let f = fixture();
        let path = f.dir.join("x-big-endian.npy");
        let convert = run_engine(
            "convert f64 -> >f8",
            &[
                "convert",
                arg(&f.x),
                arg(&path),
                "--dtype",
                ">f8",
                "--no-fsync",
            ],
            32 * MIB,
        );
        BigEndian { path, convert }
    })
}

// ---- the binary's baseline ---------------------------------------------

/// The resident set of the binary doing nothing much: `info` reads a
/// header; `stats` on a 4×2 array starts the engine (thread pool, reader
/// thread) and streams one block. Both must be well inside [`OVERHEAD`].
#[test]
fn baseline_rss_of_the_binary() {
    let dir = outputs();
    let tiny = dir.path().join("tiny.npy");
    let w = ArrayWriter::create(&tiny, OutputSpec::npy(DType::F64, vec![4, 2])).unwrap();
    w.write_block(
        0,
        ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]].view(),
    )
    .unwrap();
    w.finish().unwrap();

    let mut cmd = Command::new(outcore_bin());
    cmd.args(["info", arg(&tiny), "--json"]);
    let info = spawn_measured(cmd);
    assert_eq!(info.code, Some(0), "{}", info.stderr);
    let mut cmd = Command::new(outcore_bin());
    cmd.args(["stats", arg(&tiny), "--memory-limit", "16MiB", "--json"]);
    let stats = spawn_measured(cmd);
    assert_eq!(stats.code, Some(0), "{}", stats.stderr);
    eprintln!(
        "memory: baseline: info {:.2} MiB, stats on 4x2 {:.2} MiB (ru_maxrss)",
        info.maxrss as f64 / MIB as f64,
        stats.maxrss as f64 / MIB as f64
    );
    assert!(info.maxrss <= OVERHEAD / 2, "info: {} bytes", info.maxrss);
    assert!(
        stats.maxrss <= OVERHEAD / 2,
        "stats: {} bytes",
        stats.maxrss
    );
}

/// `gen` has no memory limit: it holds about one block per thread. Its
/// peak is bounded by threads × block size + [`OVERHEAD`].
#[test]
fn gen_holds_one_block_per_thread() {
    let f = fixture();
    let bound = f.gen_threads * f.gen_block_bytes + OVERHEAD;
    assert!(
        f.gen_maxrss <= bound,
        "gen: peak RSS {} bytes over {} threads x {} bytes + overhead",
        f.gen_maxrss,
        f.gen_threads,
        f.gen_block_bytes
    );
}

// ---- engine commands at 32 MiB ------------------------------------------

#[test]
fn stats_all_at_32mib() {
    let f = fixture();
    let m = run_engine(
        "stats --axis all",
        &["stats", arg(&f.x), "--axis", "all"],
        32 * MIB,
    );
    assert_promise(&m, 1);
    // The numbers are those of 2^26 standard normal draws.
    #[derive(Deserialize)]
    struct Results {
        results: std::collections::BTreeMap<String, f64>,
    }
    let mut out = m.stdout;
    out.seek(SeekFrom::Start(0)).unwrap();
    let r: Results = serde_json::from_reader(BufReader::new(out)).unwrap();
    assert!(r.results["mean"].abs() < 1e-3, "{:?}", r.results);
    assert!((r.results["std"] - 1.0).abs() < 1e-3, "{:?}", r.results);
}

#[test]
fn stats_axis0_at_32mib() {
    let f = fixture();
    let m = run_engine(
        "stats --axis 0",
        &["stats", arg(&f.x), "--axis", "0"],
        32 * MIB,
    );
    assert_promise(&m, 1);
}

/// One value per row and op: 262144 × 5 results (10 MiB) held in memory,
/// counted while the pass runs (per-row states), then printed as JSON.
#[test]
fn stats_axis1_at_32mib() {
    let f = fixture();
    let m = run_engine(
        "stats --axis 1",
        &["stats", arg(&f.x), "--axis", "1"],
        32 * MIB,
    );
    assert_promise(&m, 1);
    // The output holds every value: 5 ops × 262144 rows. (The report was
    // parsed through a clone sharing the file offset: start over.)
    let mut stdout = m.stdout;
    std::io::Seek::rewind(&mut stdout).unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().unwrap().unwrap();
    assert!(
        line.len() > 5 * ROWS as usize,
        "{} bytes of JSON",
        line.len()
    );
}

#[test]
fn convert_to_f32_at_32mib() {
    let f = fixture();
    let out = outputs();
    let y = out.path().join("y.npy");
    let m = run_engine(
        "convert --dtype f32",
        &[
            "convert",
            arg(&f.x),
            arg(&y),
            "--dtype",
            "f32",
            "--no-fsync",
        ],
        32 * MIB,
    );
    assert_promise(&m, 1);
    assert_eq!(m.report.bytes_written, DATA_BYTES / 2);
    assert_eq!(std::fs::metadata(&y).unwrap().len(), 128 + DATA_BYTES / 2);
}

#[test]
fn standardize_at_32mib() {
    let f = fixture();
    let out = outputs();
    let z = out.path().join("z.npy");
    let m = run_engine(
        "standardize",
        &["standardize", arg(&f.x), arg(&z), "--no-fsync"],
        32 * MIB,
    );
    assert_promise(&m, 2);
    assert_eq!(m.report.bytes_written, DATA_BYTES);
}

#[test]
fn cov_corrcoef_and_gram_at_32mib() {
    // The 256 × 256 matrix (512 KiB per state, plus a 1 MiB row buffer)
    // for every block in flight and the merged one, inside the limit.
    let f = fixture();
    for (label, args) in [
        ("cov", vec!["cov", arg(&f.x)]),
        ("cov --corr", vec!["cov", arg(&f.x), "--corr"]),
        ("gram", vec!["gram", arg(&f.x)]),
    ] {
        let m = run_engine(label, &args, 32 * MIB);
        assert_promise(&m, 1);
    }
}

// ---- engine commands at 16 MiB, the smallest limit promised --------------

#[test]
fn stats_axis0_at_16mib() {
    let f = fixture();
    let m = run_engine(
        "stats --axis 0",
        &["stats", arg(&f.x), "--axis", "0"],
        16 * MIB,
    );
    assert_promise(&m, 1);
}

/// Eight workers on two cores under the smallest limit: scratch per thread
/// crowds the budget, and thread stacks are outside it.
#[test]
fn stats_axis0_on_8_threads_at_16mib() {
    let f = fixture();
    let m = run_engine(
        "stats --axis 0 --threads 8",
        &["stats", arg(&f.x), "--axis", "0", "--threads", "8"],
        16 * MIB,
    );
    assert_eq!(m.report.threads, 8);
    assert_promise(&m, 1);
}

#[test]
fn standardize_at_16mib() {
    let f = fixture();
    let out = outputs();
    let z = out.path().join("z.npy");
    let m = run_engine(
        "standardize",
        &["standardize", arg(&f.x), arg(&z), "--no-fsync"],
        16 * MIB,
    );
    assert_promise(&m, 2);
}

// ---- big-endian: byte-swapped writes, pread reads ------------------------

#[test]
fn convert_to_big_endian_at_32mib() {
    let be = big_endian();
    assert_promise(&be.convert, 1);
    assert_eq!(
        std::fs::metadata(&be.path).unwrap().len(),
        std::fs::metadata(&fixture().x).unwrap().len()
    );
}

#[test]
fn stats_axis0_of_big_endian_at_32mib() {
    let be = big_endian();
    let m = run_engine(
        "stats --axis 0 (>f8, pread)",
        &["stats", arg(&be.path), "--axis", "0"],
        32 * MIB,
    );
    assert_promise(&m, 1);
}

#[test]
fn standardize_big_endian_at_16mib() {
    let be = big_endian();
    let out = outputs();
    let z = out.path().join("z.npy");
    let m = run_engine(
        "standardize (>f8, pread)",
        &["standardize", arg(&be.path), arg(&z), "--no-fsync"],
        16 * MIB,
    );
    assert_promise(&m, 2);
}

// ---- library pipelines, each in a fresh process -------------------------

/// Marks the line a re-executed child prints its numbers on.
const CHILD_MARK: &str = "OUTCORE-MEMORY-CHILD";
/// Names the test a re-executed child is to run for real.
const CHILD_ENV: &str = "OUTCORE_MEMORY_CHILD";

/// What a library scenario reports from its own process.
struct ChildNumbers {
    limit: u64,
    peak_reserved: u64,
}

/// Runs `scenario` in a fresh process (this test binary, re-executed with
/// only `test` selected), so that its peak resident set is its own, and
/// checks the promise from outside.
fn in_fresh_process(test: &str, scenario: fn() -> ChildNumbers) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        let n = scenario();
        let hwm = own_peak_rss();
        println!("{CHILD_MARK} {} {} {hwm}", n.limit, n.peak_reserved);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, test);
    let exit = spawn_measured(cmd);
    assert_eq!(exit.code, Some(0), "{test} (child): {}", exit.stderr);
    let line = BufReader::new(exit.stdout)
        .lines()
        .map(Result::unwrap)
        .find_map(|l| l.split_once(CHILD_MARK).map(|(_, nums)| nums.to_string()))
        .unwrap_or_else(|| panic!("{test}: the child printed no numbers: {}", exit.stderr));
    let nums: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (limit, peak_reserved, hwm) = (nums[0], nums[1], nums[2]);
    let m = Measured {
        label: test.to_string(),
        limit,
        report: Report {
            passes: 1,
            blocks: 0,
            bytes_read: 0,
            bytes_written: 0,
            bytes_spilled: 0,
            peak_reserved_bytes: peak_reserved,
            peak_rss_bytes: Some(hwm),
            memory_limit_bytes: limit,
            threads: 2,
        },
        maxrss: exit.maxrss,
        parent_hwm: exit.parent_hwm,
        stdout: tempfile::tempfile().unwrap(),
    };
    record(&m);
    let bound = limit + OVERHEAD;
    assert!(peak_reserved <= limit, "{test}: reserved {peak_reserved}");
    assert!(
        hwm <= bound && m.maxrss <= bound,
        "{test}: peak RSS {:.1} MiB (VmHWM) / {:.1} MiB (ru_maxrss) over the limit {:.1} MiB + \
         overhead {:.1} MiB; peak reserved {:.1} MiB",
        hwm as f64 / MIB as f64,
        m.maxrss as f64 / MIB as f64,
        limit as f64 / MIB as f64,
        OVERHEAD as f64 / MIB as f64,
        peak_reserved as f64 / MIB as f64,
    );
}

/// `compute` of a streamed expression returns it in memory when it fits
/// the budget: a 32 MiB result under a 48 MiB limit. The result is
/// reserved once (as "collected" bytes), so it must be held once.
#[test]
fn collected_result_is_held_once() {
    in_fresh_process("collected_result_is_held_once", || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let (rows, cols) = (65_536u64, 64u64);
        let w = ArrayWriter::create(&path, OutputSpec::npy(DType::F64, vec![rows, cols])).unwrap();
        for r0 in (0..rows).step_by(1024) {
            let block = Array2::from_shape_fn((1024, cols as usize), |(i, j)| {
                (r0 as usize + i) as f64 + j as f64 / 64.0
            });
            w.write_block(r0, block.view()).unwrap();
        }
        w.finish().unwrap();

        let limit = 48 * MIB;
        let engine = Engine::builder()
            .memory_limit(limit)
            .threads(2)
            .build()
            .unwrap();
        let x = engine.open(&path).unwrap();
        let (y, report) = engine.compute_with_report(&(&x * 2.0)).unwrap();
        let AnyArray::F64(y) = &y else {
            panic!("a float64 result")
        };
        assert_eq!(y.shape(), [rows as usize, cols as usize]);
        assert_eq!(y[[1000, 32]], 2.0 * (1000.0 + 0.5));
        ChildNumbers {
            limit,
            peak_reserved: report.peak_reserved,
        }
    });
}

// ---- spill: external sort and exact quantiles ------------------------

/// Files left in a spill directory (there must be none: spill files are
/// unnamed).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Per column: the wrapping sum of the values' bits (the same for any
/// order of the same values) and whether the column is non-decreasing.
fn column_digest(path: &Path) -> (Vec<u64>, Vec<bool>) {
    let file = outcore::ArrayFile::open(path).unwrap();
    let cols = file.meta().row_len();
    let mut sums = vec![0u64; cols];
    let mut sorted = vec![true; cols];
    let mut last = vec![f64::NEG_INFINITY; cols];
    for rows in file.plan(8 * MIB).iter() {
        let block = file.read_rows(rows).unwrap();
        for row in block.view::<f64>().unwrap().rows() {
            for (j, &v) in row.iter().enumerate() {
                sums[j] = sums[j].wrapping_add(v.to_bits());
                sorted[j] &= v >= last[j];
                last[j] = v;
            }
        }
        block.check().unwrap();
    }
    (sums, sorted)
}

/// `np.sort(x, axis=0)` of 512 MiB at a 32 MiB limit: sorted runs, a
/// merge level and the rows written back, all under the limit; the spill
/// directory is empty afterwards.
#[test]
fn sort_at_32mib() {
    let f = fixture();
    let out = outputs();
    let spill = tempfile::tempdir_in(out.path()).unwrap();
    let y = out.path().join("sorted.npy");
    let m = run_engine(
        "sort",
        &[
            "sort",
            arg(&f.x),
            arg(&y),
            "--no-fsync",
            "--spill-dir",
            arg(spill.path()),
        ],
        32 * MIB,
    );
    assert_memory(&m);
    assert_eq!(m.report.bytes_read, DATA_BYTES);
    assert_eq!(m.report.bytes_written, DATA_BYTES);
    // Runs, then at least one merge level, each spilled once.
    assert!(
        m.report.bytes_spilled >= 2 * DATA_BYTES,
        "{}",
        m.report.bytes_spilled
    );
    assert!(m.report.passes >= 3, "{}", m.report.passes);
    assert_eq!(leftovers(spill.path()), Vec::<String>::new());
    let (want, _) = column_digest(&f.x);
    let (got, sorted) = column_digest(&y);
    assert_eq!(got, want, "the sorted columns hold the input's values");
    assert!(sorted.iter().all(|&s| s), "every column is sorted");
}

/// Exact median and quantiles along axis 0 and over all 2^26 values of
/// 512 MiB at a 32 MiB limit, by radix selection: a few read passes, no
/// spill files left.
#[test]
fn quantiles_at_32mib() {
    let f = fixture();
    let out = outputs();
    let spill = tempfile::tempdir_in(out.path()).unwrap();
    #[derive(Deserialize)]
    struct Results<T> {
        results: std::collections::BTreeMap<String, T>,
    }
    for (axis, label) in [
        ("0", "stats median,quantile --axis 0"),
        ("all", "stats median,quantile --axis all"),
    ] {
        let m = run_engine(
            label,
            &[
                "stats",
                arg(&f.x),
                "--axis",
                axis,
                "--ops",
                "median,quantile:0.9,quantile:0.999",
                "--spill-dir",
                arg(spill.path()),
            ],
            32 * MIB,
        );
        assert_memory(&m);
        // Whole read passes only: no spill for selection.
        assert_eq!(m.report.bytes_read, m.report.passes * DATA_BYTES, "{label}");
        assert_eq!(leftovers(spill.path()), Vec::<String>::new());
        let mut stdout = m.stdout;
        std::io::Seek::rewind(&mut stdout).unwrap();
        // Standard normal draws: the quantiles of N(0, 1), within sampling
        // error (262144 values per column, 2^26 over all).
        let want = [
            ("median", 0.0, 0.01),
            ("quantile:0.9", 1.2816, 0.02),
            ("quantile:0.999", 3.0902, 0.12),
        ];
        if axis == "0" {
            let r: Results<Vec<f64>> = serde_json::from_reader(BufReader::new(stdout)).unwrap();
            for (key, q, tol) in want {
                assert_eq!(r.results[key].len(), COLS as usize);
                for v in &r.results[key] {
                    assert!((v - q).abs() < tol, "{key}: {v}");
                }
            }
        } else {
            let r: Results<f64> = serde_json::from_reader(BufReader::new(stdout)).unwrap();
            for (key, q, tol) in want {
                assert!(
                    (r.results[key] - q).abs() < tol / 10.0,
                    "{key}: {}",
                    r.results[key]
                );
            }
        }
    }
}

// ---- rows of millions of values -----------------------------------------

/// 8 rows of 3,000,000 float32 (96 MB): one row is 12 MB, and the
/// per-column states of statistics along axis 0 (a mean and a standard
/// deviation per column: tens of bytes each) are hundreds of MB, far past a
/// 32 MiB limit.
const LONG_ROWS: u64 = 8;
const LONG_COLS: u64 = 3_000_000;

/// Rows in the millions at 32 MiB:
///
/// * statistics along axis 0 cannot hold their per-column states: the
///   library refuses before reading with `Error::LimitTooSmall`, naming the
///   bytes of one row and the smallest limit that works, and so does the
///   CLI (exit code 1, the same message) — with its peak RSS within the
///   limit plus [`OVERHEAD`] while it refuses;
/// * along axis 1 (8 values per op) and over all elements the states are
///   small: the runs complete within the promise, with the library's
///   results.
#[test]
fn rows_of_millions_at_32mib() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let x = dir.path().join("long.npy");
    let mut cmd = Command::new(outcore_bin());
    cmd.arg("gen")
        .arg(&x)
        .args([
            "--shape",
            &format!("{LONG_ROWS},{LONG_COLS}"),
            "--dtype",
            "f32",
        ])
        .args(["--seed", "11", "--no-fsync"]);
    let exit = spawn_measured(cmd);
    assert_eq!(exit.code, Some(0), "outcore gen failed: {}", exit.stderr);
    let limit = 32 * MIB;
    let row_bytes = LONG_COLS * 4;

    // The library: refused before reading, with the numbers.
    let engine = Engine::builder()
        .memory_limit(limit)
        .threads(2)
        .build()
        .unwrap();
    let xe = engine.open(&x).unwrap();
    let axis0 = || vec![xe.mean(0), xe.std(0, 0)];
    let err = engine
        .compute(axis0())
        .expect_err("axis-0 states cannot fit");
    let message = err.to_string();
    let minimum = match err {
        outcore::Error::LimitTooSmall {
            limit: l,
            row_bytes: r,
            minimum,
            ..
        } => {
            assert_eq!(l, limit);
            assert!(r >= row_bytes, "one row is {row_bytes} bytes: {message}");
            minimum
        }
        other => panic!("expected LimitTooSmall, got {other}"),
    };
    // Two per-column states of at least 16 bytes, for the merged result
    // and for a block in flight.
    assert!(minimum > 2 * 16 * LONG_COLS, "{message}");
    assert!(message.contains(&minimum.to_string()), "{message}");
    assert!(message.contains("smallest limit that works"), "{message}");
    match engine.explain(axis0()) {
        Err(outcore::Error::LimitTooSmall { minimum: m, .. }) => assert_eq!(m, minimum),
        other => panic!("explain: expected LimitTooSmall, got {other:?}"),
    }
    assert_eq!(engine.budget().reserved(), 0);

    // The CLI: exit code 1, the message, and the peak RSS of the refusal.
    let mut cmd = Command::new(outcore_bin());
    cmd.args(["stats", arg(&x), "--axis", "0", "--ops", "mean,std"])
        .args(["--memory-limit", &limit.to_string(), "--threads", "2"]);
    let refused = spawn_measured(cmd);
    eprintln!(
        "memory: stats --axis 0 of {LONG_ROWS}x{LONG_COLS} f32 refused at 32 MiB: ru_maxrss {:.2} MiB",
        refused.maxrss as f64 / MIB as f64
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("too small") && refused.stderr.contains(&minimum.to_string()),
        "{}",
        refused.stderr
    );
    assert!(
        refused.maxrss <= limit + OVERHEAD,
        "the refusal's peak RSS is {} bytes, over the limit {limit} + overhead {OVERHEAD}",
        refused.maxrss
    );

    // Along axis 1 and over everything: within the promise, with the
    // library's results.
    #[derive(Deserialize)]
    struct Results<T> {
        results: std::collections::BTreeMap<String, T>,
    }
    let (mean1, std1, mean, max) = engine
        .compute((xe.mean(1), xe.std(1, 0), xe.mean(None), xe.max(None)))
        .unwrap();
    for (axis, label) in [
        ("1", "stats --axis 1 of long rows"),
        ("all", "stats --axis all of long rows"),
    ] {
        let m = run_engine(
            label,
            &[
                "stats",
                arg(&x),
                "--axis",
                axis,
                "--ops",
                "mean,std,max",
                "--threads",
                "2",
            ],
            limit,
        );
        assert_memory(&m);
        assert_eq!(m.report.passes, 1, "{label}");
        assert_eq!(m.report.bytes_read, LONG_ROWS * row_bytes, "{label}");
        let mut stdout = m.stdout;
        std::io::Seek::rewind(&mut stdout).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        if axis == "1" {
            let r: Results<Vec<f64>> = serde_json::from_reader(BufReader::new(stdout)).unwrap();
            for (key, want) in [("mean", &mean1), ("std", &std1)] {
                let want = want.to_f64().into_raw_vec_and_offset().0;
                assert_eq!(r.results[key].len(), LONG_ROWS as usize, "{key}");
                for (g, w) in r.results[key].iter().zip(&want) {
                    assert!(close(*g, *w), "{label}: {key}: {g} vs {w}");
                }
            }
        } else {
            let r: Results<f64> = serde_json::from_reader(BufReader::new(stdout)).unwrap();
            let mean = mean.as_f64_scalar().unwrap();
            assert!(close(r.results["mean"], mean), "{label}: {:?}", r.results);
            assert_eq!(r.results["max"], max.as_f64_scalar().unwrap(), "{label}");
        }
    }

    // Medians and quantiles along axis 0: radix selection's per-column
    // state is far past the limit, and the external sort's rank values
    // and results (13 B per column for a median, 25 B with a quantile)
    // too: refused before reading, naming the smallest limit; at that
    // limit the run completes (by the external sort, a stripe of short
    // columns per mapped window) within the promise, with NumPy's values.
    let spill = tempfile::tempdir_in(dir.path()).unwrap();
    let quantiles = |xe: &outcore::Expr| vec![xe.median(0), xe.quantile(0.25, 0)];
    let q_minimum = refused_before_reading(
        "stats median,quantile --axis 0 of long rows",
        engine.compute(quantiles(&xe)).unwrap_err(),
        engine.explain(quantiles(&xe)).err(),
        limit,
        row_bytes,
        &engine,
        &[
            "stats",
            arg(&x),
            "--axis",
            "0",
            "--ops",
            "median,quantile:0.25",
            "--threads",
            "2",
            "--spill-dir",
            arg(spill.path()),
        ],
    );
    // Rank values and results of 3,000,000 columns, beyond the limit.
    assert!(q_minimum > 25 * LONG_COLS, "{q_minimum}");
    let m = run_engine(
        "stats median,quantile --axis 0 of long rows at the named minimum",
        &[
            "stats",
            arg(&x),
            "--axis",
            "0",
            "--ops",
            "median,quantile:0.25",
            "--threads",
            "2",
            "--spill-dir",
            arg(spill.path()),
        ],
        q_minimum,
    );
    assert_memory(&m);
    assert_eq!(leftovers(spill.path()), Vec::<String>::new());
    let file = outcore::ArrayFile::open(&x).unwrap();
    let input = file.read_rows(0..LONG_ROWS).unwrap();
    let input = input.view::<f32>().unwrap();
    let mut stdout = m.stdout;
    std::io::Seek::rewind(&mut stdout).unwrap();
    let r: Results<Vec<f64>> = serde_json::from_reader(BufReader::new(stdout)).unwrap();
    let (median, quarter) = (&r.results["median"], &r.results["quantile:0.25"]);
    assert_eq!(
        (median.len(), quarter.len()),
        (LONG_COLS as usize, LONG_COLS as usize)
    );
    for (j, col) in input.columns().into_iter().enumerate() {
        let mut v: Vec<f32> = col.to_vec();
        v.sort_unstable_by(f32::total_cmp);
        // NumPy: the mean of the middle values in float32; the quantile's
        // virtual index 7 * 0.25 = 1.75 interpolated from above in float32.
        let want_median = (0.0f32 + v[3] + v[4]) / 2.0;
        let want_quarter = v[2] - (v[2] - v[1]) * 0.25f32;
        // JSON's float32 values come back as float64 within an ulp of
        // float64 (serde_json's parser): compared as float32, bit for bit.
        assert_eq!(
            (median[j] as f32).to_bits(),
            want_median.to_bits(),
            "median of column {j}: {} vs {want_median}",
            median[j]
        );
        assert_eq!(
            (quarter[j] as f32).to_bits(),
            want_quarter.to_bits(),
            "quantile of column {j}: {} vs {want_quarter}",
            quarter[j]
        );
    }

    // Sort along axis 0: a row read and one sorted do not fit 16 MiB —
    // refused before reading; at the named minimum it completes within
    // the promise, every column sorted.
    let small = 16 * MIB;
    let engine = Engine::builder()
        .memory_limit(small)
        .threads(2)
        .build()
        .unwrap();
    let xe = engine.open(&x).unwrap();
    let y = dir.path().join("sorted.npy");
    let s_minimum = refused_before_reading(
        "sort of long rows",
        engine.write_npy(&xe.sort(), &y).unwrap_err(),
        engine.explain(xe.sort()).err(),
        small,
        row_bytes,
        &engine,
        &[
            "sort",
            arg(&x),
            arg(&y),
            "--threads",
            "2",
            "--no-fsync",
            "--spill-dir",
            arg(spill.path()),
        ],
    );
    assert!(!y.exists());
    assert_eq!(s_minimum, 2 * row_bytes, "one row read and one sorted");
    let m = run_engine(
        "sort of long rows at the named minimum",
        &[
            "sort",
            arg(&x),
            arg(&y),
            "--threads",
            "2",
            "--no-fsync",
            "--spill-dir",
            arg(spill.path()),
        ],
        s_minimum,
    );
    assert_memory(&m);
    assert_eq!(m.report.bytes_written, LONG_ROWS * row_bytes);
    assert_eq!(leftovers(spill.path()), Vec::<String>::new());
    let sorted = outcore::ArrayFile::open(&y).unwrap();
    let sorted = sorted.read_rows(0..LONG_ROWS).unwrap();
    let sorted = sorted.view::<f32>().unwrap();
    for (j, (col, got)) in input
        .columns()
        .into_iter()
        .zip(sorted.columns())
        .enumerate()
    {
        let mut v: Vec<f32> = col.to_vec();
        v.sort_unstable_by(f32::total_cmp);
        let got: Vec<u32> = got.iter().map(|g| g.to_bits()).collect();
        let want: Vec<u32> = v.iter().map(|w| w.to_bits()).collect();
        assert_eq!(got, want, "column {j}");
    }
}

/// Checks a refusal of rows of millions of values: the library's error
/// `err` (and `explain`'s) is `LimitTooSmall` under `limit`, before
/// anything was read (nothing reserved), naming one row's bytes and a
/// smallest limit above `limit`; the CLI running `args` at `limit` exits
/// 1 with that limit in its message, within the memory promise. Returns
/// the smallest limit named.
fn refused_before_reading(
    label: &str,
    err: outcore::Error,
    explained: Option<outcore::Error>,
    limit: u64,
    row_bytes: u64,
    engine: &Engine,
    args: &[&str],
) -> u64 {
    let message = err.to_string();
    let minimum = match err {
        outcore::Error::LimitTooSmall {
            limit: l,
            row_bytes: r,
            minimum,
            ..
        } => {
            assert_eq!(l, limit, "{label}");
            assert!(
                r >= row_bytes,
                "{label}: one row is {row_bytes} bytes: {message}"
            );
            minimum
        }
        other => panic!("{label}: expected LimitTooSmall, got {other}"),
    };
    assert!(minimum > limit, "{label}: {message}");
    assert!(message.contains(&minimum.to_string()), "{label}: {message}");
    match explained {
        Some(outcore::Error::LimitTooSmall { minimum: m, .. }) => assert_eq!(m, minimum, "{label}"),
        other => panic!("{label}: explain: expected LimitTooSmall, got {other:?}"),
    }
    assert_eq!(engine.budget().reserved(), 0, "{label}");
    let mut cmd = Command::new(outcore_bin());
    cmd.args(args).args(["--memory-limit", &limit.to_string()]);
    let refused = spawn_measured(cmd);
    eprintln!(
        "memory: {label} refused at {:.1} MiB (smallest limit {minimum}): ru_maxrss {:.2} MiB",
        limit as f64 / MIB as f64,
        refused.maxrss as f64 / MIB as f64
    );
    assert_eq!(refused.code, Some(1), "{label}: {}", refused.stderr);
    assert!(
        refused.stderr.contains("too small") && refused.stderr.contains(&minimum.to_string()),
        "{label}: {}",
        refused.stderr
    );
    assert!(
        refused.maxrss <= limit + OVERHEAD,
        "{label}: the refusal's peak RSS is {} bytes, over the limit {limit} + overhead {OVERHEAD}",
        refused.maxrss
    );
    minimum
}
