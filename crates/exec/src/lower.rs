//! Lowering: before the ordinary passes of a computation run, its
//! whole-array operators (sort, cumsum, persist) and quantiles are
//! computed, and the expression graph is rewritten so that what remains
//! streams row blocks from sources — original files, or spill files
//! holding the operators' results — with quantiles as known values.
//!
//! An operator's argument that is not a plain source is itself spilled
//! first (one pass), since the operators read their input several times
//! or out of row order. A sort or cumsum that is the output of
//! [`Engine::write_npy`](crate::Engine::write_npy) goes straight into the
//! output file.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use outcore_chunker::{ArrayFile, ArrayWriter, OutputSpec};

use crate::engine::{Engine, RunReport, Target};
use crate::error::{Error, Result};
use crate::expr::{ArrayOp, Expr, Node};
use crate::ops::quantile::Quantile;
use crate::ops::{RowSink, Spilled};
use crate::plan::{NodeId, id};
use outcore_kernels::AnyArray;
use outcore_kernels::ReduceAxis;

/// The state of lowering one computation.
pub(crate) struct Lowered {
    memo: HashMap<NodeId, Expr>,
    values: HashMap<NodeId, AnyArray>,
    /// Quantile nodes by (argument, axis): computed together.
    groups: HashMap<(NodeId, ReduceAxis), Vec<(NodeId, Quantile)>>,
    /// Spill files behind rewritten sources, alive until the run ends.
    spills: Vec<Spilled>,
    /// Intermediates already spilled, by node.
    sources: HashMap<NodeId, Arc<ArrayFile>>,
}

impl Lowered {
    /// Finds the quantiles of `exprs`, grouped by argument and axis.
    pub(crate) fn new(exprs: &[Expr]) -> Lowered {
        let mut groups: HashMap<(NodeId, ReduceAxis), Vec<(NodeId, Quantile)>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<&Expr> = exprs.iter().collect();
        while let Some(e) = stack.pop() {
            if !seen.insert(id(e)) {
                continue;
            }
            if let Node::Quantile(q, axis, a) = &*e.node {
                groups.entry((id(a), *axis)).or_default().push((id(e), *q));
            }
            stack.extend(e.children());
        }
        Lowered {
            memo: HashMap::new(),
            values: HashMap::new(),
            groups,
            spills: Vec::new(),
            sources: HashMap::new(),
        }
    }

    /// The quantile values computed, by node.
    pub(crate) fn take_values(&mut self) -> HashMap<NodeId, AnyArray> {
        std::mem::take(&mut self.values)
    }
}

/// `e` with each child replaced by `f(child)`; `e` itself when no child
/// changes. Quantiles and operators are left to the caller.
fn rebuild(e: &Expr, mut f: impl FnMut(&Expr) -> Result<Expr>) -> Result<Expr> {
    let same = |a: &Expr, b: &Expr| Arc::ptr_eq(&a.node, &b.node);
    let node = match &*e.node {
        Node::Source(_)
        | Node::Const { .. }
        | Node::Invalid(_)
        | Node::Op(..)
        | Node::Quantile(..) => return Ok(e.clone()),
        Node::Unary(op, a) => {
            let a2 = f(a)?;
            if same(a, &a2) {
                return Ok(e.clone());
            }
            Node::Unary(*op, a2)
        }
        Node::Cast(a, d) => {
            let a2 = f(a)?;
            if same(a, &a2) {
                return Ok(e.clone());
            }
            Node::Cast(a2, *d)
        }
        Node::Reduce(op, axis, a) => {
            let a2 = f(a)?;
            if same(a, &a2) {
                return Ok(e.clone());
            }
            Node::Reduce(*op, *axis, a2)
        }
        Node::MapBlocks {
            input,
            f: func,
            dtype,
            row_len,
        } => {
            let a2 = f(input)?;
            if same(input, &a2) {
                return Ok(e.clone());
            }
            Node::MapBlocks {
                input: a2,
                f: func.clone(),
                dtype: *dtype,
                row_len: *row_len,
            }
        }
        Node::Binary(op, a, b) => {
            let (a2, b2) = (f(a)?, f(b)?);
            if same(a, &a2) && same(b, &b2) {
                return Ok(e.clone());
            }
            Node::Binary(*op, a2, b2)
        }
        Node::Where(c, a, b) => {
            let (c2, a2, b2) = (f(c)?, f(a)?, f(b)?);
            if same(c, &c2) && same(a, &a2) && same(b, &b2) {
                return Ok(e.clone());
            }
            Node::Where(c2, a2, b2)
        }
    };
    Ok(Expr::new(node, e.dtype, e.extent.clone()))
}

/// Lowering for `explain`: nothing runs. Operators are described in
/// `steps` and stand in the plan as their (lowered) argument, which is
/// read like their spilled result would be; quantiles get placeholder
/// values of their shape.
pub(crate) struct ExplainLowered {
    memo: HashMap<NodeId, Expr>,
    pub(crate) values: HashMap<NodeId, AnyArray>,
    pub(crate) steps: Vec<String>,
    described: HashSet<(NodeId, ReduceAxis)>,
    groups: HashMap<(NodeId, ReduceAxis), Vec<(NodeId, Quantile)>>,
}

impl ExplainLowered {
    pub(crate) fn new(exprs: &[Expr]) -> ExplainLowered {
        ExplainLowered {
            memo: HashMap::new(),
            values: HashMap::new(),
            steps: Vec::new(),
            described: HashSet::new(),
            groups: Lowered::new(exprs).groups,
        }
    }
}

impl RunReport {
    /// Adds what a nested run (spilling an intermediate) did.
    fn absorb(&mut self, sub: &RunReport) {
        self.passes += sub.passes;
        self.blocks += sub.blocks;
        self.bytes_read += sub.bytes_read;
        self.bytes_written += sub.bytes_written;
        self.bytes_spilled += sub.bytes_spilled;
        self.note_reservations(&sub.reserved_by_consumer);
        self.peak_reserved = self.peak_reserved.max(sub.peak_reserved);
    }
}

impl Engine {
    /// Rewrites `e` without whole-array operators or quantiles, running
    /// them as needed.
    pub(crate) fn lower(&self, e: &Expr, cx: &mut Lowered, report: &mut RunReport) -> Result<Expr> {
        if let Some(x) = cx.memo.get(&id(e)) {
            return Ok(x.clone());
        }
        let out = match &*e.node {
            Node::Op(op, a) => {
                let a2 = self.lower(a, cx, report)?;
                self.materialize(*op, e, &a2, cx, report)?
            }
            Node::Quantile(_, axis, a) => {
                if !cx.values.contains_key(&id(e)) {
                    let a2 = self.lower(a, cx, report)?;
                    let group = cx.groups.get(&(id(a), *axis)).cloned().unwrap_or_default();
                    let kinds: Vec<Quantile> = group.iter().map(|g| g.1).collect();
                    let src = self.array_source(&a2, cx, report)?;
                    let results = crate::ops::quantile::compute(self, &src, *axis, &kinds, report)?;
                    for ((node, _), value) in group.iter().zip(results) {
                        cx.values.insert(*node, value);
                    }
                }
                // The value is known now; the node stays as its key.
                e.clone()
            }
            _ => rebuild(e, |c| self.lower(c, cx, report))?,
        };
        cx.memo.insert(id(e), out.clone());
        Ok(out)
    }

    /// Plans every sort and quantile of `exprs` before anything runs, so
    /// that a limit too small for one of them is refused before anything
    /// is read ([`Error::LimitTooSmall`] naming the largest of their
    /// smallest limits), rather than after the operators before it ran.
    pub(crate) fn plan_ops(&self, exprs: &[Expr]) -> Result<()> {
        let groups = Lowered::new(exprs).groups;
        let mut seen = HashSet::new();
        let mut planned = HashSet::new();
        let mut stack: Vec<&Expr> = exprs.iter().collect();
        let mut worst: Option<Error> = None;
        while let Some(e) = stack.pop() {
            if !seen.insert(id(e)) {
                continue;
            }
            stack.extend(e.children());
            let planned_op = match &*e.node {
                Node::Op(ArrayOp::Sort, a) => {
                    let shape = a.extent.shape();
                    if shape.iter().product::<u64>() == 0 {
                        continue;
                    }
                    crate::ops::sort::plan(
                        self,
                        a.extent.rows(),
                        a.extent.row_len(),
                        a.dtype.itemsize(),
                        false,
                    )
                    .map(|_| ())
                }
                Node::Quantile(_, axis, a) if planned.insert((id(a), *axis)) => {
                    let kinds: Vec<Quantile> = groups
                        .get(&(id(a), *axis))
                        .map(|g| g.iter().map(|(_, q)| *q).collect())
                        .unwrap_or_default();
                    crate::ops::quantile::plan_for(self, a.dtype, &a.extent.shape(), *axis, &kinds)
                        .map(|_| ())
                }
                _ => continue,
            };
            match planned_op {
                Ok(()) => {}
                Err(Error::LimitTooSmall { minimum, .. }) if matches!(&worst, Some(Error::LimitTooSmall { minimum: w, .. }) if *w >= minimum) =>
                    {}
                Err(err @ Error::LimitTooSmall { .. }) => worst = Some(err),
                Err(err) => return Err(err),
            }
        }
        match worst {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// As [`Engine::lower`], for `explain`: describes instead of running.
    pub(crate) fn explain_lower(&self, e: &Expr, cx: &mut ExplainLowered) -> Result<Expr> {
        use outcore_spill::format_bytes as fb;
        if let Some(x) = cx.memo.get(&id(e)) {
            return Ok(x.clone());
        }
        let spill_note = |a: &Expr| {
            if matches!(&*a.node, Node::Source(_)) {
                String::new()
            } else {
                let bytes = a.extent.shape().iter().product::<u64>() * a.dtype.itemsize() as u64;
                format!(" (its input is spilled first: {})", fb(bytes))
            }
        };
        let out = match &*e.node {
            Node::Op(op, a) => {
                let a2 = self.explain_lower(a, cx)?;
                let bytes = e.extent.shape().iter().product::<u64>() * e.dtype.itemsize() as u64;
                let step = match op {
                    ArrayOp::Sort => {
                        let rows = a.extent.rows();
                        let p = crate::ops::sort::plan(
                            self,
                            rows,
                            a.extent.row_len(),
                            a.dtype.itemsize(),
                            false,
                        )?;
                        format!(
                            "sort {a}: {} sorted run{} of {} rows, {} merge level{} of fan-in {} \
                             ({} windows), then rows written back; spill up to 2 × {}{}",
                            p.runs,
                            if p.runs == 1 { "" } else { "s" },
                            p.run_rows,
                            p.levels,
                            if p.levels == 1 { "" } else { "s" },
                            p.fan_in,
                            fb(p.window_bytes),
                            fb(bytes),
                            spill_note(a),
                        )
                    }
                    ArrayOp::Cumsum => format!(
                        "cumsum {a}: one pass in row order with a carry of {} values{}",
                        a.extent.row_len(),
                        spill_note(a)
                    ),
                    ArrayOp::Persist => format!("persist {a}: spilled once ({})", fb(bytes)),
                };
                cx.steps.push(step);
                if a2.dtype == e.dtype {
                    a2
                } else {
                    a2.cast(e.dtype)
                }
            }
            Node::Quantile(_, axis, a) => {
                self.explain_lower(a, cx)?;
                cx.values.insert(id(e), crate::engine::placeholder(e));
                if cx.described.insert((id(a), *axis)) {
                    let group: Vec<Quantile> = cx
                        .groups
                        .get(&(id(a), *axis))
                        .map(|g| g.iter().map(|(_, q)| *q).collect())
                        .unwrap_or_default();
                    let kinds: Vec<String> = group
                        .iter()
                        .map(|q| match q {
                            Quantile::Median => "median".to_string(),
                            Quantile::Linear(q) => format!("quantile {q}"),
                        })
                        .collect();
                    let method = crate::ops::quantile::plan_for(
                        self,
                        a.dtype,
                        &a.extent.shape(),
                        *axis,
                        &group,
                    )?;
                    cx.steps.push(format!(
                        "{} of {a}{}: exact, {}{}",
                        kinds.join(", "),
                        match axis {
                            ReduceAxis::Axis0 => " along axis 0",
                            _ => "",
                        },
                        match method {
                            Some(crate::ops::quantile::Method::Sort) => {
                                "by the external sort (radix selection's per-column state \
                                 cannot fit), ranks read from the sorted columns"
                            }
                            _ => {
                                "by radix selection (a min/max pass, histogram passes, a \
                                 collection pass)"
                            }
                        },
                        spill_note(a),
                    ));
                }
                e.clone()
            }
            _ => rebuild(e, |c| self.explain_lower(c, cx))?,
        };
        cx.memo.insert(id(e), out.clone());
        Ok(out)
    }

    /// Runs a whole-array operator over `arg` (already lowered) into a
    /// spill file and returns a source reading it.
    fn materialize(
        &self,
        op: ArrayOp,
        e: &Expr,
        arg: &Expr,
        cx: &mut Lowered,
        report: &mut RunReport,
    ) -> Result<Expr> {
        if op == ArrayOp::Persist {
            // A source is on disk already.
            if matches!(&*arg.node, Node::Source(_)) {
                return Ok(arg.clone());
            }
            let src = self.array_source(arg, cx, report)?;
            return Ok(Expr::source(src));
        }
        let src = self.array_source(arg, cx, report)?;
        let shape = e.extent.shape();
        let bytes = shape.iter().product::<u64>() * e.dtype.itemsize() as u64;
        let file = self.spill().create(bytes)?;
        {
            let sink = RowSink::Spill(&file);
            self.run_op(op, &src, &sink, report)?;
        }
        let spilled = Spilled::new(file, e.dtype, shape)?;
        let array = spilled.array.clone();
        cx.spills.push(spilled);
        Ok(Expr::source(array))
    }

    fn run_op(
        &self,
        op: ArrayOp,
        src: &ArrayFile,
        sink: &RowSink<'_>,
        report: &mut RunReport,
    ) -> Result<()> {
        match op {
            ArrayOp::Sort => crate::ops::sort::sort_any(self, src, sink, report),
            ArrayOp::Cumsum => crate::ops::cumsum::cumsum_into(self, src, sink, report),
            ArrayOp::Persist => Err(Error::Invalid(
                "internal: persist is not an operator to run".into(),
            )),
        }
    }

    /// The array `e` (lowered, streamed) as a file: a source as it is,
    /// anything else spilled by one pass.
    fn array_source(
        &self,
        e: &Expr,
        cx: &mut Lowered,
        report: &mut RunReport,
    ) -> Result<Arc<ArrayFile>> {
        if let Node::Source(f) = &*e.node {
            return Ok(f.clone());
        }
        if let Some(a) = cx.sources.get(&id(e)) {
            return Ok(a.clone());
        }
        let shape = e.extent.shape();
        let bytes = shape.iter().product::<u64>() * e.dtype.itemsize() as u64;
        let file = Arc::new(self.spill().create(bytes)?);
        let sub = self.run(std::slice::from_ref(e), Target::Spill(file.clone()))?;
        report.absorb(&sub.report);
        let file = Arc::try_unwrap(file)
            .map_err(|_| Error::Invalid("internal: spill file still shared".into()))?;
        let spilled = Spilled::new(file, e.dtype, shape)?;
        let array = spilled.array.clone();
        cx.spills.push(spilled);
        cx.sources.insert(id(e), array.clone());
        Ok(array)
    }

    /// A sort or cumsum written to `path`: straight into the output, no
    /// spilled copy. `None` when `exprs` is anything else.
    pub(crate) fn write_op(
        &self,
        exprs: &[Expr],
        path: &Path,
        spec: &OutputSpec,
        cx: &mut Lowered,
        report: &mut RunReport,
    ) -> Result<Option<AnyArray>> {
        let [e] = exprs else { return Ok(None) };
        let Node::Op(op @ (ArrayOp::Sort | ArrayOp::Cumsum), a) = &*e.node else {
            return Ok(None);
        };
        let a = self.lower(a, cx, report)?;
        let src = self.array_source(&a, cx, report)?;
        let writer = ArrayWriter::create(path, spec.clone())?;
        self.run_op(*op, &src, &RowSink::Writer(&writer), report)?;
        // Cancelled after the last block: still no output.
        self.check_cancel("output rows", report.blocks, report.blocks)?;
        writer.finish()?;
        Ok(Some(AnyArray::scalar(0u8)))
    }
}
