//! The pass loop: one streaming pass over the row blocks of its inputs.
//! A reader stage reads each block into a memory slot, the workers run
//! the fused programs, the `map_blocks` stages and the reduction kernels
//! over it tile by tile and write its streamed outputs, and the calling
//! thread merges the kernels' states in block order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use outcore_chunker::{ArrayWriter, Block, BlockBuffer, with_dtype};
use outcore_kernels::cast::{bytes_to_array, bytes_view, cast_array, reshape};
use outcore_kernels::eval::{BlockInputs, Machine, TILE_ELEMS, array_view2, store_bytes};
use outcore_kernels::{AnyArray, AnyView, Collector, State};
use outcore_spill::{Reservation, SpillFile};

use crate::compile::{Input, NodeId, Pass, PassRequest, Stage};
use crate::error::{Error, Result};
use crate::report::RunReport;
use crate::runtime::{Runtime, Sizing};
use crate::stream::catch_user;

/// Where a streamed output of a pass goes.
pub(crate) enum Dest {
    /// The run's output file.
    Write(Arc<ArrayWriter>),
    /// A spill file (a slot).
    Spill(Arc<SpillFile>),
    /// Returned in memory.
    Collect,
}

/// The memory of one block in flight: its reservations, and the read
/// buffers of the last block that used it (reused, so copied blocks do
/// not allocate — nor leave the allocator's slack — block after block).
struct Slot {
    _reserved: Vec<Reservation>,
    buffers: Vec<Option<BlockBuffer>>,
}

/// One block as read: its source blocks and the memory slot it holds.
struct ReadBlock {
    first_row: u64,
    rows: usize,
    blocks: Vec<Block>,
    slot: Slot,
}

/// A worker's reusable buffers for one pass: the registers of every
/// frame, the output buffers and the conversion buffers of kernels that
/// take another dtype than their input's lane, so blocks allocate nothing.
struct Scratch {
    machines: Vec<Machine>,
    /// 8-aligned output buffers, one per store.
    outs: Vec<Vec<u64>>,
    /// 8-aligned conversion buffers, one per reduction (used by those
    /// with a `view_dtype`).
    converted: Vec<Vec<u64>>,
}

impl Scratch {
    fn new(pass: &Pass) -> Scratch {
        Scratch {
            machines: pass
                .frames
                .iter()
                .map(|f| Machine::new(&f.prog, TILE_ELEMS.max(f.cols)))
                .collect(),
            outs: vec![Vec::new(); pass.stores.len()],
            converted: vec![Vec::new(); pass.reduces.len()],
        }
    }
}

/// One block's results.
struct BlockResult {
    partials: Vec<State>,
    collected: Vec<Option<Collector>>,
}

/// Runs one pass: reads its blocks, computes them on the workers,
/// merges the reductions' states in block order and sends the
/// streamed outputs to `dests`; the reductions' results (and the
/// collected outputs) go into `values`.
#[allow(clippy::too_many_arguments)] // a pass's parts, each used apart
pub(crate) fn run_pass(
    rt: &Runtime,
    step: &str,
    pass: &Pass,
    req: &PassRequest,
    sizing: &Sizing,
    dests: &[Dest],
    values: &mut HashMap<NodeId, AnyArray>,
    report: &mut RunReport,
) -> Result<()> {
    let files = pass
        .sources
        .iter()
        .map(|s| {
            s.file.clone().ok_or_else(|| {
                Error::Invalid(format!("internal: {} is read before it is filled", s.label))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (_fixed, slots) = rt.reserve(sizing)?;
    report.note_reservations(&sizing.by_consumer());
    let plan = outcore_chunker::BlockPlan::new(pass.rows, sizing.block_rows);
    let n = plan.len();
    let bytes_read = AtomicU64::new(0);
    let bar = rt.progress(step, pass.rows * pass.source_row_bytes());

    // Reductions accumulate here, in block order.
    let mut merged: Vec<Option<State>> = (0..pass.reduces.len()).map(|_| None).collect();
    // Collected outputs are sized once: growing by doubling would hold
    // up to twice the result for a moment.
    let mut collected: Vec<Option<Collector>> = pass
        .stores
        .iter()
        .zip(dests)
        .map(|(s, d)| match d {
            Dest::Collect => Some(Collector::with_capacity(
                s.dtype,
                (pass.rows as usize).saturating_mul(pass.frames[s.frame].cols),
            )),
            _ => None,
        })
        .collect();

    let slots: Vec<Slot> = slots
        .into_iter()
        .map(|r| Slot {
            _reserved: r,
            buffers: Vec::new(),
        })
        .collect();
    let read = |i: usize, mut slot: Slot| -> Result<ReadBlock> {
        let rows = plan.get(i).expect("block index below len");
        let mut blocks = Vec::with_capacity(pass.sources.len());
        slot.buffers.resize_with(pass.sources.len(), || None);
        for (src, buf) in files.iter().zip(&mut slot.buffers) {
            blocks.push(src.read_rows_into(rows.clone(), buf.take())?);
        }
        Ok(ReadBlock {
            first_row: rows.start,
            rows: (rows.end - rows.start) as usize,
            blocks,
            slot,
        })
    };
    let scratch = std::sync::Mutex::new(Vec::<Scratch>::new());
    let work = |_i: usize, rb: ReadBlock| -> Result<(BlockResult, Slot)> {
        // At most one scratch per worker thread is ever created.
        let taken = scratch.lock().ok().and_then(|mut v| v.pop());
        let mut s = taken.unwrap_or_else(|| Scratch::new(pass));
        let out = work_block(pass, &rb, dests, &mut s)?;
        // A mapped input truncated while it was read reads as zeros:
        // the block's results are refused, naming the file.
        for b in &rb.blocks {
            b.check()?;
        }
        if let Ok(mut v) = scratch.lock() {
            v.push(s);
        }
        bytes_read.fetch_add(
            rb.blocks.iter().map(|b| b.nbytes() as u64).sum(),
            Ordering::Relaxed,
        );
        let mut slot = rb.slot;
        slot.buffers = rb.blocks.into_iter().map(Block::into_buffer).collect();
        Ok((out, slot))
    };
    let merge = |_i: usize, r: BlockResult| -> Result<()> {
        for (k, p) in r.partials.into_iter().enumerate() {
            match &mut merged[k] {
                // A user kernel's merge may panic.
                Some(acc) => catch_user(|| pass.reduces[k].kernel.merge(acc, p))?,
                slot @ None => *slot = Some(p),
            }
        }
        for (k, block) in r.collected.into_iter().enumerate() {
            if let (Some(acc), Some(block)) = (&mut collected[k], block) {
                acc.append(block);
            }
        }
        bar.inc(sizing.block_rows * pass.source_row_bytes());
        Ok(())
    };
    let streamed = crate::stream::run(
        rt.pool(),
        rt.cancel_token(),
        "blocks of a pass",
        n,
        slots,
        read,
        work,
        merge,
    );
    // Cleared on error too (an interrupted run's error line then
    // stands alone).
    bar.finish();
    streamed?;
    report.blocks += n as u64;
    report.bytes_read += bytes_read.load(Ordering::Relaxed);
    for (k, store) in pass.stores.iter().enumerate() {
        let row_bytes = req.stores[k].0.extent.row_len() as u64 * store.dtype.itemsize() as u64;
        match &dests[k] {
            Dest::Write(_) => report.bytes_written += pass.rows * row_bytes,
            Dest::Spill(_) => report.bytes_spilled += pass.rows * row_bytes,
            Dest::Collect => {
                let e = &req.stores[k].0;
                let shape: Vec<usize> = e.shape().iter().map(|&d| d as usize).collect();
                if let Some(c) = collected[k].take() {
                    let array = c.into_array(&shape).map_err(|err| {
                        Error::Invalid(format!("internal: collected shape: {err}"))
                    })?;
                    values.insert(store.target, array);
                }
            }
        }
    }
    for (k, sink) in pass.reduces.iter().enumerate() {
        let state = match merged[k].take() {
            Some(p) => p,
            None => sink.kernel.init(),
        };
        let results = catch_user(|| sink.kernel.finish(state))??;
        if results.len() != sink.targets.len() {
            return Err(Error::Invalid(format!(
                "internal: a kernel gave {} results for {} requested",
                results.len(),
                sink.targets.len()
            )));
        }
        for ((nodes, dtype), result) in sink.targets.iter().zip(results) {
            let result = if result.dtype() == *dtype {
                result
            } else {
                cast_array(&result, *dtype)
            };
            let result = match &sink.row_shape {
                Some(shape) => reshape(result, shape)?,
                None => result,
            };
            for node in nodes {
                values.insert(*node, result.clone());
            }
        }
    }
    Ok(())
}

/// Computes one block: stages, fused frames, reductions, stores.
fn work_block(
    pass: &Pass,
    rb: &ReadBlock,
    dests: &[Dest],
    scratch: &mut Scratch,
) -> Result<BlockResult> {
    let views: Vec<AnyView<'_>> = rb.blocks.iter().map(block_view).collect::<Result<_>>()?;
    // map_blocks stages, in order.
    let mut stage_out: Vec<AnyArray> = Vec::with_capacity(pass.stages.len());
    for stage in &pass.stages {
        let machine = &mut scratch.machines[stage.frame];
        let result = run_stage(pass, stage, machine, &views, &stage_out, rb)?;
        stage_out.push(result);
    }
    work_frames(pass, rb, &views, &stage_out, dests, scratch)
}

/// Evaluates a `map_blocks` stage's input for the block and calls it.
fn run_stage(
    pass: &Pass,
    stage: &Stage,
    machine: &mut Machine,
    views: &[AnyView<'_>],
    stage_out: &[AnyArray],
    rb: &ReadBlock,
) -> Result<AnyArray> {
    let rows = rb.rows;
    if let Some(src) = stage.direct {
        // The block as read, without a copy.
        let result = catch_user(|| stage.f.call(views[src]))?;
        return check_stage(stage, result, rows);
    }
    {
        let inputs = BlockInputs {
            sources: views,
            blocks: stage_out,
            first_row: rb.first_row,
        };
        let frame = &pass.frames[stage.frame];
        let cols = frame.cols;
        let mut bytes = vec![0u64; (rows * cols * stage.in_dtype.itemsize()).div_ceil(8)];
        let byte_view: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
        for_tiles(rows, cols, |r0, r1| -> Result<()> {
            machine.run(&frame.prog, &inputs, r0, r1, cols)?;
            let isz = stage.in_dtype.itemsize();
            outcore_kernels::eval::store_bytes(
                machine.reg(stage.reg),
                (r1 - r0) * cols,
                stage.in_dtype,
                &mut byte_view[r0 * cols * isz..r1 * cols * isz],
            );
            Ok(())
        })?;
        let input = bytes_to_array(
            &byte_view[..rows * cols * stage.in_dtype.itemsize()],
            stage.in_dtype,
            &[rows as u64, cols as u64],
        )?;
        let result = call_stage(stage, &input)?;
        check_stage(stage, result, rows)
    }
}

/// A `map_blocks` result, if it has the promised dtype and shape.
fn check_stage(stage: &Stage, result: AnyArray, rows: usize) -> Result<AnyArray> {
    if result.shape() != [rows, stage.out_len] || result.dtype() != stage.out_dtype {
        return Err(Error::Shape(format!(
            "map_blocks returned {} {:?} for a block of {rows} rows; expected {} [{rows}, {}]",
            result.dtype(),
            result.shape(),
            stage.out_dtype,
            stage.out_len
        )));
    }
    Ok(result)
}

/// Runs the fused frames, reductions and stores of one block.
fn work_frames(
    pass: &Pass,
    rb: &ReadBlock,
    views: &[AnyView<'_>],
    stage_out: &[AnyArray],
    dests: &[Dest],
    scratch: &mut Scratch,
) -> Result<BlockResult> {
    let rows = rb.rows;
    let inputs = BlockInputs {
        sources: views,
        blocks: stage_out,
        first_row: rb.first_row,
    };
    let mut partials: Vec<State> = pass.reduces.iter().map(|r| r.kernel.init()).collect();
    // Output buffers, 8-aligned so any dtype can be stored in place;
    // every byte used is overwritten below.
    let Scratch {
        machines,
        outs,
        converted,
    } = scratch;
    for ((s, out), dest) in pass.stores.iter().zip(outs.iter_mut()).zip(dests) {
        let row_bytes = pass.frames[s.frame].cols * s.dtype.itemsize();
        let mut bytes = rows * row_bytes;
        if matches!(dest, Dest::Write(_) | Dest::Spill(_)) {
            // Streamed in pieces of FLUSH_BYTES, plus one tile.
            let tile_rows = (TILE_ELEMS / pass.frames[s.frame].cols.max(1)).max(1);
            bytes = bytes.min(FLUSH_BYTES + tile_rows * row_bytes);
        }
        let words = bytes.div_ceil(8);
        if out.len() < words {
            out.resize(words, 0);
        }
    }
    // Reductions straight over an input block: no conversion.
    for (k, sink) in pass.reduces.iter().enumerate() {
        if let Input::Source(src) = sink.input {
            let view = views[src];
            let cols = view.ncols();
            for_tiles(rows, cols, |r0, r1| -> Result<()> {
                sink.kernel.update(
                    &mut partials[k],
                    slice_rows(view, r0, r1),
                    rb.first_row + r0 as u64,
                );
                Ok(())
            })?;
        }
    }
    for (f, frame) in pass.frames.iter().enumerate() {
        let users_reduce: Vec<usize> = pass
            .reduces
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.input, Input::Reg { frame, .. } if frame == f))
            .map(|(k, _)| k)
            .collect();
        let users_store: Vec<usize> = pass
            .stores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.frame == f)
            .map(|(k, _)| k)
            .collect();
        if users_reduce.is_empty() && users_store.is_empty() {
            continue;
        }
        let cols = frame.cols;
        let machine = &mut machines[f];
        // Rows of each store already handed to its file: written and
        // spilled rows leave in pieces of about FLUSH_BYTES, while they
        // are still in the cache, rather than once the whole block is
        // done (which would read them back from memory).
        let mut flushed = vec![0usize; pass.stores.len()];
        for_tiles(rows, cols, |r0, r1| -> Result<()> {
            machine.run(&frame.prog, &inputs, r0, r1, cols)?;
            for &k in &users_reduce {
                let Input::Reg { reg, .. } = pass.reduces[k].input else {
                    continue;
                };
                let sink = &pass.reduces[k];
                let view = match sink.view_dtype {
                    None => machine.reg(reg).view(r1 - r0, cols),
                    // Stored in the kernel's dtype first.
                    Some(dtype) => {
                        let n = (r1 - r0) * cols;
                        let words = (n * dtype.itemsize()).div_ceil(8);
                        let buf = &mut converted[k];
                        if buf.len() < words {
                            buf.resize(words, 0);
                        }
                        let bytes: &mut [u8] = bytemuck::cast_slice_mut(buf);
                        let bytes = &mut bytes[..n * dtype.itemsize()];
                        store_bytes(machine.reg(reg), n, dtype, bytes);
                        bytes_view(bytes, dtype, r1 - r0, cols)?
                    }
                };
                sink.kernel
                    .update(&mut partials[k], view, rb.first_row + r0 as u64);
            }
            for &k in &users_store {
                let s = &pass.stores[k];
                let isz = s.dtype.itemsize();
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut outs[k]);
                // A streamed store reuses the front of its buffer for
                // each piece; the others keep the whole block.
                let streamed = matches!(dests[k], Dest::Write(_) | Dest::Spill(_));
                let base = if streamed { flushed[k] } else { 0 };
                store_bytes(
                    machine.reg(s.reg),
                    (r1 - r0) * cols,
                    s.dtype,
                    &mut bytes[(r0 - base) * cols * isz..(r1 - base) * cols * isz],
                );
                if streamed && ((r1 - base) * cols * isz >= FLUSH_BYTES || r1 == rows) {
                    let piece = &mut bytes[..(r1 - base) * cols * isz];
                    let first_row = rb.first_row + base as u64;
                    match &dests[k] {
                        Dest::Write(w) => w.write_native_rows(first_row, piece)?,
                        Dest::Spill(file) => {
                            file.write_at(first_row * (cols * isz) as u64, piece)?
                        }
                        Dest::Collect => {}
                    }
                    flushed[k] = r1;
                }
            }
            Ok(())
        })?;
    }
    let mut collected = Vec::with_capacity(pass.stores.len());
    for (k, s) in pass.stores.iter().enumerate() {
        let cols = pass.frames[s.frame].cols;
        let len = rows * cols * s.dtype.itemsize();
        match &dests[k] {
            // Written piece by piece above, as the tiles were computed.
            Dest::Write(_) | Dest::Spill(_) => collected.push(None),
            Dest::Collect => {
                let mut c = Collector::with_capacity(s.dtype, rows * cols);
                c.extend_from_bytes(&bytemuck::cast_slice(&outs[k])[..len]);
                collected.push(Some(c));
            }
        }
    }
    Ok(BlockResult {
        partials,
        collected,
    })
}

/// Calls a `map_blocks` function, turning a panic into an error.
fn call_stage(stage: &Stage, input: &AnyArray) -> Result<AnyArray> {
    let view = array_view2(input)?;
    catch_user(|| stage.f.call(view))
}

/// Bytes of a store's output gathered before they are written to its file
/// (or spill file): small enough to still be in the cache when `pwrite`
/// copies them, large enough that the system calls cost nothing.
const FLUSH_BYTES: usize = 512 << 10;

/// Calls `f(r0, r1)` for consecutive tiles of whole rows.
fn for_tiles(
    rows: usize,
    cols: usize,
    mut f: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    let step = (TILE_ELEMS / cols.max(1)).max(1);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        f(r0, r1)?;
        r0 = r1;
    }
    Ok(())
}

fn block_view(b: &Block) -> Result<AnyView<'_>> {
    Ok(with_dtype!(b.dtype(), T => AnyView::from(b.view::<T>()?)))
}

fn slice_rows(v: AnyView<'_>, r0: usize, r1: usize) -> AnyView<'_> {
    macro_rules! s {
        ($($var:ident),*) => {
            match v {
                $(AnyView::$var(a) => AnyView::$var(a.slice_move(ndarray::s![r0..r1, ..])),)*
            }
        };
    }
    s!(Bool, I8, I16, I32, I64, U8, U16, U32, U64, F16, F32, F64)
}
