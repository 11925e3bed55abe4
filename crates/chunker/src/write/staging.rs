//! Where an output lives until it is complete, and how it gets its name:
//! the file-system plumbing behind [`ArrayWriter`](super::ArrayWriter).
//!
//! An output is created *unnamed* (Linux `O_TMPFILE`) in its destination
//! directory, its whole size allocated up front (`fallocate`), and given
//! its final name by `linkat` of `/proc/self/fd/N` (or, should `/proc`
//! vanish meanwhile, by descriptor with `AT_EMPTY_PATH`); with overwrite,
//! it is linked under a temporary name and renamed over the final path.
//! Where the system has no `O_TMPFILE` or no `/proc`, a named temporary
//! (`.NAME.XXXXXX.outcore-tmp`) stands in, renamed into place at the end.
//!
//! Every `unsafe` block and every direct `libc` call of the writer is here;
//! the writer itself only asks for a [`Staging`], a [`preallocate`]d file,
//! and [`Staging::name`] at finish.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use crate::source::parent_dir;

/// Where an output's data lives until
/// [`ArrayWriter::finish`](super::ArrayWriter::finish) names it.
#[derive(Debug)]
pub(super) enum Staging {
    /// An unnamed file (`O_TMPFILE`), linked into place at finish.
    Unnamed,
    /// A named temporary in the destination directory, deleted on drop,
    /// renamed into place at finish.
    Named(TempPath),
}

/// Suffix of the temporary names a writer may use in the destination
/// directory (see [`ArrayWriter`](super::ArrayWriter)).
pub(super) const TEMP_SUFFIX: &str = ".outcore-tmp";

impl Staging {
    /// Creates the file of the output `path` in its directory `dir`,
    /// readable and writable, with the mode of any new file: unnamed if
    /// `unnamed` and the system allows it, else a named temporary (tests
    /// force the fallback with `unnamed = false`).
    ///
    /// # Errors
    ///
    /// A missing or unwritable directory, too many open files, a read-only
    /// filesystem.
    pub(super) fn create(path: &Path, dir: &Path, unnamed: bool) -> io::Result<(File, Staging)> {
        if unnamed && let Some(file) = create_unnamed(dir)? {
            return Ok((file, Staging::Unnamed));
        }
        // The mode an unnamed file gets (tempfile's default is 0o600).
        let named = tempfile::Builder::new()
            .prefix(&temp_prefix(path))
            .suffix(TEMP_SUFFIX)
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        let (file, temp) = named.into_parts();
        Ok((file, Staging::Named(temp)))
    }

    /// What [`Staging::name`] does, for its error messages.
    pub(super) fn action(&self) -> &'static str {
        match self {
            Staging::Unnamed => "link into place",
            Staging::Named(_) => "rename into place",
        }
    }

    /// Gives `file`, staged as `self`, its final name `to`, replacing a
    /// file there only if `overwrite`.
    ///
    /// # Errors
    ///
    /// Without overwrite, kind `AlreadyExists` when `to` exists; any
    /// failure to link or rename. On error nothing is left under `to` or
    /// any temporary name (a failed rename drops, so deletes, the named
    /// temporary).
    pub(super) fn name(self, file: &File, to: &Path, overwrite: bool) -> io::Result<()> {
        match self {
            Staging::Unnamed if overwrite => link_over(file, to),
            Staging::Unnamed => link_unnamed(file, to),
            Staging::Named(temp) if overwrite => temp.persist(to).map_err(|e| e.error),
            Staging::Named(temp) => temp.persist_noclobber(to).map_err(|e| e.error),
        }
    }
}

/// A path as a C string, for the system calls `std` does not wrap.
fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

/// `/proc/self/fd/N` for `file`: the name through which `linkat` can give
/// an unnamed file a name without privileges.
fn proc_fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Creates an unnamed file (`O_TMPFILE`) in `dir`, readable and writable.
///
/// Returns `Ok(None)` when it cannot be used: the kernel or filesystem has
/// no `O_TMPFILE` (`EOPNOTSUPP`, or `EISDIR`/`EINVAL` from kernels before
/// 3.11), or `/proc/self/fd` does not lead to the file (`/proc` is not
/// mounted, or belongs to another PID namespace), so `finish` could not
/// link it. [`Staging::create`] then uses a named temporary.
///
/// # Errors
///
/// Any other failure to create it: a missing or unwritable directory,
/// too many open files, a read-only filesystem.
fn create_unnamed(dir: &Path) -> io::Result<Option<File>> {
    let c_dir = c_path(dir)?;
    let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
    // The kernel applies the umask to the mode, as for any new file.
    let mode: libc::c_uint = 0o666;
    // SAFETY: `c_dir` is a NUL-terminated string that outlives the call;
    // `open` reads it and its integer arguments only.
    let fd = unsafe { libc::open(c_dir.as_ptr(), flags, mode) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: `fd` was just returned by `open`; nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    let ours = file.metadata()?;
    let linkable = std::fs::metadata(proc_fd_path(&file))
        .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
    Ok(linkable.then_some(file))
}

/// Gives the unnamed `file` the name `to`, failing with `EEXIST` (kind
/// `AlreadyExists`) if `to` exists.
///
/// Links `/proc/self/fd/N`, which needs no privileges. Should that name
/// have gone missing since the file was created (`/proc` unmounted
/// meanwhile: `ENOENT`), links by descriptor instead ([`link_by_fd`]).
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    let c_to = c_path(to)?;
    let c_proc = c_path(&proc_fd_path(file))?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // `linkat` reads them and its integer arguments only.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            c_proc.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // ENOENT from a missing destination directory is just that.
    if err.raw_os_error() != Some(libc::ENOENT) || std::fs::metadata(proc_fd_path(file)).is_ok() {
        return Err(err);
    }
    link_by_fd(file, to).map_err(|e| match e.raw_os_error() {
        // How kernels refuse AT_EMPTY_PATH to the unprivileged.
        Some(libc::ENOENT | libc::EPERM) => io::Error::new(
            e.kind(),
            format!(
                "neither /proc/self/fd ({err}) nor linkat(AT_EMPTY_PATH) ({e}; it needs \
                 CAP_DAC_READ_SEARCH) can name the unnamed output"
            ),
        ),
        _ => e,
    })
}

/// Gives the unnamed `file` the name `to` through `linkat(fd, "",
/// AT_EMPTY_PATH)`, which needs no `/proc` but, on most kernels, the
/// `CAP_DAC_READ_SEARCH` capability.
fn link_by_fd(file: &File, to: &Path) -> io::Result<()> {
    let c_to = c_path(to)?;
    // SAFETY: the descriptor is open and owned by `file` for the call; the
    // paths are NUL-terminated strings that outlive it.
    let rc = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the unnamed `file` the name `to`, replacing any file there: links
/// it under a temporary name in the same directory (retried until unused),
/// then renames that over `to`. If the rename fails the temporary name is
/// deleted.
fn link_over(file: &File, to: &Path) -> io::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix(&temp_prefix(to))
        .suffix(TEMP_SUFFIX)
        .make_in(parent_dir(to), |temp| link_unnamed(file, temp))?
        .into_temp_path();
    temp.persist(to).map_err(|e| e.error)
}

/// The start of a temporary name for the output `path`: `.NAME.`, so that
/// temporaries sort beside their output and are hidden from `ls`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// Sizes `file` to `len` bytes, allocating the disk space up front where
/// the filesystem can (`fallocate`): a full disk is then an error here,
/// before any work, rather than in the middle of a run — and writing into
/// allocated blocks is faster on ext4 than extending a sparse file.
/// Filesystems without `fallocate` get a sparse file (`set_len`).
pub(super) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    if len > 0 {
        let Ok(off_len) = libc::off_t::try_from(len) else {
            return Err(std::io::Error::from(std::io::ErrorKind::FileTooLarge));
        };
        // SAFETY: `fallocate` only reads its integer arguments; the file
        // descriptor is open and owned by `file` for the whole call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
                _ => return Err(err),
            }
        }
    }
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    /// The link used when `/proc` disappears after the file was created:
    /// by descriptor (`AT_EMPTY_PATH`). It needs `CAP_DAC_READ_SEARCH`;
    /// without it the error must say so, not pretend success.
    #[test]
    fn linking_by_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_unnamed(dir.path()).unwrap().unwrap();
        file.write_all_at(b"data", 0).unwrap();
        let to = dir.path().join("linked");
        match link_by_fd(&file, &to) {
            Ok(()) => {
                assert_eq!(std::fs::read(&to).unwrap(), b"data");
                // No clobbering either.
                let err = link_by_fd(&file, &to).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
            }
            Err(e) => {
                // SAFETY: geteuid has no preconditions.
                let root = unsafe { libc::geteuid() } == 0;
                assert!(!root, "root may link by descriptor, got {e}");
                assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
            }
        }
    }
}
