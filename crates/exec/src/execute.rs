//! Running a plan: its steps in order, under the runtime.
//!
//! Every step is sized before any runs, so a limit too small is refused
//! before anything is read; the output is created (its whole size
//! allocated) before the first step, so a path that cannot be written is
//! refused before any work. Slots are filled by the steps that make them
//! and read by the steps after; their spill files live until the run ends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use outcore_chunker::{ArrayFile, ArrayWriter, OutputSpec};
use outcore_kernels::AnyArray;
use outcore_kernels::cast::buf_to_array;

use crate::compile::{NodeId, Planner, id, small_value, store_row_bytes};
use crate::error::{Error, Result};
use crate::expr::{Expr, Extent, Node};
use crate::lower::{Plan, Step, StoreTo};
use crate::ops::kind::ArrayOp;
use crate::ops::{RowSink, Spilled};
use crate::pass::{Dest, run_pass};
use crate::report::RunReport;
use crate::runtime::Runtime;
use crate::sizing::{size, size_plan};

/// Runs `plan`, writing its output to `output` when given; returns the
/// values of the reductions, quantiles and collected arrays, by node.
pub(crate) fn execute(
    rt: &Runtime,
    plan: &Plan,
    output: Option<(&Path, OutputSpec)>,
    report: &mut RunReport,
) -> Result<HashMap<NodeId, AnyArray>> {
    size_plan(rt, plan, &HashMap::new())?;
    let writer = match output {
        Some((path, spec)) => Some(Arc::new(ArrayWriter::create(path, spec)?)),
        None => None,
    };
    let mut slots: Vec<Option<Spilled>> = plan.slots.iter().map(|_| None).collect();
    let mut values: HashMap<NodeId, AnyArray> = HashMap::new();
    // What the output's last rows came from, for a cancellation after them.
    let mut last_stage = "blocks of a pass";
    let n = plan.steps.len();
    for (k, step) in plan.steps.iter().enumerate() {
        let label = |what: &str| format!("step {} of {n}: {what}", k + 1);
        match step {
            Step::Pass { req, to } => {
                let files: Vec<Option<Arc<ArrayFile>>> = slots
                    .iter()
                    .map(|s| s.as_ref().map(|s| s.array.clone()))
                    .collect();
                let pass = Planner {
                    values: &values,
                    slots: &files,
                    sizing: false,
                }
                .build(req)?;
                let mut filled = Vec::new();
                let mut dests = Vec::with_capacity(to.len());
                for t in to {
                    dests.push(match t {
                        StoreTo::Collect => Dest::Collect,
                        StoreTo::Output => Dest::Write(output_of(&writer)?.clone()),
                        StoreTo::Slot(k) => {
                            let file = Arc::new(rt.spill().create(slot_bytes(plan, *k))?);
                            filled.push((*k, file.clone()));
                            Dest::Spill(file)
                        }
                    });
                }
                let collect = dests.iter().any(|d| matches!(d, Dest::Collect));
                let sizing = size(rt, &pass, &store_row_bytes(req), collect)?;
                let step = label("pass");
                run_pass(rt, &step, &pass, req, &sizing, &dests, &mut values, report)?;
                drop(dests);
                for (k, file) in filled {
                    let file = Arc::try_unwrap(file)
                        .map_err(|_| Error::Invalid("internal: spill file still shared".into()))?;
                    slots[k] = Some(spilled(plan, k, file)?);
                }
                report.passes += 1;
                last_stage = "blocks of a pass";
            }
            Step::Op { op, input, to } => {
                let src = file_of(input, &slots)?;
                let name = match op {
                    ArrayOp::Sort => "sort",
                    ArrayOp::Cumsum => "cumsum",
                    ArrayOp::Persist => "spill",
                };
                // Bytes the operator reads, merges and writes in all.
                let bytes = src.meta().nbytes();
                let total = match op {
                    ArrayOp::Sort => crate::ops::sort::op_plan(
                        rt,
                        src.meta().rows(),
                        src.meta().row_len(),
                        src.meta().dtype.itemsize(),
                    )
                    .map_or(0, |p| match p.in_memory {
                        Some(_) => 2 * bytes,
                        None => (2 + u64::from(p.levels)) * bytes,
                    }),
                    ArrayOp::Cumsum | ArrayOp::Persist => bytes,
                };
                rt.start_step(&label(name), total);
                match to {
                    StoreTo::Slot(k) => {
                        let file = rt.spill().create(slot_bytes(plan, *k))?;
                        run_op(rt, *op, &src, &RowSink::Spill(&file), report)?;
                        slots[*k] = Some(spilled(plan, *k, file)?);
                    }
                    StoreTo::Output => {
                        let w = output_of(&writer)?;
                        run_op(rt, *op, &src, &RowSink::Writer(w), report)?;
                        last_stage = "output rows";
                    }
                    StoreTo::Collect => {
                        return Err(Error::Invalid(
                            "internal: an operator's rows are collected".into(),
                        ));
                    }
                }
            }
            Step::Quantiles {
                input,
                axis,
                kinds,
                nodes,
            } => {
                let src = file_of(input, &slots)?;
                rt.start_step(&label("quantiles"), 0);
                let results = crate::ops::quantile::compute(rt, &src, *axis, kinds, report)?;
                for (node, value) in nodes.iter().zip(results) {
                    values.insert(id(node), value);
                }
            }
        }
    }
    if let Some(w) = writer {
        let w = Arc::try_unwrap(w)
            .map_err(|_| Error::Invalid("internal: output writer still shared".into()))?;
        // Cancelled after the last block: still no output.
        rt.check_cancel(last_stage, report.blocks, report.blocks)?;
        w.finish()?;
    }
    Ok(values)
}

/// The values of the requested expressions, from those a run computed:
/// values derived in memory from computed reductions first, while every
/// result is still at hand; then results moved out, not copied, unless
/// requested again. A written expression returns nothing of its own.
pub(crate) fn outputs(
    exprs: &[Expr],
    mut values: HashMap<NodeId, AnyArray>,
) -> Result<Vec<AnyArray>> {
    let mut out: Vec<Option<AnyArray>> = Vec::with_capacity(exprs.len());
    for e in exprs {
        out.push(match e.extent {
            Extent::Full { .. } => None,
            _ if values.contains_key(&id(e)) => None,
            _ => {
                let (buf, _) = small_value(&values, e)?;
                Some(buf_to_array(&buf, e.dtype, &e.shape())?)
            }
        });
    }
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, derived)| {
            let e = &exprs[i];
            derived.unwrap_or_else(|| {
                let again = exprs[i + 1..].iter().any(|later| id(later) == id(e));
                let value = if again {
                    values.get(&id(e)).cloned()
                } else {
                    values.remove(&id(e))
                };
                value.unwrap_or_else(|| AnyArray::scalar(0u8))
            })
        })
        .collect())
}

fn output_of(writer: &Option<Arc<ArrayWriter>>) -> Result<&Arc<ArrayWriter>> {
    writer.as_ref().ok_or_else(|| {
        Error::Invalid("internal: a step writes the output of a run without one".into())
    })
}

/// Bytes of slot `k`'s array.
fn slot_bytes(plan: &Plan, k: usize) -> u64 {
    let (dtype, shape) = &plan.slots[k];
    shape.iter().product::<u64>() * dtype.itemsize() as u64
}

/// Slot `k`'s spill file, read as an array.
fn spilled(plan: &Plan, k: usize, file: outcore_spill::SpillFile) -> Result<Spilled> {
    let (dtype, shape) = &plan.slots[k];
    Spilled::new(file, *dtype, shape.clone())
}

/// The file a step reads: a source, or a slot filled by an earlier step.
fn file_of(input: &Expr, slots: &[Option<Spilled>]) -> Result<Arc<ArrayFile>> {
    match &*input.node {
        Node::Source(f) => Ok(f.clone()),
        Node::Slot(k) => slots
            .get(*k)
            .and_then(|s| s.as_ref())
            .map(|s| s.array.clone())
            .ok_or_else(|| {
                Error::Invalid(format!("internal: {input} is read before it is filled"))
            }),
        _ => Err(Error::Invalid(format!(
            "internal: {input} is not in a file"
        ))),
    }
}

/// Runs a whole-array operator over `src` into `sink`.
fn run_op(
    rt: &Runtime,
    op: ArrayOp,
    src: &ArrayFile,
    sink: &RowSink<'_>,
    report: &mut RunReport,
) -> Result<()> {
    match op {
        ArrayOp::Sort => crate::ops::sort::sort_any(rt, src, sink, report),
        ArrayOp::Cumsum => crate::ops::cumsum::cumsum_into(rt, src, sink, report),
        ArrayOp::Persist => Err(Error::Invalid(
            "internal: persist is not an operator to run".into(),
        )),
    }
}
