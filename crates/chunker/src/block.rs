//! Row blocks: how an array is split, and the data of one block.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use ndarray::ArrayView2;

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::map::Window;

/// How an array of `rows` rows is split into contiguous blocks of
/// `block_rows` rows (the last block may be shorter).
///
/// ```
/// use outcore_chunker::BlockPlan;
///
/// let plan = BlockPlan::new(10, 4);
/// assert_eq!(plan.len(), 3);
/// assert_eq!(plan.iter().collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    rows: u64,
    block_rows: u64,
}

impl BlockPlan {
    /// Splits `rows` rows into blocks of `block_rows` rows; a `block_rows`
    /// of 0 is taken as 1.
    pub fn new(rows: u64, block_rows: u64) -> BlockPlan {
        BlockPlan {
            rows,
            block_rows: block_rows.max(1),
        }
    }

    /// Splits `rows` rows of `row_bytes` bytes each into blocks of at most
    /// `target_bytes` bytes — but at least one row per block. Rows of zero
    /// bytes all go in one block.
    pub fn from_bytes(rows: u64, row_bytes: usize, target_bytes: u64) -> BlockPlan {
        let block_rows = match row_bytes {
            0 => rows.max(1),
            n => (target_bytes / n as u64).max(1),
        };
        BlockPlan::new(rows, block_rows)
    }

    /// Total rows covered.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows per block (all blocks but the last).
    pub fn block_rows(&self) -> u64 {
        self.block_rows
    }

    /// Number of blocks (0 for an array of no rows).
    pub fn len(&self) -> usize {
        self.rows.div_ceil(self.block_rows) as usize
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The row range of block `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<Range<u64>> {
        let start = (index as u64).checked_mul(self.block_rows)?;
        if start >= self.rows {
            return None;
        }
        Some(start..start + (self.rows - start).min(self.block_rows))
    }

    /// The row ranges of all blocks, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Range<u64>> + Clone + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index below len"))
    }
}

/// A byte buffer aligned to 8 bytes, so it can be viewed as any element
/// type. Backed by `u64` words; the byte length need not be a multiple of 8.
#[derive(Clone, Debug, Default)]
pub(crate) struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// This buffer resized to `len` bytes, keeping its allocation when it
    /// is large enough (the bytes' values are unspecified).
    pub(crate) fn reuse(mut self, len: usize) -> AlignedBuf {
        self.words.resize(len.div_ceil(8), 0);
        self.len = len;
        self
    }

    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// The memory of a block read into an owned buffer, kept to read another
/// block into: reusing it avoids allocating (and the allocator's slack)
/// for every block. See [`Block::into_buffer`] and
/// [`ArrayFile::read_rows_into`](crate::ArrayFile::read_rows_into).
#[derive(Debug, Default)]
pub struct BlockBuffer(pub(crate) AlignedBuf);

impl BlockBuffer {
    /// Bytes the buffer can hold without growing.
    pub fn capacity(&self) -> usize {
        self.0.words.capacity() * 8
    }
}

/// Bytes in memory that an [`ArrayFile`](crate::ArrayFile) reads in place:
/// a `Vec<u8>`, an `Arc<[u8]>`, or any owner of a buffer (such as a NumPy
/// array held by the Python bindings). The bytes must not change while a
/// run reads them.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync + std::panic::RefUnwindSafe>;

/// Where a block's bytes live.
enum Data {
    /// A read-only window mapped over the input file, guarded against
    /// SIGBUS; `expected_len` is the file's length when it was opened.
    Mapped { window: Window, expected_len: u64 },
    /// An owned, aligned copy (byte-swapped, gathered or unaligned input).
    Owned(AlignedBuf),
    /// A range of an in-memory array's bytes, read in place.
    Memory {
        bytes: SharedBytes,
        range: Range<usize>,
    },
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Data::Mapped {
                window,
                expected_len,
            } => f
                .debug_struct("Mapped")
                .field("window", window)
                .field("expected_len", expected_len)
                .finish(),
            Data::Owned(buf) => f.debug_tuple("Owned").field(buf).finish(),
            Data::Memory { range, .. } => f.debug_struct("Memory").field("range", range).finish(),
        }
    }
}

/// The data of a run of rows, in native byte order and C order.
///
/// A block is viewable as an `ndarray::ArrayView2<T>` of `rows × row_len`.
/// It owns its memory — a mapped window of the file or an aligned copy —
/// and releases it when dropped, so pages leave the process's resident set
/// as soon as the block is done with.
///
/// **A mapped block must be [checked](Block::check) after its bytes were
/// read and before the results are trusted**: if another process
/// truncates the file while the window is mapped, the lost bytes read as
/// zeros (instead of killing the process with SIGBUS) and `check` reports
/// [`Error::Truncated`].
#[derive(Debug)]
pub struct Block {
    path: Arc<Path>,
    start_row: u64,
    rows: usize,
    row_len: usize,
    dtype: DType,
    data: Data,
}

impl Block {
    pub(crate) fn mapped(
        path: Arc<Path>,
        start_row: u64,
        rows: usize,
        row_len: usize,
        dtype: DType,
        window: Window,
        expected_len: u64,
    ) -> Block {
        debug_assert_eq!(window.bytes().len(), rows * row_len * dtype.itemsize());
        Block {
            path,
            start_row,
            rows,
            row_len,
            dtype,
            data: Data::Mapped {
                window,
                expected_len,
            },
        }
    }

    pub(crate) fn owned(
        path: Arc<Path>,
        start_row: u64,
        rows: usize,
        row_len: usize,
        dtype: DType,
        buf: AlignedBuf,
    ) -> Block {
        debug_assert_eq!(buf.len, rows * row_len * dtype.itemsize());
        Block {
            path,
            start_row,
            rows,
            row_len,
            dtype,
            data: Data::Owned(buf),
        }
    }

    pub(crate) fn in_memory(
        path: Arc<Path>,
        start_row: u64,
        rows: usize,
        row_len: usize,
        dtype: DType,
        bytes: SharedBytes,
        range: Range<usize>,
    ) -> Block {
        debug_assert_eq!(range.len(), rows * row_len * dtype.itemsize());
        Block {
            path,
            start_row,
            rows,
            row_len,
            dtype,
            data: Data::Memory { bytes, range },
        }
    }

    /// The first row of the block in the array.
    pub fn start_row(&self) -> u64 {
        self.start_row
    }

    /// Number of rows in the block.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The block's rows as a range of array rows.
    pub fn row_range(&self) -> Range<u64> {
        self.start_row..self.start_row + self.rows as u64
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The path of the file the block was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of data in the block.
    pub fn nbytes(&self) -> usize {
        self.rows * self.row_len * self.dtype.itemsize()
    }

    /// The block's owned buffer, for reading another block into; `None`
    /// for a mapped block (unmapped here).
    pub fn into_buffer(self) -> Option<BlockBuffer> {
        match self.data {
            Data::Owned(buf) => Some(BlockBuffer(buf)),
            Data::Mapped { .. } | Data::Memory { .. } => None,
        }
    }

    /// True when the block is a window mapped over the file (no copy was made).
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Data::Mapped { .. })
    }

    /// The raw bytes, native byte order, C order.
    ///
    /// For a mapped block, bytes lost to a concurrent truncation of the
    /// file read as zeros; [`Block::check`] tells whether that happened.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped { window, .. } => window.bytes(),
            Data::Owned(buf) => buf.as_bytes(),
            Data::Memory { bytes, range } => &(**bytes).as_ref()[range.clone()],
        }
    }

    /// Confirms that the bytes read from the block were the file's: call
    /// it **after** the last read of the block's data (through
    /// [`as_bytes`](Block::as_bytes), [`as_slice`](Block::as_slice) or
    /// [`view`](Block::view)) and before trusting anything computed from
    /// them.
    ///
    /// A mapped window whose file was truncated by another process while
    /// it was mapped does not raise SIGBUS: the bytes past the new end of
    /// the file read as zeros, and this method reports it. An owned block
    /// is a complete copy made when it was read, so it always passes.
    ///
    /// Cost: an atomic load and one `fstat` (about a microsecond) for a
    /// mapped block; nothing for an owned one. Calling it again is allowed
    /// (and re-checks).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], naming the path, the file's expected and
    /// current lengths and the block's rows, when the file is now shorter
    /// than the block's end (this also catches the bytes of a partly valid
    /// last page, which read as zeros without a fault); [`Error::Io`] when
    /// the file cannot be inspected, or when a read of the window faulted
    /// although the file is long enough (a device error, or a file
    /// truncated and extended again).
    pub fn check(&self) -> Result<()> {
        let Data::Mapped {
            window,
            expected_len,
        } = &self.data
        else {
            return Ok(());
        };
        // Read the flag first: a fault seen here happened before the
        // length below was taken.
        let faulted = window.faulted();
        let actual_len = window
            .file_len()
            .map_err(|e| Error::io(&self.path, "stat", e))?;
        if actual_len < window.end() {
            return Err(Error::Truncated {
                path: self.path.to_path_buf(),
                expected_len: *expected_len,
                actual_len,
                start_row: self.start_row,
                end_row: self.start_row + self.rows as u64,
            });
        }
        if faulted {
            return Err(Error::io(
                &self.path,
                "read mapped window",
                std::io::Error::other(format!(
                    "reading rows {}..{} raised SIGBUS although the file holds {actual_len} \
                     bytes (a device error, or the file was truncated and extended again); \
                     the bytes lost read as zeros",
                    self.start_row,
                    self.start_row + self.rows as u64
                )),
            ));
        }
        Ok(())
    }

    /// The elements as a flat slice in C order.
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] when `T` is not the block's dtype;
    /// [`Error::InvalidBool`] when a `bool` block holds a byte other than 0 or 1.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if T::DATA_TYPE != self.dtype {
            return Err(Error::TypeMismatch {
                path: self.path.to_path_buf(),
                requested: T::DATA_TYPE.name(),
                actual: self.dtype.name(),
            });
        }
        // Mapped windows are only made at offsets aligned for the dtype and
        // owned buffers are 8-aligned, so the only failure left is an
        // invalid bit pattern (a bool byte other than 0 or 1).
        bytemuck::checked::try_cast_slice(self.as_bytes()).map_err(|_| Error::InvalidBool {
            path: self.path.to_path_buf(),
            start_row: self.start_row,
            end_row: self.start_row + self.rows as u64,
        })
    }

    /// The block as a `rows × row_len` array view.
    ///
    /// # Errors
    ///
    /// As [`Block::as_slice`].
    pub fn view<T: Element>(&self) -> Result<ArrayView2<'_, T>> {
        let slice = self.as_slice::<T>()?;
        ArrayView2::from_shape((self.rows, self.row_len), slice).map_err(|_| Error::Overflow {
            path: self.path.to_path_buf(),
            shape: vec![self.rows as u64, self.row_len as u64],
            itemsize: self.dtype.itemsize(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_row_once() {
        for rows in 0..40u64 {
            for block_rows in 0..12u64 {
                let plan = BlockPlan::new(rows, block_rows);
                let mut next = 0;
                for r in plan.iter() {
                    assert_eq!(r.start, next);
                    assert!(r.end > r.start);
                    assert!(r.end - r.start <= block_rows.max(1));
                    next = r.end;
                }
                assert_eq!(next, rows);
                assert_eq!(plan.get(plan.len()), None);
            }
        }
    }

    #[test]
    fn plan_from_bytes() {
        assert_eq!(BlockPlan::from_bytes(100, 8, 64).block_rows(), 8);
        assert_eq!(BlockPlan::from_bytes(100, 1000, 64).block_rows(), 1);
        assert_eq!(BlockPlan::from_bytes(100, 0, 64).block_rows(), 100);
        assert_eq!(BlockPlan::from_bytes(0, 0, 64).len(), 0);
    }

    #[test]
    fn bool_blocks_reject_bad_bytes() {
        let mut buf = AlignedBuf::zeroed(3);
        buf.as_bytes_mut().copy_from_slice(&[0, 1, 2]);
        let block = Block::owned(Path::new("b.npy").into(), 5, 3, 1, DType::Bool, buf);
        let err = block.as_slice::<bool>().unwrap_err();
        assert_eq!(err.kind(), "invalid_bool");
        assert_eq!(block.as_slice::<u8>().unwrap_err().kind(), "type_mismatch");
        block.check().unwrap();
    }
}
