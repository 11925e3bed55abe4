//! Writing arrays: `.npy` or raw outputs, filled by blocks from several
//! threads, finished atomically.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::ArrayView2;
use tempfile::TempPath;

use crate::dtype::{ByteOrder, DType, Element};
use crate::error::{Error, Result};
use crate::meta::{ArrayMeta, Format, Layout};
use crate::npy;
use crate::source::{parent_dir, swap_in_place};

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
/// Data goes to a temporary file in the destination directory; blocks may
/// be written at their row offsets in any order, from several threads at
/// once (`ArrayWriter` is `Sync`; writes are positioned, `pwrite`).
/// [`ArrayWriter::finish`] checks that every row was written, syncs, and
/// renames the file into place. A writer dropped before `finish` (an error,
/// a panic, an abandoned run) deletes its temporary file: nothing ever
/// appears under the final name half-written.
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
    temp: TempPath,
    file: File,
    meta: ArrayMeta,
    spec: OutputSpec,
    written: Mutex<Coverage>,
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

/// Sizes `file` to `len` bytes, allocating the disk space up front where
/// the filesystem can (`fallocate`): a full disk is then an error here,
/// before any work, rather than in the middle of a run — and writing into
/// allocated blocks is faster on ext4 than extending a sparse file.
/// Filesystems without `fallocate` get a sparse file (`set_len`).
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
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

/// Elements converted per chunk when a block must be byte-swapped or made
/// contiguous before writing: bounds the writer's scratch memory to 1 MiB.
const CONVERT_CHUNK_BYTES: usize = 1 << 20;

impl ArrayWriter {
    /// Creates the temporary output next to `path`, writes its header and
    /// sizes it for the whole array.
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when `path` exists and overwriting is off;
    /// [`Error::Overflow`] for a shape too large; [`Error::Io`] when the
    /// directory is not writable or the disk is full.
    pub fn create(path: impl AsRef<Path>, spec: OutputSpec) -> Result<ArrayWriter> {
        let path = path.as_ref();
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
        let stem = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = tempfile::Builder::new()
            .prefix(&format!(".{stem}."))
            .suffix(".outcore-tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, "create a temporary output in", e))?;
        let (file, temp) = named.into_parts();
        let io_err = |action, e| Error::io(&temp, action, e);
        file.write_all_at(&header, 0)
            .map_err(|e| io_err("write header", e))?;
        preallocate(&file, meta.data_offset + meta.nbytes()).map_err(|e| io_err("allocate", e))?;
        Ok(ArrayWriter {
            path: path.to_path_buf(),
            temp,
            file,
            meta,
            spec,
            written: Mutex::new(Coverage::default()),
        })
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
            .map_err(|e| Error::io(&self.temp, "write", e))
    }

    fn mismatch(&self, reason: String) -> Error {
        Error::WriteMismatch {
            path: self.path.clone(),
            reason,
        }
    }

    /// Finishes the output: checks every row was written, syncs the data
    /// (unless turned off), renames the temporary file to the final path
    /// and syncs the directory. Returns the output's metadata.
    ///
    /// # Errors
    ///
    /// [`Error::WriteMismatch`] when not every row was written;
    /// [`Error::OutputExists`] when a file appeared at the path meanwhile
    /// and overwriting is off; [`Error::Io`] when syncing or renaming fails.
    /// On error the temporary file is removed.
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
            self.file
                .sync_all()
                .map_err(|e| Error::io(&self.temp, "sync", e))?;
        }
        drop(self.file);
        let result = if self.spec.overwrite {
            self.temp.persist(&self.path)
        } else {
            self.temp.persist_noclobber(&self.path)
        };
        result.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists {
                    path: self.path.clone(),
                }
            } else {
                Error::io(&self.path, "rename into place", e.error)
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
