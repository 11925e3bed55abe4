//! What `explain` shows: the plan's steps and, for each pass, what it
//! reads, computes and writes, its blocks and its memory.

use std::collections::HashMap;
use std::fmt;

use outcore_kernels::ReduceAxis;

use crate::compile::{Pass, PassRequest};
use crate::error::Result;
use crate::lower::{Plan, Step, StoreTo};
use crate::ops::kind::ArrayOp;
use crate::ops::quantile::Method;
use crate::runtime::{Runtime, Sizing};
use crate::sizing::{StepSize, kinds_text, size_plan};

/// A human-readable description of a plan, from [`Engine::explain`](crate::Engine::explain).
#[derive(Clone, Debug, Default)]
pub struct Explain {
    /// Whole-array operators and quantiles, one line each, in the order
    /// they run.
    pub steps: Vec<String>,
    /// One entry per pass, in the order they run.
    pub passes: Vec<PassInfo>,
    /// The memory limit in bytes.
    pub memory_limit: u64,
    /// Worker threads.
    pub threads: usize,
    /// The order of steps and passes: `true` for the next operator step,
    /// `false` for the next pass.
    order: Vec<bool>,
}

/// What one pass does and needs.
#[derive(Clone, Debug, Default)]
pub struct PassInfo {
    /// The inputs read, by path.
    pub inputs: Vec<String>,
    /// The reductions computed, as text.
    pub reductions: Vec<String>,
    /// The outputs written or collected, as text.
    pub outputs: Vec<String>,
    /// Number of fused programs (one per row length).
    pub fused_programs: usize,
    /// Instructions across the fused programs.
    pub instructions: usize,
    /// Rows streamed.
    pub rows: u64,
    /// Rows per block.
    pub block_rows: u64,
    /// Bytes of one block (inputs + outputs).
    pub block_bytes: u64,
    /// Blocks in flight at most.
    pub blocks_in_flight: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Estimated peak of the bytes the engine holds during the pass.
    pub peak_bytes: u64,
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use outcore_spill::format_bytes as fb;
        let steps = match self.steps.len() {
            0 => String::new(),
            1 => " and 1 operator step".to_string(),
            n => format!(" and {n} operator steps"),
        };
        writeln!(
            f,
            "plan: {} pass{}{steps} on {} thread{}, memory limit {}",
            self.passes.len(),
            if self.passes.len() == 1 { "" } else { "es" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            fb(self.memory_limit)
        )?;
        let (mut steps, mut passes) = (self.steps.iter(), self.passes.iter().enumerate());
        // Steps and passes in the order they run (an `Explain` built by
        // hand lists its steps first).
        let order = if self.order.len() == self.steps.len() + self.passes.len() {
            self.order.clone()
        } else {
            (0..self.steps.len() + self.passes.len())
                .map(|i| i < self.steps.len())
                .collect()
        };
        for is_step in order {
            if is_step {
                if let Some(step) = steps.next() {
                    writeln!(f, "step:   {step}")?;
                }
                continue;
            }
            let Some((i, p)) = passes.next() else {
                continue;
            };
            writeln!(f, "pass {}: read {}", i + 1, p.inputs.join(", "))?;
            for r in &p.reductions {
                writeln!(f, "  reduce  {r}")?;
            }
            for o in &p.outputs {
                writeln!(f, "  output  {o}")?;
            }
            writeln!(
                f,
                "  fused:  {} program{} of {} instruction{}",
                p.fused_programs,
                if p.fused_programs == 1 { "" } else { "s" },
                p.instructions,
                if p.instructions == 1 { "" } else { "s" }
            )?;
            writeln!(
                f,
                "  blocks: {} rows ({}) × up to {} in flight; {} rows in all",
                p.block_rows,
                fb(p.block_bytes),
                p.blocks_in_flight,
                p.rows
            )?;
            writeln!(
                f,
                "  io:     read {}, write {}; estimated peak memory {} of {}",
                fb(p.bytes_read),
                fb(p.bytes_written),
                fb(p.peak_bytes),
                fb(self.memory_limit)
            )?;
        }
        Ok(())
    }
}

/// What one pass does and needs, as [`PassInfo`].
pub(crate) fn pass_info(pass: &Pass, req: &PassRequest, sizing: &Sizing) -> PassInfo {
    PassInfo {
        inputs: pass.sources.iter().map(|s| s.label.clone()).collect(),
        reductions: req.reduces.iter().map(|r| r.to_string()).collect(),
        outputs: req
            .stores
            .iter()
            .map(|(e, d)| format!("{e} as {d}"))
            .collect(),
        fused_programs: pass.frames.len() + pass.stages.len(),
        instructions: pass.frames.iter().map(|f| f.prog.instrs.len()).sum(),
        rows: pass.rows,
        block_rows: sizing.block_rows,
        block_bytes: sizing.block_bytes,
        blocks_in_flight: sizing.slots,
        bytes_read: pass.rows * pass.source_row_bytes(),
        bytes_written: req
            .stores
            .iter()
            .map(|(e, d)| pass.rows * e.extent.row_len() as u64 * d.itemsize() as u64)
            .sum(),
        peak_bytes: sizing.total(),
    }
}

/// Describes `plan` as it would run under `rt`: every step sized, nothing
/// run.
pub(crate) fn explain(rt: &Runtime, plan: &Plan) -> Result<Explain> {
    use outcore_spill::format_bytes as fb;
    let sized = size_plan(rt, plan, &HashMap::new())?;
    let mut explain = Explain {
        memory_limit: rt.budget().limit(),
        threads: rt.threads(),
        ..Explain::default()
    };
    for (step, size) in plan.steps.iter().zip(sized) {
        let line = match (step, size) {
            (Step::Pass { req, .. }, StepSize::Pass(pass, sizing)) => {
                explain.passes.push(pass_info(&pass, req, &sizing));
                explain.order.push(false);
                continue;
            }
            (Step::Op { op, input, to }, size) => {
                let bytes =
                    input.extent.shape().iter().product::<u64>() * input.dtype.itemsize() as u64;
                let into = match to {
                    StoreTo::Output => "the output",
                    _ => "a spill file",
                };
                match (op, size) {
                    (ArrayOp::Sort, StepSize::Sort(p)) if p.in_memory.is_some() => {
                        let m = p.in_memory.as_ref().map_or(0, |m| m.bytes);
                        format!(
                            "sort {input} into {into} in memory (the limit holds it): 2 passes \
                             over the data, {} read, nothing spilled, {} written; {} held",
                            fb(bytes),
                            fb(bytes),
                            fb(m),
                        )
                    }
                    (ArrayOp::Sort, StepSize::Sort(p)) => {
                        // Runs, each merge level, rows back: each reads the data once.
                        let passes = 2 + u64::from(p.levels);
                        format!(
                            "sort {input} into {into}: {} sorted run{} of {} rows, {} merge \
                             level{} of fan-in {} ({} windows), then rows written back; {passes} \
                             passes over the data: {} read, {} spilled and read back (at most \
                             2 × {} on disk at once), {} written",
                            p.runs,
                            if p.runs == 1 { "" } else { "s" },
                            p.run_rows,
                            p.levels,
                            if p.levels == 1 { "" } else { "s" },
                            p.fan_in,
                            fb(p.window_bytes),
                            fb(bytes),
                            fb((1 + u64::from(p.levels)) * bytes),
                            fb(bytes),
                            fb(bytes),
                        )
                    }
                    (ArrayOp::Sort, _) => format!("sort {input} into {into}: nothing to sort"),
                    _ => format!(
                        "cumsum {input} into {into}: one pass in row order with a carry of {} \
                         values: {} read, {} written",
                        input.extent.row_len(),
                        fb(bytes),
                        fb(input.extent.shape().iter().product::<u64>()
                            * crate::ops::kind::cumsum_dtype(input.dtype).itemsize() as u64),
                    ),
                }
            }
            (
                Step::Quantiles {
                    input, axis, kinds, ..
                },
                StepSize::Quantiles(method),
            ) => format!(
                "{} of {input}{}: exact, {}",
                kinds_text(kinds).join(", "),
                match axis {
                    ReduceAxis::Axis0 => " along axis 0",
                    ReduceAxis::Axis1 => " along axis 1",
                    _ => "",
                },
                match method {
                    Some(Method::Rows) => {
                        "one pass selecting each row's ranks in a copy of the row"
                    }
                    Some(Method::Sort) => {
                        "by the external sort (radix selection's per-column state cannot fit), \
                         ranks read from the sorted columns"
                    }
                    _ => {
                        "by radix selection (a min/max pass, histogram passes, a collection pass)"
                    }
                },
            ),
            _ => continue,
        };
        explain.steps.push(line);
        explain.order.push(true);
    }
    Ok(explain)
}
