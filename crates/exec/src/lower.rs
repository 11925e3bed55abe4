//! Lowering: from the requested expressions to the run's steps, as data.
//!
//! Whole-array operators (sort, cumsum, persist) and quantiles cannot
//! stream row by row, so they become steps of their own that read an
//! array from a file: a source, or an intermediate that an earlier pass
//! spills to a slot (an unnamed spill file). The graph is rewritten so
//! that what remains streams row blocks from sources and slots, with
//! quantiles as values known by then; it is split into passes, each
//! reduction in the pass after those it depends on.
//!
//! Nothing runs here: [`Plan`] is what `run` executes
//! (`execute.rs`) and what `explain` describes (`explain.rs`), step by
//! step, so the two cannot disagree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use outcore_chunker::DType;
use outcore_kernels::ReduceAxis;

use crate::compile::{NodeId, PassRequest, id, pass_requests};
use crate::error::Result;
use crate::expr::{Expr, Extent, Node};
use crate::ops::kind::{ArrayOp, Quantile};

/// A slot: a spill file an earlier step fills with an array.
pub(crate) type SlotId = usize;

/// Where a pass's streamed output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreTo {
    /// Returned in memory.
    Collect,
    /// The run's output file.
    Output,
    /// A slot.
    Slot(SlotId),
}

/// One step of a run.
pub(crate) enum Step {
    /// A streaming pass: its reductions, and its streamed outputs, each
    /// going where `to` says.
    Pass { req: PassRequest, to: Vec<StoreTo> },
    /// `sort` or `cumsum` of an array in a file (a source or a slot) into
    /// a slot or the output.
    Op {
        op: ArrayOp,
        input: Expr,
        to: StoreTo,
    },
    /// Exact quantiles of an array in a file along `axis`: the values of
    /// the quantile nodes `nodes` (one per kind, in the same order).
    Quantiles {
        input: Expr,
        axis: ReduceAxis,
        kinds: Vec<Quantile>,
        nodes: Vec<Expr>,
    },
}

/// A run, as data: its steps in order, and the requested expressions
/// rewritten over sources, slots and known values.
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) outputs: Vec<Expr>,
    /// The dtype and shape of each slot's array.
    pub(crate) slots: Vec<(DType, Vec<u64>)>,
}

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Values returned in memory.
    Collect,
    /// One streamed expression written to the output (a lone sort or
    /// cumsum straight into it).
    Write,
    /// Described, not run: streamed expressions are sized as written.
    Explain,
}

impl Plan {
    /// The steps of computing `exprs` for `goal`.
    ///
    /// # Errors
    ///
    /// Construction errors recorded in the expressions; with
    /// [`Goal::Write`], an expression that is not streamed.
    pub(crate) fn new(exprs: &[Expr], goal: Goal) -> Result<Plan> {
        for e in exprs {
            e.check()?;
        }
        let mut l = Lowering::new(exprs);
        // A lone sort or cumsum that is written goes straight into the
        // output: no spilled copy, no pass.
        if goal != Goal::Collect
            && let [e] = exprs
            && let Node::Op(op @ (ArrayOp::Sort | ArrayOp::Cumsum), a) = &*e.node
        {
            let a = l.lower(a)?;
            let input = l.in_file(&a)?;
            l.steps.push(Step::Op {
                op: *op,
                input,
                to: StoreTo::Output,
            });
            return Ok(Plan {
                steps: l.steps,
                outputs: Vec::new(),
                slots: l.slots,
            });
        }
        let outputs = exprs
            .iter()
            .map(|e| l.lower(e))
            .collect::<Result<Vec<Expr>>>()?;
        let to = match goal {
            Goal::Collect => StoreTo::Collect,
            Goal::Write | Goal::Explain => StoreTo::Output,
        };
        l.passes(&outputs, goal == Goal::Write, to)?;
        Ok(Plan {
            steps: l.steps,
            outputs,
            slots: l.slots,
        })
    }
}

/// Quantiles computed together: of one argument, along one axis, all
/// skipping NaN or none.
type QuantileGroup = (NodeId, ReduceAxis, bool);

/// The state of lowering one computation.
struct Lowering {
    memo: HashMap<NodeId, Expr>,
    /// Quantile nodes by (argument, axis, NaN skipped): computed together.
    groups: HashMap<QuantileGroup, Vec<(Expr, Quantile)>>,
    /// Quantile groups already given a step.
    quantiles: HashSet<QuantileGroup>,
    /// Intermediates already spilled, by (lowered) node.
    spilled: HashMap<NodeId, Expr>,
    steps: Vec<Step>,
    slots: Vec<(DType, Vec<u64>)>,
}

impl Lowering {
    /// Finds the quantiles of `exprs`, grouped by argument and axis.
    fn new(exprs: &[Expr]) -> Lowering {
        let mut groups: HashMap<QuantileGroup, Vec<(Expr, Quantile)>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<&Expr> = exprs.iter().collect();
        while let Some(e) = stack.pop() {
            if !seen.insert(id(e)) {
                continue;
            }
            if let Node::Quantile(q, axis, a) = &*e.node {
                groups
                    .entry((id(a), *axis, q.skips_nan()))
                    .or_default()
                    .push((e.clone(), *q));
            }
            stack.extend(e.children());
        }
        Lowering {
            memo: HashMap::new(),
            groups,
            quantiles: HashSet::new(),
            spilled: HashMap::new(),
            steps: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// A new slot for an array like `e`, and a node reading it.
    fn slot(&mut self, e: &Expr) -> (SlotId, Expr) {
        self.slots.push((e.dtype, e.extent.shape()));
        let k = self.slots.len() - 1;
        (k, Expr::new(Node::Slot(k), e.dtype, e.extent.clone()))
    }

    /// Rewrites `e` without whole-array operators or quantiles, adding
    /// the steps that compute them.
    fn lower(&mut self, e: &Expr) -> Result<Expr> {
        if let Some(x) = self.memo.get(&id(e)) {
            return Ok(x.clone());
        }
        let out = match &*e.node {
            Node::Op(ArrayOp::Persist, a) => {
                let a = self.lower(a)?;
                self.in_file(&a)?
            }
            Node::Op(op, a) => {
                let a = self.lower(a)?;
                let input = self.in_file(&a)?;
                let (k, out) = self.slot(e);
                self.steps.push(Step::Op {
                    op: *op,
                    input,
                    to: StoreTo::Slot(k),
                });
                out
            }
            Node::Quantile(q, axis, a) => {
                let key = (id(a), *axis, q.skips_nan());
                if self.quantiles.insert(key) {
                    let group = self.groups.get(&key).cloned().unwrap_or_default();
                    let a = self.lower(a)?;
                    let input = self.in_file(&a)?;
                    self.steps.push(Step::Quantiles {
                        input,
                        axis: *axis,
                        kinds: group.iter().map(|g| g.1).collect(),
                        nodes: group.iter().map(|g| g.0.clone()).collect(),
                    });
                }
                // Its value is known by the passes; the node stays as its key.
                e.clone()
            }
            _ => rebuild(e, |c| self.lower(c))?,
        };
        self.memo.insert(id(e), out.clone());
        Ok(out)
    }

    /// The array `e` (lowered, streamed) in a file: a source or slot as
    /// it is, anything else spilled to a new slot by its passes.
    fn in_file(&mut self, e: &Expr) -> Result<Expr> {
        if matches!(&*e.node, Node::Source(_) | Node::Slot(_)) {
            return Ok(e.clone());
        }
        if let Some(s) = self.spilled.get(&id(e)) {
            return Ok(s.clone());
        }
        let (k, slot) = self.slot(e);
        self.passes(std::slice::from_ref(e), true, StoreTo::Slot(k))?;
        self.spilled.insert(id(e), slot.clone());
        Ok(slot)
    }

    /// The passes computing `exprs` (lowered), their streamed outputs
    /// going to `to`.
    fn passes(&mut self, exprs: &[Expr], write: bool, to: StoreTo) -> Result<()> {
        for req in pass_requests(exprs, write)? {
            let n = req.stores.len();
            self.steps.push(Step::Pass {
                req,
                to: vec![to; n],
            });
        }
        Ok(())
    }
}

/// `e` with each child replaced by `f(child)`; `e` itself when no child
/// changes. Quantiles and operators are left to the caller.
fn rebuild(e: &Expr, mut f: impl FnMut(&Expr) -> Result<Expr>) -> Result<Expr> {
    let same = |a: &Expr, b: &Expr| Arc::ptr_eq(&a.node, &b.node);
    let node = match &*e.node {
        Node::Source(_)
        | Node::Slot(_)
        | Node::Const { .. }
        | Node::Values(_)
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
        Node::Kernel(spec, a) => {
            let a2 = f(a)?;
            if same(a, &a2) {
                return Ok(e.clone());
            }
            Node::Kernel(spec.clone(), a2)
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

/// A value of the right dtype and shape for a reduction or quantile not
/// yet computed, whose pages are never written: sizing a plan with a row
/// of millions of them takes no memory.
pub(crate) fn placeholder(e: &Expr) -> outcore_kernels::AnyArray {
    let shape: Vec<usize> = match &e.extent {
        Extent::Row { row_len, .. } => vec![*row_len],
        Extent::Column { rows } => vec![*rows as usize],
        Extent::Value { .. } => vec![e.extent.row_len()],
        Extent::Scalar | Extent::Full { .. } => vec![],
    };
    outcore_kernels::cast::zeroed(e.dtype, &shape)
}
