//! Opening on-disk arrays and reading row blocks from them.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::{AlignedBuf, Block, BlockBuffer, BlockPlan};
use crate::dtype::{ByteOrder, DType};
use crate::error::{Error, Result};
use crate::map::map_window;
use crate::meta::{ArrayMeta, Format, Layout};
use crate::npy;

/// How block data is brought into memory.
///
/// By default, [`ReadMode::Mmap`]: measured on the target machines, reading
/// through a mapped window is 1.7–2.4× faster than `pread` into a buffer
/// (see `docs/io.md`). Blocks that need converting (non-native byte order,
/// Fortran layout, or an offset misaligned for the dtype) are always read
/// with `pread` into an aligned buffer.
///
/// A mapped window is guarded against the file being truncated while it is
/// mapped (no SIGBUS: the lost bytes read as zeros and
/// [`Block::check`](crate::Block::check) reports [`Error::Truncated`]), so
/// readers must check each block after reading it. See `docs/io.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// Map a window over each block's bytes; unmapped when the block drops.
    #[default]
    Mmap,
    /// Copy each block into an owned buffer with `pread`.
    Pread,
}

/// How to interpret a raw binary file, as `np.memmap(path, dtype, offset=,
/// shape=)` would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSpec {
    /// Element type.
    pub dtype: DType,
    /// Byte order of the elements.
    pub byte_order: ByteOrder,
    /// The shape; `None` means 1-d, as many elements as the file holds
    /// after the offset (like `np.memmap` without `shape`).
    pub shape: Option<Vec<u64>>,
    /// Bytes to skip at the start of the file.
    pub offset: u64,
    /// The element order: C (row-major, what `arr.tofile()` writes for a
    /// C-contiguous array) or Fortran (the first axis varying fastest).
    pub layout: Layout,
}

impl RawSpec {
    /// A native-order, offset-0 spec of `dtype` with the given shape.
    pub fn new(dtype: DType, shape: Vec<u64>) -> RawSpec {
        RawSpec {
            dtype,
            byte_order: ByteOrder::NATIVE,
            shape: Some(shape),
            offset: 0,
            layout: Layout::C,
        }
    }
}

/// An array on disk, opened: its metadata and a handle to read row blocks.
///
/// Opening reads and checks only the header; nothing else is read until a
/// block is. `ArrayFile` is `Sync`: several threads may read blocks at once.
///
/// ```no_run
/// use outcore_chunker::{ArrayFile, BlockPlan};
///
/// let file = ArrayFile::open("x.npy")?;
/// let plan = BlockPlan::from_bytes(file.meta().rows(), file.meta().row_bytes(), 8 << 20);
/// let mut total = 0.0;
/// for rows in plan.iter() {
///     let block = file.read_rows(rows)?;
///     total += block.view::<f64>()?.sum();
///     block.check()?; // the file was not truncated under the block
/// }
/// # Ok::<(), outcore_chunker::Error>(())
/// ```
#[derive(Debug)]
pub struct ArrayFile {
    path: Arc<Path>,
    /// Shared with the mapped windows, which re-read its length.
    file: Arc<File>,
    meta: ArrayMeta,
    mode: ReadMode,
}

impl ArrayFile {
    /// Opens a NumPy `.npy` file (format 1.0, 2.0 or 3.0).
    ///
    /// # Errors
    ///
    /// An [`Error`] naming the path for an unreadable file, a bad magic
    /// string or version, a malformed header, an unsupported dtype, a shape
    /// that overflows, or data whose size does not match the shape.
    pub fn open(path: impl AsRef<Path>) -> Result<ArrayFile> {
        let path = path.as_ref();
        let (file, len) = open_file(path)?;
        let meta = npy::read_meta(path, &file, len)?;
        Ok(ArrayFile::from_parts(path, file, meta))
    }

    /// Opens a raw binary file described by `spec`.
    ///
    /// # Errors
    ///
    /// An [`Error`] naming the path for an unreadable file, an offset past
    /// the end, a size that is not a whole number of elements (without a
    /// shape) or does not match the shape exactly.
    pub fn open_raw(path: impl AsRef<Path>, spec: &RawSpec) -> Result<ArrayFile> {
        let path = path.as_ref();
        let (file, len) = open_file(path)?;
        if spec.offset > len {
            return Err(Error::OffsetPastEnd {
                path: path.to_path_buf(),
                offset: spec.offset,
                len,
            });
        }
        let available = len - spec.offset;
        let itemsize = spec.dtype.itemsize() as u64;
        let shape = match &spec.shape {
            Some(shape) => shape.clone(),
            None => {
                if !available.is_multiple_of(itemsize) {
                    return Err(Error::BadRawSpec {
                        path: path.to_path_buf(),
                        reason: format!(
                            "{available} bytes after offset {} are not a whole number of \
                             {}-byte {} elements",
                            spec.offset, itemsize, spec.dtype
                        ),
                    });
                }
                vec![available / itemsize]
            }
        };
        let meta = ArrayMeta::new(
            path,
            shape,
            spec.dtype,
            spec.byte_order,
            spec.layout,
            Format::Raw,
            spec.offset,
        )?;
        if meta.nbytes() != available {
            return Err(Error::SizeMismatch {
                path: path.to_path_buf(),
                shape: meta.shape.clone(),
                dtype: meta.dtype.name(),
                offset: spec.offset,
                expected: meta.nbytes(),
                actual: available,
            });
        }
        Ok(ArrayFile::from_parts(path, file, meta))
    }

    /// Reads a native, C-order raw array from an already open file: for
    /// files without a name, such as the engine's unlinked spill files.
    /// `label` stands in for the path in errors and reports.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be inspected;
    /// [`Error::SizeMismatch`] when it is shorter than `offset` plus the
    /// array's bytes (it may be longer: spill files hold several arrays).
    pub fn from_file(
        file: File,
        label: impl AsRef<Path>,
        dtype: DType,
        shape: Vec<u64>,
        offset: u64,
    ) -> Result<ArrayFile> {
        let label = label.as_ref();
        let len = file
            .metadata()
            .map_err(|e| Error::io(label, "stat", e))?
            .len();
        let meta = ArrayMeta::new(
            label,
            shape,
            dtype,
            ByteOrder::NATIVE,
            Layout::C,
            Format::Raw,
            offset,
        )?;
        if offset
            .checked_add(meta.nbytes())
            .is_none_or(|end| end > len)
        {
            return Err(Error::SizeMismatch {
                path: label.to_path_buf(),
                shape: meta.shape.clone(),
                dtype: meta.dtype.name(),
                offset,
                expected: meta.nbytes(),
                actual: len.saturating_sub(offset),
            });
        }
        Ok(ArrayFile::from_parts(label, file, meta))
    }

    fn from_parts(path: &Path, file: File, meta: ArrayMeta) -> ArrayFile {
        ArrayFile {
            path: Arc::from(path),
            file: Arc::new(file),
            meta,
            mode: ReadMode::default(),
        }
    }

    /// Chooses how blocks are read. By default, [`ReadMode::Mmap`].
    pub fn with_read_mode(mut self, mode: ReadMode) -> ArrayFile {
        self.mode = mode;
        self
    }

    /// The read mode in use.
    pub fn read_mode(&self) -> ReadMode {
        self.mode
    }

    /// The array's metadata.
    pub fn meta(&self) -> &ArrayMeta {
        &self.meta
    }

    /// The path the array was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Splits the array into blocks of at most `target_bytes` bytes (at
    /// least one row each).
    pub fn plan(&self, target_bytes: u64) -> BlockPlan {
        BlockPlan::from_bytes(self.meta.rows(), self.meta.row_bytes(), target_bytes)
    }

    /// Reads rows `rows.start .. rows.end` as a block in native byte order
    /// and C order. Touches only those rows' bytes.
    ///
    /// A mapped block must be checked with [`Block::check`] once its bytes
    /// were read: that is when a truncation of the file during the read is
    /// reported.
    ///
    /// # Errors
    ///
    /// [`Error::RowsOutOfRange`] for rows outside the array;
    /// [`Error::Truncated`] when the file is now too short for the rows
    /// (it was truncated after it was opened); [`Error::Io`] when the read
    /// or the map fails.
    pub fn read_rows(&self, rows: Range<u64>) -> Result<Block> {
        self.read_rows_into(rows, None)
    }

    /// As [`ArrayFile::read_rows`], reading into `buffer` (a previous
    /// block's, from [`Block::into_buffer`]) when the block needs a copy.
    ///
    /// # Errors
    ///
    /// As [`ArrayFile::read_rows`].
    pub fn read_rows_into(&self, rows: Range<u64>, buffer: Option<BlockBuffer>) -> Result<Block> {
        let alloc = |len: usize| match buffer {
            Some(BlockBuffer(b)) => b.reuse(len),
            None => AlignedBuf::zeroed(len),
        };
        let meta = &self.meta;
        if rows.start > rows.end || rows.end > meta.rows() {
            return Err(Error::RowsOutOfRange {
                path: self.path.to_path_buf(),
                start: rows.start,
                end: rows.end,
                rows: meta.rows(),
            });
        }
        let n = usize::try_from(rows.end - rows.start).map_err(|_| self.too_big(&rows))?;
        let row_len = meta.row_len();
        let itemsize = meta.dtype.itemsize();
        let nbytes = n
            .checked_mul(meta.row_bytes())
            .ok_or_else(|| self.too_big(&rows))?;
        let block = |buf| Block::owned(self.path.clone(), rows.start, n, row_len, meta.dtype, buf);
        if nbytes == 0 {
            return Ok(block(AlignedBuf::default()));
        }
        if meta.layout == Layout::Fortran && meta.ndim() > 1 {
            let mut buf = alloc(nbytes);
            self.gather_fortran(rows.start, n, buf.as_bytes_mut())
                .map_err(|e| self.read_error(&rows, e))?;
            self.to_native(buf.as_bytes_mut());
            return Ok(block(buf));
        }
        let offset = meta.data_offset + rows.start * meta.row_bytes() as u64;
        // One-byte elements have no byte order to convert.
        let direct = self.mode == ReadMode::Mmap
            && (meta.byte_order.is_native() || itemsize == 1)
            && offset.is_multiple_of(itemsize as u64);
        if direct {
            // A file truncated since it was opened is refused here rather
            // than mapped (one fstat, well under a microsecond); a
            // truncation after this point is the guard's to catch.
            let len = self.file_len()?;
            if len < offset + nbytes as u64 {
                return Err(self.truncated(&rows, len));
            }
            // `None`: the window could not be guarded; read it instead.
            if let Some(window) = map_window(&self.file, offset, nbytes)
                .map_err(|e| Error::io(&self.path, "map", e))?
            {
                return Ok(Block::mapped(
                    self.path.clone(),
                    rows.start,
                    n,
                    row_len,
                    meta.dtype,
                    window,
                    self.expected_len(),
                ));
            }
        }
        let mut buf = alloc(nbytes);
        self.file
            .read_exact_at(buf.as_bytes_mut(), offset)
            .map_err(|e| self.read_error(&rows, e))?;
        self.to_native(buf.as_bytes_mut());
        Ok(block(buf))
    }

    /// The length the array needs: data offset plus data bytes.
    fn expected_len(&self) -> u64 {
        self.meta.data_offset + self.meta.nbytes()
    }

    /// The file's current length.
    fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, "stat", e))?
            .len())
    }

    fn truncated(&self, rows: &Range<u64>, actual_len: u64) -> Error {
        Error::Truncated {
            path: self.path.to_path_buf(),
            expected_len: self.expected_len(),
            actual_len,
            start_row: rows.start,
            end_row: rows.end,
        }
    }

    /// The error for a failed `pread` of `rows`: a read cut short because
    /// the file shrank is [`Error::Truncated`], anything else [`Error::Io`].
    fn read_error(&self, rows: &Range<u64>, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof
            && let Ok(len) = self.file_len()
        {
            return self.truncated(rows, len);
        }
        Error::io(&self.path, "read", e)
    }

    fn too_big(&self, rows: &Range<u64>) -> Error {
        Error::RowsOutOfRange {
            path: self.path.to_path_buf(),
            start: rows.start,
            end: rows.end,
            rows: self.meta.rows(),
        }
    }

    /// Converts a buffer of file-order elements to native byte order in place.
    fn to_native(&self, bytes: &mut [u8]) {
        if !self.meta.byte_order.is_native() && self.meta.dtype.itemsize() > 1 {
            swap_in_place(bytes, self.meta.dtype.itemsize());
        }
    }

    /// Reads rows `start .. start + n` of a Fortran-ordered array into `out`
    /// in C order. In Fortran order the row index varies fastest, so each
    /// trailing index holds a contiguous run of rows: one read per trailing
    /// index, scattered into place.
    fn gather_fortran(&self, start: u64, n: usize, out: &mut [u8]) -> io::Result<()> {
        let meta = &self.meta;
        let isz = meta.dtype.itemsize();
        let row_len = meta.row_len();
        let rows_total = meta.rows();
        let trailing = &meta.shape[1..];
        // C-order strides of the trailing axes (in elements).
        let mut c_strides = vec![1usize; trailing.len()];
        for i in (0..trailing.len().saturating_sub(1)).rev() {
            c_strides[i] = c_strides[i + 1] * trailing[i + 1] as usize;
        }
        let mut index = vec![0usize; trailing.len()];
        let mut run = vec![0u8; n * isz];
        for f in 0..row_len {
            // `index` is the trailing multi-index of Fortran position `f`.
            let c: usize = index.iter().zip(&c_strides).map(|(i, s)| i * s).sum();
            let offset = meta.data_offset + (start + rows_total * f as u64) * isz as u64;
            self.file.read_exact_at(&mut run, offset)?;
            for (r, elem) in run.chunks_exact(isz).enumerate() {
                let dst = (r * row_len + c) * isz;
                out[dst..dst + isz].copy_from_slice(elem);
            }
            for (axis, i) in index.iter_mut().enumerate() {
                *i += 1;
                if (*i as u64) < trailing[axis] {
                    break;
                }
                *i = 0;
            }
        }
        Ok(())
    }
}

fn open_file(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let md = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if md.is_dir() {
        return Err(Error::io(
            path,
            "open",
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    Ok((file, md.len()))
}

/// Reverses the bytes of each `itemsize`-byte element of `bytes` in place.
pub(crate) fn swap_in_place(bytes: &mut [u8], itemsize: usize) {
    // Typed loops so the compiler emits vector byte shuffles.
    match itemsize {
        2 => {
            for c in bytes.chunks_exact_mut(2) {
                let v = u16::from_ne_bytes([c[0], c[1]]).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        4 => {
            for c in bytes.chunks_exact_mut(4) {
                let v = u32::from_ne_bytes(c.try_into().expect("4 bytes")).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        8 => {
            for c in bytes.chunks_exact_mut(8) {
                let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        _ => {}
    }
}

/// The path of an output file's temporary sibling is derived from this.
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
