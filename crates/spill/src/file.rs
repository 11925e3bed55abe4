//! Spill files: unnamed temporary files for intermediates that do not fit
//! in memory.
//!
//! A [`SpillSpace`] is a directory and an optional disk quota shared by
//! every spill file created from it. [`SpillSpace::create`] checks the
//! quota, creates an *unnamed* file in the directory (Linux `O_TMPFILE`,
//! or a named file unlinked at once where the filesystem lacks it — either
//! way nothing is left on disk after the process ends, even by
//! `kill -9`), and allocates all of its space with `fallocate`, so a full
//! disk is an error at creation, not a fault later. Data goes in with
//! [`SpillFile::write_at`] and comes back through read-only mapped
//! [`SpillWindow`]s, or through [`SpillFile::file`] as an ordinary
//! array source.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;

use crate::error::{Error, Result};

#[derive(Debug)]
struct Space {
    dir: PathBuf,
    quota: Option<u64>,
    used: AtomicU64,
    peak: AtomicU64,
    total: AtomicU64,
}

/// A spill directory and its disk quota, shared (cheaply cloned) by every
/// spill file made from it.
///
/// ```
/// use outcore_spill::SpillSpace;
///
/// let dir = tempfile::tempdir()?;
/// let space = SpillSpace::new(dir.path()).with_quota(1 << 20);
/// let file = space.create(4096)?;
/// file.write_at(0, &[7u8; 4096])?;
/// assert_eq!(file.map(100, 10)?[..], [7u8; 10]);
/// assert_eq!(space.used(), 4096);
/// // Unnamed: the directory stays empty while the file lives.
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
/// // Over the quota: an error, nothing allocated.
/// assert!(space.create(1 << 20).is_err());
/// drop(file);
/// assert_eq!(space.used(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct SpillSpace(Arc<Space>);

impl SpillSpace {
    /// Spill files in `dir`, without a quota.
    pub fn new(dir: impl Into<PathBuf>) -> SpillSpace {
        SpillSpace(Arc::new(Space {
            dir: dir.into(),
            quota: None,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }))
    }

    /// Spill files in the system's temporary directory (`$TMPDIR`, else
    /// `/tmp`), without a quota.
    pub fn system() -> SpillSpace {
        SpillSpace::new(std::env::temp_dir())
    }

    /// The same directory with a quota: the bytes all live spill files of
    /// this space may hold at once.
    pub fn with_quota(self, bytes: u64) -> SpillSpace {
        SpillSpace(Arc::new(Space {
            dir: self.0.dir.clone(),
            quota: Some(bytes),
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }))
    }

    /// The spill directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// The quota, if any.
    pub fn quota(&self) -> Option<u64> {
        self.0.quota
    }

    /// Bytes held by live spill files.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The most bytes live spill files held at once.
    pub fn peak(&self) -> u64 {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// Bytes of every spill file created so far (live or not).
    pub fn total(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// Creates an unnamed spill file of `len` bytes, all allocated on disk.
    ///
    /// # Errors
    ///
    /// [`Error::Quota`] when the quota would be exceeded,
    /// [`Error::NoSpace`] when the disk is full, [`Error::Io`]
    /// when the directory is missing or not writable.
    pub fn create(&self, len: u64) -> Result<SpillFile> {
        let s = &self.0;
        // Claim the quota first, so racing creators cannot both fit.
        let mut used = s.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(len);
            if let Some(quota) = s.quota
                && next > quota
            {
                return Err(Error::Quota {
                    dir: s.dir.clone(),
                    requested: len,
                    used,
                    quota,
                });
            }
            match s
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    s.peak.fetch_max(next, Ordering::Relaxed);
                    break;
                }
                Err(now) => used = now,
            }
        }
        let claim = Claim {
            space: self.clone(),
            len,
        };
        let file = tempfile::tempfile_in(&s.dir).map_err(|source| Error::Io {
            dir: s.dir.clone(),
            op: "create a temporary file",
            source,
        })?;
        allocate(&file, len).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC)
                || source.raw_os_error() == Some(libc::EDQUOT)
                || source.raw_os_error() == Some(libc::EFBIG)
            {
                Error::NoSpace {
                    dir: s.dir.clone(),
                    requested: len,
                    error: source,
                }
            } else {
                Error::Io {
                    dir: s.dir.clone(),
                    op: "allocate space",
                    source,
                }
            }
        })?;
        s.total.fetch_add(len, Ordering::Relaxed);
        Ok(SpillFile { file, claim })
    }
}

impl Default for SpillSpace {
    fn default() -> SpillSpace {
        SpillSpace::system()
    }
}

/// Allocates `len` bytes of disk for `file` (and sets its length).
fn allocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let off = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: posix_fallocate only reads its integer arguments; the file
    // descriptor is open for writing and owned by `file` for the call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: a sparse file. Writes may then hit
        // ENOSPC, which write_at reports; reads map only written bytes.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Quota held by one spill file, returned on drop.
#[derive(Debug)]
struct Claim {
    space: SpillSpace,
    len: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.space.0.used.fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// An unnamed temporary file of fixed size; its disk space and quota are
/// released when it is dropped (the operating system frees an unlinked
/// file's blocks when its last descriptor closes).
#[derive(Debug)]
pub struct SpillFile {
    file: File,
    claim: Claim,
}

impl SpillFile {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.claim.len
    }

    /// True for a zero-byte file.
    pub fn is_empty(&self) -> bool {
        self.claim.len == 0
    }

    /// The directory it lives in (unnamed).
    pub fn dir(&self) -> &Path {
        self.claim.space.dir()
    }

    /// The open file, e.g. to read it as an array source. Clones of the
    /// descriptor keep the disk space in use until they close too.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            end => Err(Error::OutOfBounds {
                dir: self.dir().to_path_buf(),
                offset,
                end: end.unwrap_or(u64::MAX),
                len: self.len(),
            }),
        }
    }

    /// Writes `bytes` at `offset` (any thread; regions must not overlap
    /// a live window).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] past the file's size; [`Error::NoSpace`]
    /// or [`Error::Io`] when the write fails.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.check(offset, bytes.len() as u64)?;
        self.file.write_all_at(bytes, offset).map_err(|source| {
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
            ) {
                Error::NoSpace {
                    dir: self.dir().to_path_buf(),
                    requested: bytes.len() as u64,
                    error: source,
                }
            } else {
                Error::Io {
                    dir: self.dir().to_path_buf(),
                    op: "write",
                    source,
                }
            }
        })
    }

    /// Maps `len` bytes from `offset` read-only. The window's pages count
    /// in the process's resident set until it is dropped: reserve them in
    /// the memory budget first.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] past the file's size; [`Error::Io`]
    /// when mapping fails.
    pub fn map(&self, offset: u64, len: usize) -> Result<SpillWindow> {
        self.check(offset, len as u64)?;
        if len == 0 {
            return Ok(SpillWindow(None));
        }
        crate::map::map_read(&self.file, offset, len)
            .map(|m| SpillWindow(Some(m)))
            .map_err(|source| Error::Io {
                dir: self.dir().to_path_buf(),
                op: "map",
                source,
            })
    }
}

/// A read-only mapped range of a [`SpillFile`]; unmapped on drop.
#[derive(Debug)]
pub struct SpillWindow(Option<Mmap>);

impl Deref for SpillWindow {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Some(m) => m,
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_unnamed_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let space = SpillSpace::new(dir.path());
        let a = space.create(1 << 20).unwrap();
        let b = space.create(10).unwrap();
        assert_eq!(space.used(), (1 << 20) + 10);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        a.write_at((1 << 20) - 3, &[1, 2, 3]).unwrap();
        assert_eq!(&a.map((1 << 20) - 3, 3).unwrap()[..], &[1, 2, 3]);
        assert!(matches!(
            a.write_at((1 << 20) - 2, &[1, 2, 3]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(b.map(5, 6), Err(Error::OutOfBounds { .. })));
        assert!(b.map(10, 0).unwrap().is_empty());
        drop(a);
        assert_eq!(space.used(), 10);
        assert_eq!(space.peak(), (1 << 20) + 10);
        drop(b);
        assert_eq!(space.used(), 0);
    }

    #[test]
    fn quota_is_shared_and_exact() {
        let dir = tempfile::tempdir().unwrap();
        let space = SpillSpace::new(dir.path()).with_quota(100);
        let a = space.create(60).unwrap();
        let err = space.create(41).unwrap_err();
        assert!(matches!(
            err,
            Error::Quota {
                requested: 41,
                used: 60,
                quota: 100,
                ..
            }
        ));
        assert!(err.to_string().contains("spill quota exceeded"), "{err}");
        let b = space.create(40).unwrap();
        drop((a, b));
        assert_eq!(space.used(), 0);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let space = SpillSpace::new("/nonexistent/outcore-spill");
        let err = space.create(10).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/outcore-spill"));
        assert_eq!(space.used(), 0);
    }
}
