//! No room on disk, for an output or for spill files: the command fails with
//! exit status 1 and one clear error line naming the path and the
//! operating system's reason (no panic), leaves nothing behind, and gives
//! the space back.
//!
//! "No room" is a small tmpfs mounted for the test (this needs root, or
//! `CAP_SYS_ADMIN`), where writes fail with `ENOSPC`; and a file-size limit
//! (`RLIMIT_FSIZE`, no privileges needed), where they fail with `EFBIG`.
//! Where tmpfs cannot be mounted the output case runs under the file-size
//! limit only and the spill case under `--spill-quota`, saying so on
//! stderr.

mod common;

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Run, cli, tempdir};

/// Size of the small filesystem.
const FS_BYTES: u64 = 8 << 20;
/// Rows of the inputs: 16 MiB of f64, twice the small filesystem.
const ROWS: &str = "2097152";

/// A tmpfs of [`FS_BYTES`] mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it, or says why it cannot be.
    fn mount() -> Result<Tmpfs, String> {
        let dir = tempdir();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={FS_BYTES}"), "tmpfs"])
            .arg(&mnt)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { mnt, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success())
        };
        // Lazily if something still holds it, so the temporary directory
        // can go.
        if !unmounted(&[]) && !unmounted(&["-l"]) {
            let _ = writeln!(std::io::stderr(), "cannot unmount {}", self.mnt.display());
        }
    }
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `statvfs` is plain data, for which all zeroes is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is writable for the call.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(
        rc,
        0,
        "statvfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    st.f_bavail * st.f_frsize
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `outcore ARGS` in `dir` with files limited to `limit` bytes
/// (`RLIMIT_FSIZE`) and `SIGXFSZ` ignored, so that writing past the limit
/// fails with `EFBIG` instead of killing the process.
fn cli_with_file_limit(dir: &Path, args: &[&str], limit: u64) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outcore"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec, and
    // calls only async-signal-safe functions (setrlimit, signal); it
    // allocates nothing. An ignored signal stays ignored across exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("the binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Checks a failed write of `out`: one error line naming it and `reason`,
/// exit status 1 (not a panic's 101), nothing left in its directory.
fn assert_no_space_for_output(run: &Run, out: &Path, reason: &str) {
    let line = run.error(1);
    assert!(
        line.starts_with(&format!(
            "error: {}: no space for the output (",
            out.display()
        )),
        "{line}"
    );
    assert!(line.contains(reason), "{line}");
    // The operating system's reason once, not repeated by an error chain.
    assert_eq!(line.matches(reason).count(), 1, "{line}");
    assert_eq!(names(out.parent().unwrap()), Vec::<String>::new());
}

/// The inputs, 16 MiB each, in a directory of their own.
fn inputs() -> tempfile::TempDir {
    let dir = tempdir();
    cli(dir.path(), &["gen", "in.npy", "--shape", ROWS]).ok();
    dir
}

#[test]
fn an_output_larger_than_the_filesystem_is_a_clear_error() {
    let fs = match Tmpfs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            // The file-size limit test below still covers the output.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: full-filesystem output test ({why}); \
                 an_output_over_the_file_size_limit_is_a_clear_error covers outputs"
            );
            return;
        }
    };
    let inputs = inputs();
    let free = free_bytes(&fs.mnt);
    let out = fs.mnt.join("out.npy");
    let input = inputs.path().join("in.npy");
    // Through the engine (convert), and through the generator.
    let convert = [
        "convert",
        arg(&input),
        arg(&out),
        "--dtype",
        "f64",
        "--memory-limit",
        "4MiB",
    ];
    let run = cli(inputs.path(), &convert);
    assert_no_space_for_output(&run, &out, "No space left on device");
    assert!(run.stderr.contains("16777344 bytes"), "{run:#?}");
    let run = cli(inputs.path(), &["gen", arg(&out), "--shape", ROWS]);
    assert_no_space_for_output(&run, &out, "No space left on device");
    assert_eq!(free_bytes(&fs.mnt), free, "space not given back");

    // An output that fits still works there.
    let small = fs.mnt.join("small.npy");
    cli(inputs.path(), &["gen", arg(&small), "--shape", "1000"]).ok();
    assert_eq!(names(&fs.mnt), ["small.npy"]);
}

#[test]
fn an_output_over_the_file_size_limit_is_a_clear_error() {
    let inputs = inputs();
    let dir = tempdir();
    let out = dir.path().join("out.npy");
    let input = inputs.path().join("in.npy");
    let convert = [
        "convert",
        arg(&input),
        arg(&out),
        "--dtype",
        "f32",
        "--memory-limit",
        "4MiB",
    ];
    let run = cli_with_file_limit(inputs.path(), &convert, 1 << 20);
    assert_no_space_for_output(&run, &out, "File too large");
    assert!(run.stderr.contains("8388736 bytes"), "{run:#?}");
    // Overwriting an existing output: it stays as it was.
    std::fs::write(&out, b"keep").unwrap();
    let mut forced = convert.to_vec();
    forced.push("--force");
    let run = cli_with_file_limit(inputs.path(), &forced, 1 << 20);
    let line = run.error(1);
    assert!(line.contains("File too large"), "{line}");
    assert_eq!(names(dir.path()), ["out.npy"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    assert_eq!(names(inputs.path()), ["in.npy"]);
}

#[test]
fn spill_files_larger_than_the_filesystem_are_a_clear_error() {
    let inputs = inputs();
    let input = inputs.path().join("in.npy");
    let out_dir = tempdir();
    let out = out_dir.path().join("sorted.npy");
    let sort = |spill_dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "sort",
            arg(&input),
            arg(&out),
            "--memory-limit",
            "1MiB",
            "--spill-dir",
            arg(spill_dir),
        ];
        args.extend_from_slice(extra);
        cli(inputs.path(), &args)
    };
    match Tmpfs::mount() {
        Ok(fs) => {
            let free = free_bytes(&fs.mnt);
            let run = sort(&fs.mnt, &[]);
            let line = run.error(1);
            let want = format!(
                "spill file in {}: No space left on device",
                fs.mnt.display()
            );
            assert!(line.contains(&want), "{line}");
            assert!(line.contains("no space for a "), "{line}");
            assert_eq!(line.matches("No space left on device").count(), 1, "{line}");
            assert_eq!(names(&fs.mnt), Vec::<String>::new());
            assert_eq!(free_bytes(&fs.mnt), free, "space not given back");
        }
        Err(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "full-filesystem spill test: {why}; checking --spill-quota instead"
            );
            let spill = tempdir();
            let run = sort(spill.path(), &["--spill-quota", "8MiB"]);
            let line = run.error(1);
            assert!(line.contains("spill quota exceeded in"), "{line}");
            assert!(line.contains(arg(spill.path())), "{line}");
            assert_eq!(names(spill.path()), Vec::<String>::new());
        }
    }
    // Neither the output nor anything else was left.
    assert_eq!(names(out_dir.path()), Vec::<String>::new());
    assert_eq!(names(inputs.path()), ["in.npy"]);
}
