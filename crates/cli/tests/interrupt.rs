//! Interrupted and disturbed runs, end to end: SIGINT and SIGTERM stop a
//! run cleanly (exit 130 or 143, one error line, no output, no spill
//! file), a second signal kills at once, and an input truncated while the
//! command reads it is an error naming the file, never a crash.
//!
//! No timing is assumed. Each run is stepped: let go for a moment, stopped
//! (`SIGSTOP`) and looked at, again and again, until it is seen working —
//! it has written part of its output or spill files (`wchar` in
//! `/proc/PID/io`), or mapped a window of its input (`/proc/PID/maps`).
//! What the test does to it (a signal, a truncation) happens while it is
//! stopped there, before it is continued. A run that completed before it
//! was caught fails the test: it would have proved nothing.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{cli, tempdir};

/// How long a run may take to reach the state a test waits for.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A child process that is killed (and reaped) if the test fails while
/// it is running or stopped.
struct Running {
    child: Child,
    what: String,
}

impl Running {
    fn spawn(cwd: &Path, args: &[&str], stdout: Stdio) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_outcore"))
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        Running {
            child,
            what: args.join(" "),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill only reads its integer arguments; `pid` is our
        // child, not yet reaped, so the id cannot have been reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Stops the process and waits until every thread is stopped; false
    /// if it has exited instead.
    fn stop(&mut self) -> bool {
        self.signal(libc::SIGSTOP);
        let deadline = Instant::now() + TIMEOUT;
        while !self.all_threads_stopped() {
            if self.exited().is_some() {
                return false;
            }
            assert!(Instant::now() < deadline, "{}: never stopped", self.what);
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    }

    /// Lets the process run in short slices, stopped after each one, until
    /// `ready` (called while it is stopped, with its pid) holds; returns
    /// with the process stopped. So the test sees the run at many points
    /// of its progress, however fast it goes and however loaded the
    /// machine is, and what it then does happens at a known point.
    ///
    /// # Panics
    ///
    /// When the run exits first: it was too short to be caught.
    fn step_until(&mut self, mut ready: impl FnMut(u32) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if !self.stop() {
                let status = self.child.wait().unwrap();
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
                }
                panic!(
                    "{} finished ({status}, {stderr:?}) before it was caught mid-run: make \
                     the input bigger",
                    self.what
                );
            }
            if ready(self.pid()) {
                return;
            }
            self.signal(libc::SIGCONT);
            assert!(Instant::now() < deadline, "{}: never got there", self.what);
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return false;
        };
        tasks.filter_map(Result::ok).all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // The state follows the parenthesised command name.
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
            })
        })
    }

    /// Waits for the exit; returns the status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
        }
        (status, stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A field of `/proc/PID/io` (`wchar`: bytes handed to write and pwrite).
fn io_field(pid: u32, field: &str) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// The mappings of `file` in the process: (file offset, length) of each.
fn mapped_windows(pid: u32, file: &Path) -> Vec<(u64, u64)> {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let name = file.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let offset = f.nth(1)?;
            let path = f.nth(2)?;
            if path != name {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let len = u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?;
            Some((u64::from_str_radix(offset, 16).ok()?, len))
        })
        .collect()
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A working directory holding `x.npy` (float64, `rows × 64`) and an
/// empty `spill/`; canonical, so `/proc` paths compare equal.
fn setup(rows: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("spill")).unwrap();
    let shape = format!("{rows},64");
    cli(&root, &["gen", "x.npy", "--shape", &shape, "--no-fsync"]).ok();
    (dir, root)
}

/// Runs `outcore ARGS` in `root`, stops it once it has written
/// `threshold` bytes, sends `sig` while it is stopped, continues it, and
/// returns its exit status and stderr.
fn interrupt_mid_write(
    root: &Path,
    args: &[&str],
    threshold: u64,
    sig: i32,
) -> (ExitStatus, String) {
    let mut run = Running::spawn(root, args, Stdio::piped());
    run.step_until(|pid| io_field(pid, "wchar").is_some_and(|w| w >= threshold));
    // Stopped and not exited: the run is demonstrably in the middle. The
    // signal is delivered as it continues.
    run.signal(sig);
    run.signal(libc::SIGCONT);
    run.finish()
}

/// Checks a clean stop by `sig`: its exit status, one error line, and
/// nothing left but the input and the (empty) spill directory.
fn assert_stopped_cleanly(root: &Path, status: ExitStatus, stderr: &str, sig: i32, name: &str) {
    assert_eq!(status.signal(), None, "{status}: {stderr}");
    assert_eq!(status.code(), Some(128 + sig), "{status}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    let prefix = format!("error: interrupted ({name}): ");
    assert!(stderr.starts_with(&prefix), "{stderr:?}");
    assert!(stderr.contains("cancelled after "), "{stderr:?}");
    assert_eq!(names(root), ["spill", "x.npy"]);
    assert_eq!(names(&root.join("spill")), Vec::<String>::new());
}

/// Rows of the interrupted inputs: 32 MiB of float64.
const ROWS: u64 = 1 << 16;
const BYTES: u64 = ROWS * 64 * 8;
const MIB: u64 = 1 << 20;

#[test]
fn sigint_stops_a_sort_cleanly() {
    let (_dir, root) = setup(ROWS);
    // Runs, merges and rows each write the data once: stopped a quarter
    // into the runs, most of the work is still ahead.
    let args = [
        "sort",
        "x.npy",
        "y.npy",
        "--memory-limit",
        "2MiB",
        "--threads",
        "2",
        "--spill-dir",
        "spill",
        "--no-fsync",
    ];
    let (status, stderr) = interrupt_mid_write(&root, &args, BYTES / 4, libc::SIGINT);
    assert_stopped_cleanly(&root, status, &stderr, libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_stops_standardize_and_cumsum_cleanly() {
    let (_dir, root) = setup(ROWS);
    // Standardize writes in its second pass; stopped a MiB into it.
    let args = [
        "standardize",
        "x.npy",
        "z.npy",
        "--memory-limit",
        "2MiB",
        "--threads",
        "1",
        "--no-fsync",
    ];
    let (status, stderr) = interrupt_mid_write(&root, &args, MIB, libc::SIGTERM);
    assert_stopped_cleanly(&root, status, &stderr, libc::SIGTERM, "SIGTERM");

    let args = [
        "cumsum",
        "x.npy",
        "c.npy",
        "--memory-limit",
        "2MiB",
        "--threads",
        "2",
        "--no-fsync",
    ];
    let (status, stderr) = interrupt_mid_write(&root, &args, MIB, libc::SIGINT);
    assert_stopped_cleanly(&root, status, &stderr, libc::SIGINT, "SIGINT");
}

#[test]
fn signals_stop_gen_cleanly() {
    let (_dir, root) = setup(1);
    std::fs::remove_file(root.join("x.npy")).unwrap();
    let shape = format!("{ROWS},64");
    let args = [
        "gen",
        "x.npy",
        "--shape",
        &shape,
        "--threads",
        "1",
        "--block-size",
        "1MiB",
        "--no-fsync",
    ];
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let (status, stderr) = interrupt_mid_write(&root, &args, MIB, sig);
        assert_eq!(status.code(), Some(128 + sig), "{status}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(
            stderr.starts_with(&format!("error: interrupted ({name}): ")),
            "{stderr:?}"
        );
        assert!(stderr.contains("x.npy: cancelled after "), "{stderr:?}");
        assert_eq!(names(&root), ["spill"]);
    }
}

#[test]
fn a_second_signal_kills_at_once() {
    let (_dir, root) = setup(1);
    // 2 × 20000: --axis 0 prints about 2 MB of JSON, more than a pipe
    // holds, into a pipe nobody reads: the run blocks in that write.
    cli(&root, &["gen", "w.npy", "--shape", "2,20000", "--no-fsync"]).ok();
    let mut run = Running::spawn(
        &root,
        &["stats", "w.npy", "--axis", "0", "--json"],
        Stdio::piped(),
    );
    let stdout = run.child.stdout.take().unwrap();
    let pending = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD stores the bytes waiting in the pipe into `n`,
        // an int that outlives the call; the descriptor is open (owned by
        // `stdout`).
        let rc = unsafe { libc::ioctl(stdout.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        n
    };
    let deadline = Instant::now() + TIMEOUT;
    while pending() == 0 {
        assert!(
            run.exited().is_none(),
            "stats exited without blocking on its output"
        );
        assert!(Instant::now() < deadline, "stats never wrote its output");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The first signal only asks the run to stop; it stays blocked.
    run.signal(libc::SIGINT);
    let sigint_pending = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().any(|l| {
            let mask = l
                .strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
            mask.is_some_and(|m| m & (1 << (libc::SIGINT - 1)) != 0)
        })
    };
    while sigint_pending(run.pid()) {
        assert!(Instant::now() < deadline, "SIGINT never delivered");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        run.exited().is_none(),
        "the first SIGINT killed the process"
    );
    // A later one runs the default action: death by SIGINT. (Sent until
    // it takes: one that lands while the first handler is still running
    // on another thread only asks again.)
    let status = loop {
        run.signal(libc::SIGINT);
        let until = Instant::now() + Duration::from_millis(100);
        let mut exited = None;
        while exited.is_none() && Instant::now() < until {
            exited = run.exited();
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(s) = exited {
            break s;
        }
        assert!(Instant::now() < deadline, "a second SIGINT did not kill");
    };
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    drop(stdout);
}

/// Runs `outcore ARGS` in `root`, stops it once it has mapped a window of
/// `input`, truncates the input while it is stopped — to half, or just
/// past the windows mapped if it is already further — continues it and
/// returns its exit status and stderr.
fn truncate_mid_read(root: &Path, args: &[&str], input: &Path) -> (ExitStatus, String) {
    let len = std::fs::metadata(input).unwrap().len();
    let mut cut = len / 2;
    let mut run = Running::spawn(root, args, Stdio::null());
    run.step_until(|pid| {
        let windows = mapped_windows(pid, input);
        let Some(end) = windows.iter().map(|(o, l)| o + l).max() else {
            return false;
        };
        // Blocks past the cut are still to be read (the last sixteenth
        // is more than two blocks at these sizes).
        assert!(
            end < len - len / 16,
            "{args:?} was at the end of its input ({end} of {len} bytes) when it was \
             caught: make the input bigger or the blocks smaller"
        );
        cut = cut.max(end);
        true
    });
    // Stopped while reading before `cut`: what lies past it is lost.
    std::fs::OpenOptions::new()
        .write(true)
        .open(input)
        .unwrap()
        .set_len(cut)
        .unwrap();
    run.signal(libc::SIGCONT);
    run.finish()
}

fn assert_truncation_error(status: ExitStatus, stderr: &str) {
    // Never a signal death (SIGBUS), never a panic (101).
    assert_eq!(status.signal(), None, "{status}: {stderr}");
    assert_eq!(status.code(), Some(1), "{status}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("x.npy: file truncated while being read"),
        "{stderr:?}"
    );
}

#[test]
fn an_input_truncated_mid_run_is_an_error_naming_it() {
    // 128 MiB, read in blocks of about half a MiB by one thread: long
    // enough to be caught mid-read on a loaded machine too.
    let (_dir, root) = setup(4 * ROWS);
    let input = root.join("x.npy");
    let args = [
        "stats",
        "x.npy",
        "--axis",
        "0",
        "--threads",
        "1",
        "--memory-limit",
        "2MiB",
    ];
    let (status, stderr) = truncate_mid_read(&root, &args, &input);
    assert_truncation_error(status, &stderr);

    // A write: the output is abandoned.
    cli(
        &root,
        &[
            "gen",
            "x.npy",
            "--shape",
            "262144,64",
            "--no-fsync",
            "--force",
        ],
    )
    .ok();
    let args = [
        "convert",
        "x.npy",
        "y.npy",
        "--dtype",
        "f32",
        "--threads",
        "1",
        "--memory-limit",
        "2MiB",
        "--no-fsync",
    ];
    let (status, stderr) = truncate_mid_read(&root, &args, &input);
    assert_truncation_error(status, &stderr);
    assert_eq!(names(&root), ["spill", "x.npy"]);
}
