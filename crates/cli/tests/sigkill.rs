//! A process killed by `SIGKILL` while writing leaves nothing behind: the
//! output is an unnamed file (`O_TMPFILE`) until it is complete, and spill
//! files are unnamed too, so the kernel removes both with the process.
//!
//! No timing is assumed: each run is stopped (`SIGSTOP`) once it holds a
//! file open in the output directory and has written at least a MiB; while
//! it is stopped the test checks it really is mid-write (nothing named in
//! the directory yet), then kills it. A run that finished before it could
//! be stopped is retried.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, tempdir};

/// Rows of the generated input: 64 MiB of f64.
const ROWS: &str = "8388608";

/// Bytes the process has handed to `write`/`pwrite` so far (`wchar` in
/// `/proc/PID/io`); `None` once it is gone.
fn bytes_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The files process `pid` holds open in `dir` (an unnamed file shows as
/// `DIR/#INODE (deleted)`).
fn open_in(pid: u32, dir: &Path) -> Vec<PathBuf> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.parent() == Some(dir))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: kill only reads its integer arguments; `pid` is our child,
    // not yet waited for, so the id cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `outcore ARGS` in `cwd` until it writes the output `out`, kills it
/// there with `SIGKILL`, and checks that `out`'s directory (and
/// `also_empty`) are empty afterwards. Retries when a run completes too
/// fast to catch.
fn kill_while_writing(cwd: &Path, args: &[&str], out: &Path, also_empty: &[&Path]) {
    let out_dir = out.parent().unwrap();
    for attempt in 1..=5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outcore"))
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut caught = false;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let writing = !open_in(pid, out_dir).is_empty()
                && bytes_written(pid).is_some_and(|w| w >= 1 << 20);
            if writing {
                signal(pid, libc::SIGSTOP);
                // Stopped: look again, the run may have moved on meanwhile.
                let held = open_in(pid, out_dir);
                let unnamed = |h: &PathBuf| h.to_string_lossy().ends_with(" (deleted)");
                if !held.is_empty() && held.iter().all(unnamed) {
                    caught = true;
                    // Mid-write, and yet nothing in the directory has a name.
                    assert_eq!(names(out_dir), Vec::<String>::new(), "while writing");
                } else {
                    // Only the finished output, just linked, may be named.
                    let named: Vec<_> = held.iter().filter(|h| !unnamed(h)).collect();
                    assert!(
                        named.iter().all(|h| h.as_path() == out),
                        "named files held while writing: {named:?}"
                    );
                }
                signal(pid, libc::SIGKILL);
                break;
            }
            assert!(Instant::now() < deadline, "{args:?} never started writing");
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = child.wait().unwrap();
        if !caught {
            // Finished (or stopped as it finished) before it was caught:
            // clean up and try again.
            eprintln!("attempt {attempt}: {args:?} was not caught mid-write ({status})");
            for entry in std::fs::read_dir(out_dir).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
            continue;
        }
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        assert_eq!(names(out_dir), Vec::<String>::new(), "after SIGKILL");
        for dir in also_empty {
            assert_eq!(
                names(dir),
                Vec::<String>::new(),
                "{} after SIGKILL",
                dir.display()
            );
        }
        return;
    }
    panic!("{args:?} finished every time before it could be killed mid-write");
}

#[test]
fn a_killed_gen_leaves_no_file() {
    let dir = tempdir();
    let out = dir.path().canonicalize().unwrap().join("out");
    std::fs::create_dir(&out).unwrap();
    let args = ["gen", "out/x.npy", "--shape", ROWS, "--threads", "1"];
    kill_while_writing(dir.path(), &args, &out.join("x.npy"), &[]);
}

#[test]
fn a_killed_convert_or_sort_leaves_no_file() {
    let dir = tempdir();
    let root = dir.path().canonicalize().unwrap();
    let (out, spill) = (root.join("out"), root.join("spill"));
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&spill).unwrap();
    cli(&root, &["gen", "in.npy", "--shape", ROWS]).ok();

    let convert = [
        "convert",
        "in.npy",
        "out/y.npy",
        "--dtype",
        "f32",
        "--memory-limit",
        "2MiB",
        "--threads",
        "1",
    ];
    kill_while_writing(&root, &convert, &out.join("y.npy"), &[]);

    // Sort writes its output while its sorted runs sit in spill files.
    let sort = [
        "sort",
        "in.npy",
        "out/z.npy",
        "--memory-limit",
        "2MiB",
        "--threads",
        "1",
        "--spill-dir",
        "spill",
    ];
    kill_while_writing(&root, &sort, &out.join("z.npy"), &[&spill]);
    assert_eq!(names(&root), ["in.npy", "out", "spill"]);
}
