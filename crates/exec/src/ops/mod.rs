//! Out-of-core operators that cannot stream row by row: external sort,
//! exact quantiles, cumulative sums, and spilling an intermediate.
//!
//! They run before the ordinary passes of a computation (see
//! `lower`): each reads an [`ArrayFile`] — a source, or an
//! intermediate first spilled to an unnamed temporary file — and leaves
//! its result either in a spill file (read back as an ordinary row-block
//! source), in the final output, or, for quantiles, in memory.

pub(crate) mod cumsum;
pub(crate) mod kind;
pub(crate) mod quantile;
pub(crate) mod sort;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use outcore_chunker::{ArrayFile, ArrayWriter, Block, BlockBuffer, DType};
use outcore_spill::{Consumer, Reservation, SpillFile};

use crate::error::{Error, Result};
use crate::runtime::{Runtime, Sizing};

/// A page: mapped windows are charged their size plus a page on each side.
pub(crate) const PAGE: u64 = 4096;

/// Where an operator's row-major output goes.
pub(crate) enum RowSink<'a> {
    /// The final output file.
    Writer(&'a ArrayWriter),
    /// A spill file, raw, native, C order, from byte 0.
    Spill(&'a SpillFile),
}

impl RowSink<'_> {
    /// Writes whole rows of native bytes from `first_row`.
    pub(crate) fn write(&self, first_row: u64, row_bytes: usize, bytes: &mut [u8]) -> Result<()> {
        match self {
            RowSink::Writer(w) => Ok(w.write_native_rows(first_row, bytes)?),
            RowSink::Spill(f) => Ok(f.write_at(first_row * row_bytes as u64, bytes)?),
        }
    }
}

/// A spilled array: the spill file (which holds the disk space and quota)
/// and the array source reading it.
pub(crate) struct Spilled {
    /// Holds the disk space and the quota while the array is read.
    _file: SpillFile,
    pub(crate) array: Arc<ArrayFile>,
}

impl Spilled {
    /// Wraps a spill file holding a `dtype` array of `shape` from byte 0.
    pub(crate) fn new(file: SpillFile, dtype: DType, shape: Vec<u64>) -> Result<Spilled> {
        let label = Path::new(file.dir()).join("<spill>");
        let fd = file.file().try_clone().map_err(|error| Error::Io {
            path: label.clone(),
            error,
        })?;
        let array = ArrayFile::from_file(fd, label, dtype, shape, 0)?;
        Ok(Spilled {
            _file: file,
            array: Arc::new(array),
        })
    }
}

/// The memory of one block in flight in [`stream_file`].
pub(crate) struct FileSlot {
    _reserved: Vec<Reservation>,
    buffer: Option<BlockBuffer>,
}

impl FileSlot {
    pub(crate) fn new(reserved: Vec<Reservation>) -> FileSlot {
        FileSlot {
            _reserved: reserved,
            buffer: None,
        }
    }
}

/// Streams `src` in blocks of `block_rows` rows: a reader thread reads
/// (one block per slot), the engine's workers run `work`, and `merge`
/// sees the results in block order on the calling thread. Returns the
/// bytes read. Stops between blocks when the engine is cancelled
/// ([`Error::Cancelled`] naming `stage`).
pub(crate) fn stream_file<P: Send>(
    rt: &Runtime,
    stage: &'static str,
    src: &ArrayFile,
    block_rows: u64,
    slots: Vec<FileSlot>,
    work: impl Fn(Range<u64>, &Block) -> Result<P> + Send + Sync,
    mut merge: impl FnMut(Range<u64>, P) -> Result<()>,
) -> Result<u64> {
    let plan = outcore_chunker::BlockPlan::new(src.meta().rows(), block_rows.max(1));
    let read_bytes = AtomicU64::new(0);
    let read = |i: usize, mut slot: FileSlot| -> Result<(Range<u64>, Block, FileSlot)> {
        let rows = plan.get(i).expect("block index below len");
        let block = src.read_rows_into(rows.clone(), slot.buffer.take())?;
        Ok((rows, block, slot))
    };
    let work = |_i: usize, (rows, block, mut slot): (Range<u64>, Block, FileSlot)| {
        let out = work(rows.clone(), &block)?;
        // Truncated while mapped: the zeros read are not trusted.
        block.check()?;
        read_bytes.fetch_add(block.nbytes() as u64, Ordering::Relaxed);
        rt.advance(block.nbytes() as u64);
        slot.buffer = block.into_buffer();
        Ok(((rows, out), slot))
    };
    crate::stream::run(
        rt.pool(),
        rt.cancel_token(),
        stage,
        plan.len(),
        slots,
        read,
        work,
        |_i, (rows, out)| merge(rows, out),
    )?;
    Ok(read_bytes.load(Ordering::Relaxed))
}

/// Reserves `fixed` parts plus `slots` slots of `parts`, all at once (or
/// waiting until engines sharing the budget release enough, never holding
/// a part while waiting).
pub(crate) fn reserve_slots(
    rt: &Runtime,
    fixed: &[(Consumer, u64)],
    parts: &[(Consumer, u64)],
    slots: usize,
) -> Result<(Vec<Reservation>, Vec<FileSlot>)> {
    let sizing = Sizing {
        block_rows: 0,
        slots,
        fixed: fixed.to_vec(),
        slot: parts.to_vec(),
        block_bytes: 0,
        minimum: 0,
    };
    let (fixed, slots) = rt.reserve(&sizing)?;
    Ok((fixed, slots.into_iter().map(FileSlot::new).collect()))
}

/// The error for a limit that cannot hold an operator's smallest unit.
pub(crate) fn too_small(rt: &Runtime, row_bytes: u64, minimum: u64, what: &str) -> Error {
    Error::LimitTooSmall {
        limit: rt.budget().limit(),
        row_bytes,
        minimum,
        detail: what.to_string(),
    }
}
