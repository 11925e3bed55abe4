//! Sizing: the block size and blocks in flight of each pass, and the
//! memory of every step of a plan, derived from the budget before
//! anything runs. A limit too small for any step is refused here, naming
//! the smallest limit that works.

use std::collections::HashMap;

use outcore_kernels::AnyArray;
use outcore_kernels::eval::{Buf, Instr, TILE_ELEMS};
use outcore_spill::Consumer;

use crate::compile::{NodeId, Pass, Planner, id, store_row_bytes};
use crate::error::{Error, Result};
use crate::lower::{Plan, Step, StoreTo, placeholder};
use crate::ops::kind::{ArrayOp, Quantile};
use crate::ops::quantile::Method;
use crate::runtime::{Runtime, Sizing};

/// Blocks are sized so that this many fit in the budget at once (see
/// [`size`]): enough for a reader one block ahead of two workers.
const SIZING_SLOTS: u64 = 4;

/// Chooses block size and blocks in flight for a pass under the limit.
pub(crate) fn size(
    rt: &Runtime,
    pass: &Pass,
    store_row_bytes: &[u64],
    collect: bool,
) -> Result<Sizing> {
    let threads = rt.threads() as u64;
    let limit = rt.budget().limit();
    let src_row = pass.source_row_bytes();
    let store_row: u64 = store_row_bytes.iter().sum();
    let stage_row: u64 = pass
        .stages
        .iter()
        .map(|s| {
            let input = pass.frames[s.frame].cols as u64 * s.in_dtype.itemsize() as u64;
            input + s.out_len as u64 * s.out_dtype.itemsize() as u64
        })
        .sum();
    let reduce_row: u64 = pass
        .reduces
        .iter()
        .map(|r| {
            r.kernel
                .state_bytes(2)
                .saturating_sub(r.kernel.state_bytes(1))
        })
        .sum();
    // A collected block is copied out of the worker's buffer and waits
    // for its turn to merge: one more block of output per slot.
    let store_row = if collect { 2 * store_row } else { store_row };
    let per_row = src_row + store_row + stage_row + reduce_row;
    let partial_fixed: u64 = pass
        .reduces
        .iter()
        .map(|r| r.kernel.state_bytes(0))
        .sum::<u64>();
    let scratch: u64 = pass
        .frames
        .iter()
        .map(|f| f.prog.scratch_bytes(TILE_ELEMS.max(f.cols)) as u64)
        .sum::<u64>()
        * threads;
    // Kernels that take their values in another dtype than the lane
    // they are computed in get them converted, a tile at a time.
    let convert: u64 = pass
        .reduces
        .iter()
        .filter(|r| r.view_dtype.is_some())
        .map(|_| TILE_ELEMS as u64 * 8)
        .sum::<u64>()
        * threads;
    let scratch = scratch + convert;
    let merged: u64 = pass
        .reduces
        .iter()
        .map(|r| r.kernel.state_bytes(pass.rows))
        .sum::<u64>();
    let values: u64 = pass
        .frames
        .iter()
        .flat_map(|f| f.prog.instrs.iter())
        .map(|i| match i {
            Instr::Value { data, .. } => buf_bytes(data),
            _ => 0,
        })
        .sum();
    let collected = if collect {
        pass.rows * store_row_bytes.iter().sum::<u64>()
    } else {
        0
    };
    let fixed = vec![
        (Consumer::Kernel, scratch),
        (Consumer::State, merged + values),
        (Consumer::Other, collected),
    ];
    let fixed_total: u64 = fixed.iter().map(|p| p.1).sum();
    let slot_fixed = partial_fixed;
    let minimum = fixed_total + slot_fixed + per_row.max(1);
    if limit < minimum || (per_row == 0 && limit < fixed_total + slot_fixed) {
        return Err(Error::LimitTooSmall {
            limit,
            row_bytes: per_row,
            minimum,
            detail: format!(
                "input {src_row} B, output {store_row} B, map_blocks {stage_row} B, \
                 per-row results {reduce_row} B; plus {} B of states, scratch and results",
                fixed_total + slot_fixed
            ),
        });
    }
    let minimum = minimum.max(fixed_total + slot_fixed);
    let target_rows = rt
        .block_bytes()
        .checked_div(src_row)
        .map_or(pass.rows.max(1), |r| r.max(1));
    // The block size depends on the limit and the data, not on the
    // thread count, so results are bit-identical across thread counts:
    // blocks are sized for SIZING_SLOTS in flight, without the
    // per-thread scratch; then as many slots as fit (up to two per
    // thread) are used.
    let avail = limit - fixed_total;
    let sizing_avail = limit - (fixed_total - scratch);
    let fit = |slots: u64, avail: u64| (avail / slots).saturating_sub(slot_fixed) / per_row.max(1);
    let rows = pass.rows.max(1);
    let mut block_rows = fit(SIZING_SLOTS, sizing_avail)
        .max(1)
        .min(target_rows)
        .min(rows)
        .min(u32::MAX as u64);
    let slot_bytes = |b: u64| slot_fixed + b * per_row;
    if slot_bytes(block_rows) > avail {
        // Many threads' scratch crowds a tiny limit: one slot it is.
        block_rows = fit(1, avail).max(1).min(block_rows);
    }
    let blocks = rows.div_ceil(block_rows);
    let slots = avail
        .checked_div(slot_bytes(block_rows))
        .unwrap_or(u64::MAX)
        .min(2 * threads)
        .min(blocks)
        .max(1) as usize;
    let slot = vec![
        (Consumer::Reader, block_rows * src_row),
        (Consumer::Writer, block_rows * (store_row + stage_row)),
        (Consumer::State, slot_fixed + block_rows * reduce_row),
    ];
    Ok(Sizing {
        block_rows,
        slots,
        fixed,
        slot,
        minimum,
        block_bytes: block_rows * (src_row + store_row),
    })
}

fn buf_bytes(b: &Buf) -> u64 {
    match b {
        Buf::Bool(v) => v.len() as u64,
        Buf::I64(v) => v.len() as u64 * 8,
        Buf::U64(v) => v.len() as u64 * 8,
        Buf::F64(v) => v.len() as u64 * 8,
    }
}

/// How one step of a plan runs under the budget.
pub(crate) enum StepSize {
    /// A pass: compiled with placeholders for the values of earlier
    /// steps, and sized.
    Pass(Box<Pass>, Sizing),
    /// A sort: its runs, merge levels and windows.
    Sort(crate::ops::sort::SortPlan),
    /// A cumsum (sized as it runs: one pass in row order).
    Cumsum,
    /// Quantiles, and how they are found (`None`: nothing to select).
    Quantiles(Option<Method>),
}

/// Sizes every step of `plan`, with placeholders of the right shape for
/// the values of earlier steps. A limit too small for any step is refused
/// naming the smallest limit that works for all of them (with the detail
/// of the step that needs the most).
pub(crate) fn size_plan(
    rt: &Runtime,
    plan: &Plan,
    known: &HashMap<NodeId, AnyArray>,
) -> Result<Vec<StepSize>> {
    // A slot larger than the whole spill quota can never be written.
    if let Some(quota) = rt.spill().quota() {
        for (dtype, shape) in &plan.slots {
            let bytes = shape.iter().product::<u64>() * dtype.itemsize() as u64;
            if bytes > quota {
                return Err(outcore_spill::Error::Quota {
                    dir: rt.spill().dir().to_path_buf(),
                    requested: bytes,
                    used: rt.spill().used(),
                    quota,
                }
                .into());
            }
        }
    }
    let mut worst: Option<Error> = None;
    let mut ops: Vec<Option<StepSize>> = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let sized = match step {
            Step::Op {
                op: ArrayOp::Sort,
                input,
                ..
            } => match crate::ops::sort::op_plan(
                rt,
                input.extent.rows(),
                input.extent.row_len(),
                input.dtype.itemsize(),
            ) {
                Ok(p) => Ok(StepSize::Sort(p)),
                // An empty array is not sorted: nothing to hold.
                Err(_) if input.extent.shape().iter().product::<u64>() == 0 => Ok(StepSize::Cumsum),
                Err(e) => Err(e),
            },
            Step::Op { .. } => Ok(StepSize::Cumsum),
            Step::Quantiles {
                input, axis, kinds, ..
            } => {
                crate::ops::quantile::plan_for(rt, input.dtype, &input.extent.shape(), *axis, kinds)
                    .map(StepSize::Quantiles)
            }
            Step::Pass { .. } => {
                ops.push(None);
                continue;
            }
        };
        match sized {
            Ok(s) => ops.push(Some(s)),
            Err(Error::LimitTooSmall { minimum, .. }) if matches!(&worst, Some(Error::LimitTooSmall { minimum: w, .. }) if *w >= minimum) =>
            {
                ops.push(None);
            }
            Err(err @ Error::LimitTooSmall { .. }) => {
                worst = Some(err);
                ops.push(None);
            }
            Err(err) => return Err(err),
        }
    }
    // Values known already stand as zeroed copies too: a clone of a row
    // of millions of results would be memory outside the budget.
    let mut values: HashMap<NodeId, AnyArray> = known
        .iter()
        .map(|(k, v)| {
            let v = if v.len() <= 1 {
                v.clone()
            } else {
                outcore_kernels::cast::zeroed_like(v)
            };
            (*k, v)
        })
        .collect();
    let mut too_small: Option<Error> = None;
    let mut minimum = 0;
    let mut sized = Vec::with_capacity(plan.steps.len());
    for (step, op) in plan.steps.iter().zip(ops) {
        match step {
            Step::Pass { req, to } => {
                let pass = Planner {
                    values: &values,
                    slots: &[],
                    sizing: true,
                }
                .build(req)?;
                let collect = to.contains(&StoreTo::Collect);
                match size(rt, &pass, &store_row_bytes(req), collect) {
                    Ok(sizing) => {
                        minimum = minimum.max(sizing.minimum);
                        sized.push(StepSize::Pass(Box::new(pass), sizing));
                    }
                    Err(Error::LimitTooSmall {
                        limit,
                        row_bytes,
                        minimum: m,
                        detail,
                    }) => {
                        minimum = minimum.max(m);
                        let worse = match &too_small {
                            Some(Error::LimitTooSmall { minimum: w, .. }) => m > *w,
                            _ => true,
                        };
                        if worse {
                            too_small = Some(Error::LimitTooSmall {
                                limit,
                                row_bytes,
                                minimum: m,
                                detail,
                            });
                        }
                    }
                    Err(e) => return Err(e),
                }
                for r in &req.reduces {
                    values.insert(id(r), placeholder(r));
                }
            }
            Step::Quantiles { nodes, .. } => {
                for node in nodes {
                    values.insert(id(node), placeholder(node));
                }
                sized.extend(op);
            }
            Step::Op { .. } => sized.extend(op),
        }
    }
    // The step needing the most names the detail; the minimum works for
    // every step.
    let op_minimum = match &worst {
        Some(Error::LimitTooSmall { minimum, .. }) => *minimum,
        _ => 0,
    };
    let (worst, minimum) = if op_minimum >= minimum {
        (worst.or(too_small), op_minimum)
    } else {
        (too_small.or(worst), minimum)
    };
    match worst {
        Some(Error::LimitTooSmall {
            limit,
            row_bytes,
            detail,
            ..
        }) => Err(Error::LimitTooSmall {
            limit,
            row_bytes,
            minimum,
            detail,
        }),
        _ => Ok(sized),
    }
}

/// The quantile kinds of a step, as text.
pub(crate) fn kinds_text(kinds: &[Quantile]) -> Vec<String> {
    kinds
        .iter()
        .map(|q| match q {
            Quantile::Median | Quantile::NanMedian => q.name().to_string(),
            Quantile::Linear(v) | Quantile::NanLinear(v) => format!("{} {v}", q.name()),
        })
        .collect()
}
