//! Writing arrays: `.npy` or raw outputs, filled by blocks from several
//! threads, named only once complete (unnamed until then: `O_TMPFILE`).
//!
//! This module is the writer's API ([`OutputSpec`], [`ArrayWriter`]) and
//! its bookkeeping (header, row coverage, byte order, errors naming the
//! output); how the file is created, allocated and given its name — the
//! unnamed file, the `linkat`, the named-temporary fallback, and every
//! `unsafe` call — is in `write/staging.rs`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::ArrayView2;

use crate::dtype::{ByteOrder, DType, Element};
use crate::error::{Error, Result};
use crate::meta::{ArrayMeta, Format, Layout};
use crate::npy;
use crate::source::{parent_dir, swap_in_place};

use self::staging::{Staging, preallocate};

mod staging;

/// The format of an output file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// A NumPy `.npy` file (header identical to what `np.save` writes).
    #[default]
    Npy,
    /// Raw elements, no header.
    Raw,
}

/// What to write: format, dtype, byte order and shape of the output, and
/// how to finish it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    format: OutputFormat,
    dtype: DType,
    byte_order: ByteOrder,
    shape: Vec<u64>,
    fsync: bool,
    overwrite: bool,
}

impl OutputSpec {
    /// A `.npy` output of `dtype` and `shape`, in native byte order, synced
    /// to disk on finish, refusing to replace an existing file.
    pub fn npy(dtype: DType, shape: Vec<u64>) -> OutputSpec {
        OutputSpec {
            format: OutputFormat::Npy,
            dtype,
            byte_order: ByteOrder::NATIVE,
            shape,
            fsync: true,
            overwrite: false,
        }
    }

    /// A raw output of `dtype` and `shape`, otherwise as [`OutputSpec::npy`].
    pub fn raw(dtype: DType, shape: Vec<u64>) -> OutputSpec {
        OutputSpec {
            format: OutputFormat::Raw,
            ..OutputSpec::npy(dtype, shape)
        }
    }

    /// Sets the byte order the elements are stored in. By default, native.
    pub fn byte_order(mut self, order: ByteOrder) -> OutputSpec {
        self.byte_order = order;
        self
    }

    /// Whether to `fsync` the data (and the directory entry) before the
    /// output takes its final name. By default, true; turn it off for
    /// scratch outputs, where surviving a power cut does not matter.
    pub fn fsync(mut self, yes: bool) -> OutputSpec {
        self.fsync = yes;
        self
    }

    /// Whether an existing file at the output path may be replaced. By
    /// default, false: creating the writer fails with
    /// [`Error::OutputExists`].
    pub fn overwrite(mut self, yes: bool) -> OutputSpec {
        self.overwrite = yes;
        self
    }

    /// The output's element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The output's shape.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }
}

/// An output being written.
///
/// Data goes to an *unnamed* file in the destination directory (Linux
/// `O_TMPFILE`); blocks may be written at their row offsets in any order,
/// from several threads at once (`ArrayWriter` is `Sync`; writes are
/// positioned, `pwrite`). [`ArrayWriter::finish`] checks that every row was
/// written, syncs, and only then gives the file a name. Until then no name
/// exists: a writer dropped before `finish` (an error, a panic, an abandoned
/// run) — or a process killed outright, even by `SIGKILL` — leaves nothing
/// in the directory, and the kernel frees the space when the file is closed.
///
/// How the finished file gets its name:
///
/// * without overwrite, one `linkat` of `/proc/self/fd/N` to the final path:
///   atomic, and it fails with `EEXIST` rather than replace a file that
///   appeared meanwhile ([`Error::OutputExists`]);
/// * with overwrite, a `linkat` to a uniquely named temporary
///   (`.NAME.XXXXXX.outcore-tmp`) in the same directory, then `rename` over
///   the final path (no system call links over an existing name). The window
///   between those two calls is the only time a temporary name exists; a
///   process killed in it leaves that temporary behind — complete and
///   synced, but under the temporary name.
///
/// Where the filesystem or kernel has no `O_TMPFILE`, or `/proc` is not
/// mounted (the link goes through `/proc/self/fd`), the writer decides at
/// [`ArrayWriter::create`] to use a named temporary instead
/// (`.NAME.XXXXXX.outcore-tmp`, deleted when the writer is dropped, renamed
/// into place by `finish`): the same guarantees, except that a process
/// killed by `SIGKILL` leaves that temporary behind.
///
/// Written data goes through the page cache, not through mapped memory, so
/// writing adds nothing to the process's resident set beyond the caller's
/// blocks and a bounded conversion buffer.
///
/// ```
/// use ndarray::array;
/// use outcore_chunker::{ArrayFile, ArrayWriter, DType, OutputSpec};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.npy");
/// let writer = ArrayWriter::create(&path, OutputSpec::npy(DType::F32, vec![3, 2]))?;
/// writer.write_block(2, array![[5.0f32, 6.0]].view())?;
/// // Nothing has a name yet.
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
/// writer.write_block(0, array![[1.0f32, 2.0], [3.0, 4.0]].view())?;
/// writer.finish()?;
///
/// let back = ArrayFile::open(&path)?;
/// assert_eq!(back.meta().shape, vec![3, 2]);
/// assert_eq!(back.read_rows(0..3)?.as_slice::<f32>()?, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ArrayWriter {
    path: PathBuf,
    staging: Staging,
    file: File,
    meta: ArrayMeta,
    spec: OutputSpec,
    written: Mutex<Coverage>,
}

/// An I/O error about the output `path` (of `meta`): [`Error::NoSpace`]
/// when the filesystem has no room for it, else [`Error::Io`].
fn output_error(path: &Path, meta: &ArrayMeta, action: &'static str, error: io::Error) -> Error {
    if is_no_space(&error) {
        Error::NoSpace {
            path: path.to_path_buf(),
            needed: meta.data_offset.saturating_add(meta.nbytes()),
            action,
            error,
        }
    } else {
        Error::io(path, action, error)
    }
}

/// True for the errors that mean the filesystem has no room for the
/// output: full (`ENOSPC`), over a disk quota (`EDQUOT`), or past the
/// process's file-size limit (`EFBIG`, `RLIMIT_FSIZE`).
fn is_no_space(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
    )
}

/// The row ranges written so far, sorted and merged.
#[derive(Debug, Default)]
struct Coverage(Vec<(u64, u64)>);

impl Coverage {
    fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // Merge with every range that touches or overlaps [start, end).
        self.0.retain(|&(s, e)| {
            if e < start || s > end {
                true
            } else {
                start = start.min(s);
                end = end.max(e);
                false
            }
        });
        let at = self.0.partition_point(|&(s, _)| s < start);
        self.0.insert(at, (start, end));
    }

    /// Rows covered.
    fn rows(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
}

/// Elements converted per chunk when a block must be byte-swapped or made
/// contiguous before writing: bounds the writer's scratch memory to 1 MiB.
const CONVERT_CHUNK_BYTES: usize = 1 << 20;

impl ArrayWriter {
    /// Creates the unnamed output in `path`'s directory (see
    /// [`ArrayWriter`]), writes its header and allocates its whole size.
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when `path` exists and overwriting is off;
    /// [`Error::Overflow`] for a shape too large; [`Error::NoSpace`] when
    /// the filesystem has no room for the whole output (full, over quota,
    /// or past the file-size limit: known here, before any data is
    /// written, wherever the filesystem supports `fallocate`);
    /// [`Error::Io`] when the directory is missing or not writable.
    pub fn create(path: impl AsRef<Path>, spec: OutputSpec) -> Result<ArrayWriter> {
        ArrayWriter::create_staged(path.as_ref(), spec, true)
    }

    /// [`ArrayWriter::create`], with an unnamed file only if `unnamed` and
    /// the system supports it (tests force the named fallback with
    /// `unnamed = false`).
    fn create_staged(path: &Path, spec: OutputSpec, unnamed: bool) -> Result<ArrayWriter> {
        if !spec.overwrite && path.exists() {
            return Err(Error::OutputExists {
                path: path.to_path_buf(),
            });
        }
        let header = match spec.format {
            OutputFormat::Npy => npy::header_bytes(spec.dtype, spec.byte_order, &spec.shape),
            OutputFormat::Raw => Vec::new(),
        };
        let format = match spec.format {
            OutputFormat::Npy => Format::Npy {
                major: header[6],
                minor: 0,
            },
            OutputFormat::Raw => Format::Raw,
        };
        let meta = ArrayMeta::new(
            path,
            spec.shape.clone(),
            spec.dtype,
            spec.byte_order,
            Layout::C,
            format,
            header.len() as u64,
        )?;
        let dir = parent_dir(path);
        let (file, staging) = Staging::create(path, &dir, unnamed)
            .map_err(|e| Error::io(&dir, "create an output in this directory", e))?;
        let writer = ArrayWriter {
            path: path.to_path_buf(),
            staging,
            file,
            meta,
            spec,
            written: Mutex::new(Coverage::default()),
        };
        // On error the writer is dropped here: an unnamed file vanishes, a
        // named one is deleted.
        writer
            .file
            .write_all_at(&header, 0)
            .map_err(|e| writer.io_error("write the header", e))?;
        preallocate(&writer.file, writer.meta.data_offset + writer.meta.nbytes())
            .map_err(|e| writer.io_error("allocate", e))?;
        Ok(writer)
    }

    /// The output's metadata (as it will read back once finished).
    pub fn meta(&self) -> &ArrayMeta {
        &self.meta
    }

    /// The final path of the output.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes whole rows starting at `start_row`, from bytes already in the
    /// output's dtype and byte order.
    ///
    /// # Errors
    ///
    /// [`Error::WriteMismatch`] when `bytes` is not a whole number of rows
    /// or runs past the last row; [`Error::Io`] when the write fails.
    pub fn write_rows(&self, start_row: u64, bytes: &[u8]) -> Result<()> {
        let rows = self.check_rows(start_row, bytes.len())?;
        self.write_at(start_row, 0, bytes)?;
        self.note_written(start_row, rows);
        Ok(())
    }

    /// Writes whole rows starting at `start_row` from bytes in the output's
    /// dtype but in native byte order, converting them in place first when
    /// the output's byte order differs (the buffer is scratch afterwards).
    ///
    /// # Errors
    ///
    /// As [`ArrayWriter::write_rows`].
    pub fn write_native_rows(&self, start_row: u64, bytes: &mut [u8]) -> Result<()> {
        if !self.meta.byte_order.is_native() {
            swap_in_place(bytes, self.meta.dtype.itemsize());
        }
        self.write_rows(start_row, bytes)
    }

    /// Writes a block of rows starting at `start_row`. The block's columns
    /// must match the output's row length and `T` its dtype; it is
    /// converted to the output's byte order as needed, in bounded chunks.
    ///
    /// # Errors
    ///
    /// [`Error::WriteMismatch`] on a dtype, row-length or row-range
    /// mismatch; [`Error::Io`] when the write fails.
    pub fn write_block<T: Element>(&self, start_row: u64, block: ArrayView2<'_, T>) -> Result<()> {
        if T::DATA_TYPE != self.meta.dtype {
            return Err(self.mismatch(format!(
                "block of {} written to an output of {}",
                T::DATA_TYPE,
                self.meta.dtype
            )));
        }
        if block.ncols() != self.meta.row_len() && block.nrows() > 0 {
            return Err(self.mismatch(format!(
                "block rows have {} elements, output rows have {}",
                block.ncols(),
                self.meta.row_len()
            )));
        }
        let isz = self.meta.dtype.itemsize();
        let rows = self.check_rows(start_row, block.len() * isz)?;
        match block.as_slice() {
            Some(slice) if self.meta.byte_order.is_native() => {
                self.write_at(start_row, 0, bytemuck::cast_slice(slice))?;
            }
            _ => {
                // Byte order or layout differ: convert through a bounded buffer.
                let chunk = (CONVERT_CHUNK_BYTES / isz).max(1) * isz;
                let mut scratch: Vec<u8> = Vec::with_capacity(chunk.min(block.len() * isz));
                let mut done = 0u64;
                for v in block.iter() {
                    scratch.extend_from_slice(bytemuck::bytes_of(v));
                    if scratch.len() == chunk {
                        self.write_converted(start_row, done, &mut scratch)?;
                        done += chunk as u64;
                    }
                }
                if !scratch.is_empty() {
                    self.write_converted(start_row, done, &mut scratch)?;
                }
            }
        }
        self.note_written(start_row, rows);
        Ok(())
    }

    fn note_written(&self, start_row: u64, rows: u64) {
        // A poisoned lock only means another writer thread panicked; the
        // coverage itself is always consistent.
        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
        w.add(start_row, start_row + rows);
    }

    /// Checks that `nbytes` are whole rows fitting from `start_row`;
    /// returns the row count.
    fn check_rows(&self, start_row: u64, nbytes: usize) -> Result<u64> {
        let row_bytes = self.meta.row_bytes();
        let rows = match row_bytes {
            0 => 0,
            rb if nbytes.is_multiple_of(rb) => (nbytes / rb) as u64,
            rb => {
                return Err(self.mismatch(format!(
                    "{nbytes} bytes are not a whole number of {rb}-byte rows"
                )));
            }
        };
        if start_row
            .checked_add(rows)
            .is_none_or(|end| end > self.meta.rows())
        {
            return Err(self.mismatch(format!(
                "rows {start_row}..{} written to an output of {} rows",
                start_row.saturating_add(rows),
                self.meta.rows()
            )));
        }
        Ok(rows)
    }

    /// Swaps `scratch` to the output's byte order, writes it `done` bytes
    /// after `start_row`, and empties it.
    fn write_converted(&self, start_row: u64, done: u64, scratch: &mut Vec<u8>) -> Result<()> {
        if !self.meta.byte_order.is_native() {
            swap_in_place(scratch, self.meta.dtype.itemsize());
        }
        self.write_at(start_row, done, scratch)?;
        scratch.clear();
        Ok(())
    }

    fn write_at(&self, start_row: u64, byte_offset: u64, bytes: &[u8]) -> Result<()> {
        let offset = self.meta.data_offset + start_row * self.meta.row_bytes() as u64 + byte_offset;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| self.io_error("write", e))
    }

    /// An I/O error about the output, by its final path:
    /// [`Error::NoSpace`] when the filesystem has no room for it, else
    /// [`Error::Io`].
    fn io_error(&self, action: &'static str, error: io::Error) -> Error {
        output_error(&self.path, &self.meta, action, error)
    }

    fn mismatch(&self, reason: String) -> Error {
        Error::WriteMismatch {
            path: self.path.clone(),
            reason,
        }
    }

    /// Finishes the output: checks every row was written, syncs the data
    /// (unless turned off), gives the file its final name (see
    /// [`ArrayWriter`]) and syncs the directory. Returns the output's
    /// metadata.
    ///
    /// # Errors
    ///
    /// [`Error::WriteMismatch`] when not every row was written;
    /// [`Error::OutputExists`] when a file appeared at the path meanwhile
    /// and overwriting is off; [`Error::NoSpace`] when the filesystem has
    /// no room left (data the kernel had not yet placed, or the new
    /// directory entry); [`Error::Io`] when syncing or naming fails. On
    /// error nothing is left under the final name or any temporary one.
    pub fn finish(self) -> Result<ArrayMeta> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rows();
        let expected = if self.meta.row_bytes() == 0 {
            0
        } else {
            self.meta.rows()
        };
        if written != expected {
            return Err(self.mismatch(format!(
                "{written} of {expected} rows were written before finishing"
            )));
        }
        if self.spec.fsync {
            self.file.sync_all().map_err(|e| self.io_error("sync", e))?;
        }
        let overwrite = self.spec.overwrite;
        let action = self.staging.action();
        let result = self.staging.name(&self.file, &self.path, overwrite);
        result.map_err(|e| {
            if !overwrite && e.kind() == io::ErrorKind::AlreadyExists {
                Error::OutputExists {
                    path: self.path.clone(),
                }
            } else {
                output_error(&self.path, &self.meta, action, e)
            }
        })?;
        if self.spec.fsync {
            let dir = parent_dir(&self.path);
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&dir, "sync directory", e))?;
        }
        Ok(self.meta)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::staging::TEMP_SUFFIX;
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn spec(rows: u64) -> OutputSpec {
        OutputSpec::raw(DType::U8, vec![rows]).fsync(false)
    }

    /// This machine has `O_TMPFILE` and `/proc`: outputs are unnamed.
    #[test]
    fn outputs_are_unnamed_where_the_system_allows() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ArrayWriter::create(dir.path().join("out"), spec(4)).unwrap();
        assert!(matches!(writer.staging, Staging::Unnamed), "{writer:?}");
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }

    /// The named-temporary fallback (for systems without `O_TMPFILE` or
    /// `/proc`) keeps every promise but the one about `SIGKILL`.
    #[test]
    fn the_named_fallback_finishes_refuses_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let named = |spec| ArrayWriter::create_staged(&path, spec, false).unwrap();

        // While writing, one hidden temporary; dropped, nothing.
        let writer = named(spec(4));
        assert!(matches!(writer.staging, Staging::Named(_)), "{writer:?}");
        let entries = names(dir.path());
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(
            entries[0].starts_with(".out.") && entries[0].ends_with(TEMP_SUFFIX),
            "{entries:?}"
        );
        writer.write_rows(0, b"ab").unwrap();
        drop(writer);
        assert_eq!(names(dir.path()), Vec::<String>::new());

        // Finished: only the output.
        let writer = named(spec(4));
        writer.write_rows(0, b"abcd").unwrap();
        writer.finish().unwrap();
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");

        // A file appearing meanwhile is kept without overwrite...
        std::fs::remove_file(&path).unwrap();
        let writer = named(spec(4));
        writer.write_rows(0, b"efgh").unwrap();
        std::fs::write(&path, b"theirs").unwrap();
        assert_eq!(writer.finish().unwrap_err().kind(), "output_exists");
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        assert_eq!(names(dir.path()), ["out"]);

        // ...and replaced with it.
        let writer = named(spec(4).overwrite(true));
        writer.write_rows(0, b"ijkl").unwrap();
        writer.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ijkl");
        assert_eq!(names(dir.path()), ["out"]);
    }

    /// Outputs get the mode of any new file (0o666 less the umask), as
    /// `np.save`'s do, by either path.
    #[test]
    fn outputs_have_the_usual_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        let reference = dir.path().join("reference");
        File::create(&reference).unwrap();
        for unnamed in [true, false] {
            let path = dir.path().join(format!("out-{unnamed}"));
            let writer = ArrayWriter::create_staged(&path, spec(1), unnamed).unwrap();
            writer.write_rows(0, b"x").unwrap();
            writer.finish().unwrap();
            assert_eq!(mode(&path), mode(&reference), "unnamed: {unnamed}");
        }
    }

    /// Overwriting links under a temporary name and renames it over the
    /// output: afterwards only the output is there, with the new data.
    #[test]
    fn overwriting_an_unnamed_output_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"old").unwrap();
        let writer = ArrayWriter::create(&path, spec(3).overwrite(true)).unwrap();
        assert!(matches!(writer.staging, Staging::Unnamed), "{writer:?}");
        writer.write_rows(0, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        writer.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[test]
    fn no_space_errors_name_the_output_and_its_size() {
        let meta = ArrayMeta::new(
            Path::new("o.npy"),
            vec![10],
            DType::F64,
            ByteOrder::NATIVE,
            Layout::C,
            Format::Raw,
            0,
        )
        .unwrap();
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            let err = output_error(
                Path::new("dir/o.npy"),
                &meta,
                "allocate",
                io::Error::from_raw_os_error(code),
            );
            assert_eq!(err.kind(), "no_space", "{err}");
            let text = err.to_string();
            assert!(
                text.starts_with(
                    "dir/o.npy: no space for the output (80 bytes): cannot allocate: "
                ),
                "{text}"
            );
        }
        let err = output_error(
            Path::new("o.npy"),
            &meta,
            "write",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert_eq!(err.kind(), "io", "{err}");
    }
}
