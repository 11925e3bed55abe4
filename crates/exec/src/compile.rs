//! Pass compilation: from the reductions and streamed outputs of one pass
//! to the fused programs and reduction kernels that run over its blocks.
//!
//! Every reduction is placed in the pass after the reductions it depends on
//! (standardize = one statistics pass, then one write pass). All outputs of
//! a pass that stream the same rows share one read of each input block;
//! within a pass, elementwise chains compile into one fused [`Program`]
//! per row length, and reductions over the same expression and axis share
//! one [`ReducerSet`] (mean and std cost one sweep).

use std::collections::HashMap;
use std::sync::Arc;

use outcore_chunker::{ArrayFile, DType};

use outcore_kernels::cast::{convert_buf, expand, truncate};
use outcore_kernels::eval::{BlockInputs, Buf, Instr, Lane, Machine, Program, Shape, lane_of};
use outcore_kernels::{AnyArray, BinaryOp, DynKernel, ReduceAxis, ReduceOp, ReducerSet, UnaryOp};

use crate::error::{Error, Result};
use crate::expr::{BlockFn, Expr, Extent, Node, promote_operands};
use crate::kernel::KernelSpec;

/// Identity of an expression node (its allocation address). The plan
/// keeps the expressions alive, so addresses stay unique while it exists.
pub(crate) type NodeId = usize;

pub(crate) fn id(e: &Expr) -> NodeId {
    Arc::as_ptr(&e.node) as *const () as usize
}

/// Where a sink takes its values from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Input {
    /// A register of a frame's program.
    Reg { frame: usize, reg: usize },
    /// An input block as read (no conversion).
    Source(usize),
}

/// A reduction kernel over one input: the built-in reductions of one
/// input and axis (sharing states), or a kernel node of its own.
pub(crate) struct ReduceSink {
    pub(crate) input: Input,
    pub(crate) kernel: Arc<dyn DynKernel>,
    /// The dtype the kernel's views must have when the input's lane is
    /// another (the values are converted tile by tile).
    pub(crate) view_dtype: Option<DType>,
    /// For each result of the kernel, in order: the nodes it answers, and
    /// the dtype NumPy gives it (lane reductions are cast back to it).
    pub(crate) targets: Vec<(Vec<NodeId>, DType)>,
    /// The NumPy shape of an axis-0 result (the trailing shape), which
    /// results are reshaped to.
    pub(crate) row_shape: Option<Vec<u64>>,
}

/// An elementwise expression materialised block by block: written to an
/// output, or collected in memory.
pub(crate) struct StoreSink {
    pub(crate) frame: usize,
    pub(crate) reg: usize,
    pub(crate) dtype: DType,
    pub(crate) target: NodeId,
}

/// A `map_blocks` function evaluated once per block before the frames.
pub(crate) struct Stage {
    /// The dedicated frame computing the function's input.
    pub(crate) frame: usize,
    pub(crate) reg: usize,
    pub(crate) in_dtype: DType,
    pub(crate) f: Arc<dyn BlockFn>,
    pub(crate) out_dtype: DType,
    pub(crate) out_len: usize,
    /// The input is an input block as read (a file or slot of the
    /// function's dtype): the function gets the block's view, uncopied.
    pub(crate) direct: Option<usize>,
}

/// A fused program over rows of one length.
pub(crate) struct Frame {
    pub(crate) prog: Program,
    pub(crate) cols: usize,
    /// Computes a `map_blocks` input only; never shared with sinks.
    pub(crate) dedicated: bool,
}

/// An input of a pass: a file, or the spill file an earlier step fills
/// (known by its row size only while the plan is sized or explained).
pub(crate) struct PassSource {
    pub(crate) file: Option<Arc<ArrayFile>>,
    pub(crate) row_bytes: u64,
    /// The path, or `<spilled #k>`.
    pub(crate) label: String,
}

/// One streaming pass over the rows of its inputs.
pub(crate) struct Pass {
    pub(crate) rows: u64,
    pub(crate) sources: Vec<PassSource>,
    pub(crate) frames: Vec<Frame>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) reduces: Vec<ReduceSink>,
    pub(crate) stores: Vec<StoreSink>,
}

impl Pass {
    /// Input bytes per row (all sources).
    pub(crate) fn source_row_bytes(&self) -> u64 {
        self.sources.iter().map(|s| s.row_bytes).sum()
    }
}

/// Builds the passes that compute the Reduce nodes in `reduces` and the
/// full-extent expressions in `stores`, level by level, given the values
/// already computed.
pub(crate) struct Planner<'a> {
    pub(crate) values: &'a HashMap<NodeId, AnyArray>,
    /// The files of the slots filled so far (indexed by slot).
    pub(crate) slots: &'a [Option<Arc<ArrayFile>>],
    /// Planning only, to size the pass before anything runs: the values
    /// of earlier passes (placeholders then) become zeroed buffers of
    /// their length, whose pages are never written, instead of copies —
    /// a row of millions of values takes no memory while it is sized.
    pub(crate) sizing: bool,
}

/// The pass level of an expression: 0 when it needs no reduction,
/// otherwise one more than the deepest reduction it streams over.
pub(crate) fn level(e: &Expr, memo: &mut HashMap<NodeId, usize>) -> usize {
    if let Some(&l) = memo.get(&id(e)) {
        return l;
    }
    let l = match &*e.node {
        // Quantiles and whole-array operators are computed before the
        // passes (the engine lowers them); their values are known.
        Node::Source(_)
        | Node::Slot(_)
        | Node::Const { .. }
        | Node::Values(_)
        | Node::Invalid(_)
        | Node::Quantile(..)
        | Node::Op(..) => 0,
        Node::Reduce(_, _, a) | Node::Kernel(_, a) => level(a, memo) + 1,
        Node::Unary(_, a) | Node::Cast(a, _) => level(a, memo),
        Node::MapBlocks { input, .. } => level(input, memo),
        Node::Binary(_, a, b) => level(a, memo).max(level(b, memo)),
        Node::Where(c, a, b) => level(c, memo).max(level(a, memo)).max(level(b, memo)),
    };
    memo.insert(id(e), l);
    l
}

/// Collects the reduction nodes (built-in and kernel) reachable from `e`
/// (including `e`).
pub(crate) fn reduce_nodes(e: &Expr, out: &mut Vec<Expr>, seen: &mut HashMap<NodeId, ()>) {
    if seen.insert(id(e), ()).is_some() {
        return;
    }
    match &*e.node {
        Node::Source(_)
        | Node::Slot(_)
        | Node::Const { .. }
        | Node::Values(_)
        | Node::Invalid(_)
        | Node::Quantile(..)
        | Node::Op(..) => {}
        Node::Reduce(_, _, a) | Node::Kernel(_, a) => {
            reduce_nodes(a, out, seen);
            out.push(e.clone());
        }
        Node::Unary(_, a) | Node::Cast(a, _) => reduce_nodes(a, out, seen),
        Node::MapBlocks { input, .. } => reduce_nodes(input, out, seen),
        Node::Binary(_, a, b) => {
            reduce_nodes(a, out, seen);
            reduce_nodes(b, out, seen);
        }
        Node::Where(c, a, b) => {
            reduce_nodes(c, out, seen);
            reduce_nodes(a, out, seen);
            reduce_nodes(b, out, seen);
        }
    }
}

struct PassBuilder<'a> {
    values: &'a HashMap<NodeId, AnyArray>,
    slots: &'a [Option<Arc<ArrayFile>>],
    /// See [`Planner::sizing`].
    sizing: bool,
    pass: Pass,
    /// Per frame: node id → register.
    memo: Vec<HashMap<NodeId, usize>>,
    source_ids: HashMap<usize, usize>,
}

impl<'a> PassBuilder<'a> {
    fn frame_for(&mut self, cols: usize) -> usize {
        if let Some(i) = self
            .pass
            .frames
            .iter()
            .position(|f| f.cols == cols && !f.dedicated)
        {
            return i;
        }
        self.new_frame(cols, false)
    }

    fn new_frame(&mut self, cols: usize, dedicated: bool) -> usize {
        self.pass.frames.push(Frame {
            prog: Program {
                instrs: Vec::new(),
                frame: Some(Shape::Full),
            },
            cols,
            dedicated,
        });
        self.memo.push(HashMap::new());
        self.pass.frames.len() - 1
    }

    /// The pass input of a source or slot node.
    fn source(&mut self, e: &Expr) -> Result<usize> {
        let src = match &*e.node {
            Node::Source(file) => PassSource {
                file: Some(file.clone()),
                row_bytes: file.meta().row_bytes() as u64,
                label: file.path().display().to_string(),
            },
            Node::Slot(k) => {
                let file = self.slots.get(*k).cloned().flatten();
                if file.is_none() && !self.sizing {
                    return Err(Error::Invalid(format!(
                        "internal: {e} is read before it is filled"
                    )));
                }
                PassSource {
                    file,
                    row_bytes: e.extent.row_len() as u64 * e.dtype.itemsize() as u64,
                    label: e.to_string(),
                }
            }
            _ => return Err(Error::Invalid(format!("internal: {e} is not a source"))),
        };
        let key = id(e);
        if let Some(&i) = self.source_ids.get(&key) {
            return Ok(i);
        }
        self.pass.sources.push(src);
        self.source_ids.insert(key, self.pass.sources.len() - 1);
        Ok(self.pass.sources.len() - 1)
    }

    /// Compiles a full-extent expression into frame `f`; returns its register.
    fn compile(&mut self, f: usize, e: &Expr) -> Result<usize> {
        if let Some(&r) = self.memo[f].get(&id(e)) {
            return Ok(r);
        }
        let reg = match &e.extent {
            Extent::Full { .. } => self.compile_full(f, e)?,
            _ => {
                // A value computed before this pass (a reduction or an
                // expression of reductions and constants): broadcast it.
                let (data, shape) = self.value(e)?;
                self.push(
                    f,
                    Instr::Value {
                        data: Arc::new(data),
                        shape,
                    },
                )
            }
        };
        self.memo[f].insert(id(e), reg);
        Ok(reg)
    }

    /// A value computed before this pass, as [`small_value`]; zeroed
    /// buffers of its length when only sizing (see [`Planner::sizing`]).
    fn value(&self, e: &Expr) -> Result<(Buf, Shape)> {
        if !self.sizing {
            return small_value(self.values, e);
        }
        let (shape, len) = match &e.extent {
            Extent::Scalar => return small_value(self.values, e),
            Extent::Row { row_len, .. } => (Shape::Row, *row_len),
            Extent::Value { .. } => (Shape::Row, e.extent.row_len()),
            Extent::Column { rows } => (Shape::Col, *rows as usize),
            Extent::Full { .. } => {
                return Err(Error::Invalid(format!("internal: {e} is streamed")));
            }
        };
        if let Node::Invalid(msg) = &*e.node {
            return Err(Error::Invalid(msg.clone()));
        }
        let buf = match lane_of(e.dtype) {
            Lane::Bool => Buf::Bool(bytemuck::zeroed_vec(len)),
            Lane::I64 => Buf::I64(bytemuck::zeroed_vec(len)),
            Lane::U64 => Buf::U64(bytemuck::zeroed_vec(len)),
            Lane::F64 => Buf::F64(bytemuck::zeroed_vec(len)),
        };
        Ok((buf, shape))
    }

    fn push(&mut self, f: usize, instr: Instr) -> usize {
        self.pass.frames[f].prog.push(instr)
    }

    /// Compiles a child: streamed (`small` is `None`) or in memory over a
    /// frame of kind `small`.
    fn child(&mut self, f: usize, e: &Expr, small: Option<Shape>) -> Result<usize> {
        match small {
            Some(frame) => self.compile_small(f, e, frame),
            None => self.compile(f, e),
        }
    }

    /// Compiles an elementwise node (unary, binary, where, cast), its
    /// children streamed or in memory as `small` says.
    fn elementwise(&mut self, f: usize, e: &Expr, small: Option<Shape>) -> Result<usize> {
        let instr = match &*e.node {
            Node::Unary(op, a) => {
                let ra = self.child(f, a, small)?;
                let lane = match op {
                    UnaryOp::Sqrt | UnaryOp::Exp | UnaryOp::Log | UnaryOp::Log1p => Lane::F64,
                    _ => lane_of(a.dtype),
                };
                Instr::Unary {
                    op: *op,
                    arg: self.in_lane(f, ra, lane),
                    dtype: e.dtype,
                }
            }
            Node::Binary(op, a, b) => {
                let compute = if op.is_comparison() {
                    promote_operands(a, b)
                } else if *op == BinaryOp::And || *op == BinaryOp::Or {
                    DType::Bool
                } else {
                    e.dtype
                };
                Instr::Binary {
                    op: *op,
                    a: self.operand(f, a, compute, small)?,
                    b: self.operand(f, b, compute, small)?,
                    dtype: e.dtype,
                }
            }
            Node::Where(c, a, b) => Instr::Where {
                c: self.child(f, c, small)?,
                a: self.operand(f, a, e.dtype, small)?,
                b: self.operand(f, b, e.dtype, small)?,
                dtype: e.dtype,
            },
            Node::Cast(a, dtype) => Instr::Cast {
                arg: self.child(f, a, small)?,
                dtype: *dtype,
            },
            _ => {
                return Err(Error::Invalid(format!(
                    "internal: {e} is not an elementwise operation"
                )));
            }
        };
        Ok(self.push(f, instr))
    }

    /// Compiles an operand of an operation computed in `compute`, in that
    /// dtype's lane. A literal (weak scalar) is first converted to
    /// `compute`, as NumPy converts a Python scalar to the array's dtype:
    /// `x_f32 * 0.1` multiplies by `float32(0.1)`. `small` is the frame
    /// kind for in-memory evaluation.
    fn operand(
        &mut self,
        f: usize,
        e: &Expr,
        compute: DType,
        small: Option<Shape>,
    ) -> Result<usize> {
        if let Node::Const {
            value, weak: true, ..
        } = &*e.node
            && matches!(compute, DType::F32 | DType::F16)
        {
            let mut v = [*value];
            outcore_kernels::eval::round_to(&mut v, compute);
            return Ok(self.push(
                f,
                Instr::Value {
                    data: Arc::new(Buf::F64(v.to_vec())),
                    shape: Shape::Scalar,
                },
            ));
        }
        let r = self.child(f, e, small)?;
        Ok(self.in_lane(f, r, lane_of(compute)))
    }

    /// Register `r` in lane `lane`, converting if needed.
    fn in_lane(&mut self, f: usize, r: usize, lane: Lane) -> usize {
        let prog = &self.pass.frames[f].prog;
        if prog.lane(r) == lane {
            return r;
        }
        if let Instr::Value { data, shape } = &prog.instrs[r] {
            let converted = convert_buf(data, lane);
            let shape = *shape;
            return self.push(
                f,
                Instr::Value {
                    data: Arc::new(converted),
                    shape,
                },
            );
        }
        self.push(f, Instr::Convert { arg: r, to: lane })
    }

    fn compile_full(&mut self, f: usize, e: &Expr) -> Result<usize> {
        Ok(match &*e.node {
            Node::Source(_) | Node::Slot(_) => {
                let src = self.source(e)?;
                self.push(
                    f,
                    Instr::Source {
                        src,
                        dtype: e.dtype,
                    },
                )
            }
            Node::MapBlocks {
                input,
                f: func,
                dtype,
                row_len,
            } => {
                let in_frame = self.new_frame(input.extent.row_len(), true);
                let reg = self.compile(in_frame, input)?;
                let reg = self.in_lane(in_frame, reg, lane_of(input.dtype));
                let direct = match &*input.node {
                    Node::Source(_) | Node::Slot(_) => Some(self.source(input)?),
                    _ => None,
                };
                self.pass.stages.push(Stage {
                    frame: in_frame,
                    reg,
                    in_dtype: input.dtype,
                    f: func.clone(),
                    out_dtype: *dtype,
                    out_len: *row_len,
                    direct,
                });
                let slot = self.pass.stages.len() - 1;
                self.push(
                    f,
                    Instr::Block {
                        slot,
                        dtype: *dtype,
                    },
                )
            }
            Node::Unary(..) | Node::Binary(..) | Node::Where(..) | Node::Cast(..) => {
                self.elementwise(f, e, None)?
            }
            Node::Const { .. }
            | Node::Values(_)
            | Node::Reduce(..)
            | Node::Kernel(..)
            | Node::Quantile(..)
            | Node::Op(..) => {
                return Err(Error::Invalid(format!(
                    "internal: {e} has a full extent but is not streamed"
                )));
            }
            Node::Invalid(msg) => return Err(Error::Invalid(msg.clone())),
        })
    }
}

/// Evaluates a non-streamed expression (constants and computed
/// reductions) in memory; returns its values in its dtype's lane and how
/// they broadcast.
pub(crate) fn small_value(values: &HashMap<NodeId, AnyArray>, e: &Expr) -> Result<(Buf, Shape)> {
    let shape = match e.extent {
        Extent::Scalar => Shape::Scalar,
        Extent::Row { .. } | Extent::Value { .. } => Shape::Row,
        Extent::Column { .. } => Shape::Col,
        Extent::Full { .. } => {
            return Err(Error::Invalid(format!("internal: {e} is streamed")));
        }
    };
    let lane = lane_of(e.dtype);
    if let Some(v) = values.get(&id(e)) {
        return Ok((Buf::from_array(v, lane), shape));
    }
    match &*e.node {
        Node::Const { value, int, .. } => {
            let buf = match (lane, int) {
                (Lane::I64, Some(i)) => Buf::I64(vec![*i]),
                (Lane::U64, Some(i)) => Buf::U64(vec![*i as u64]),
                (Lane::Bool, _) => Buf::Bool(vec![*value != 0.0]),
                (Lane::I64, None) => Buf::I64(vec![*value as i64]),
                (Lane::U64, None) => Buf::U64(vec![*value as u64]),
                (Lane::F64, _) => Buf::F64(vec![*value]),
            };
            Ok((buf, shape))
        }
        Node::Values(v) => Ok((Buf::from_array(v, lane), shape)),
        Node::Reduce(..) | Node::Kernel(..) | Node::Quantile(..) | Node::Op(..) => {
            Err(Error::Invalid(format!(
                "internal: {e} was not computed before it was needed"
            )))
        }
        Node::Invalid(msg) => Err(Error::Invalid(msg.clone())),
        _ => {
            // Evaluate the expression over its own (small) frame.
            let (rows, cols) = match shape {
                Shape::Scalar => (1, 1),
                Shape::Row => (1, e.extent.row_len()),
                Shape::Col => (e.extent.rows() as usize, 1),
                Shape::Full => unreachable!(),
            };
            let mut b = PassBuilder {
                values,
                slots: &[],
                sizing: false,
                pass: Pass {
                    rows: rows as u64,
                    sources: Vec::new(),
                    frames: Vec::new(),
                    stages: Vec::new(),
                    reduces: Vec::new(),
                    stores: Vec::new(),
                },
                memo: vec![HashMap::new()],
                source_ids: HashMap::new(),
            };
            b.pass.frames.push(Frame {
                prog: Program {
                    instrs: Vec::new(),
                    frame: Some(shape),
                },
                cols,
                dedicated: false,
            });
            let reg = b.compile_small(0, e, shape)?;
            let prog = &b.pass.frames[0].prog;
            let n = rows * cols;
            let mut machine = Machine::new(prog, n);
            let inputs = BlockInputs {
                sources: &[],
                blocks: &[],
                first_row: 0,
            };
            machine.run(prog, &inputs, 0, rows, cols)?;
            let out = match (machine.reg(reg), &prog.instrs[reg]) {
                (_, Instr::Value { data, .. }) => expand(data, n),
                (buf, _) => truncate(buf, n),
            };
            Ok((out, shape))
        }
    }
}

impl PassBuilder<'_> {
    /// Compiles an expression of the frame's own extent (in-memory
    /// evaluation of reduced values).
    fn compile_small(&mut self, f: usize, e: &Expr, frame: Shape) -> Result<usize> {
        if let Some(&r) = self.memo[f].get(&id(e)) {
            return Ok(r);
        }
        let own = match e.extent {
            Extent::Scalar => Shape::Scalar,
            Extent::Row { .. } | Extent::Value { .. } => Shape::Row,
            Extent::Column { .. } => Shape::Col,
            Extent::Full { .. } => Shape::Full,
        };
        let leaf = self.values.contains_key(&id(e))
            || matches!(
                &*e.node,
                Node::Const { .. }
                    | Node::Reduce(..)
                    | Node::Kernel(..)
                    | Node::Quantile(..)
                    | Node::Invalid(_)
            )
            || own != frame;
        let reg = if leaf {
            let (data, shape) = self.value(e)?;
            self.push(
                f,
                Instr::Value {
                    data: Arc::new(data),
                    shape,
                },
            )
        } else {
            self.elementwise(f, e, Some(frame))?
        };
        self.memo[f].insert(id(e), reg);
        Ok(reg)
    }
}

/// What one pass must compute.
pub(crate) struct PassRequest {
    pub(crate) rows: u64,
    pub(crate) reduces: Vec<Expr>,
    pub(crate) stores: Vec<(Expr, DType)>,
}

impl Planner<'_> {
    /// Builds one pass from its request.
    pub(crate) fn build(&self, req: &PassRequest) -> Result<Pass> {
        let mut b = PassBuilder {
            values: self.values,
            slots: self.slots,
            sizing: self.sizing,
            pass: Pass {
                rows: req.rows,
                sources: Vec::new(),
                frames: Vec::new(),
                stages: Vec::new(),
                reduces: Vec::new(),
                stores: Vec::new(),
            },
            memo: Vec::new(),
            source_ids: HashMap::new(),
        };
        // Built-in reductions group by (argument, axis) into one kernel
        // sharing states; a kernel node is a sink of its own.
        enum Group {
            /// (argument, axis, [(op, node, result dtype)])
            Builtin(Expr, ReduceAxis, Vec<(ReduceOp, NodeId, DType)>),
            Kernel(Expr, Arc<dyn KernelSpec>, NodeId, DType),
        }
        let mut groups: Vec<Group> = Vec::new();
        for r in &req.reduces {
            match &*r.node {
                Node::Reduce(op, axis, arg) => {
                    let found = groups.iter_mut().find_map(|g| match g {
                        Group::Builtin(a, ax, ops) if id(a) == id(arg) && ax == axis => Some(ops),
                        _ => None,
                    });
                    match found {
                        Some(ops) => ops.push((*op, id(r), r.dtype)),
                        None => groups.push(Group::Builtin(
                            arg.clone(),
                            *axis,
                            vec![(*op, id(r), r.dtype)],
                        )),
                    }
                }
                Node::Kernel(spec, arg) => {
                    groups.push(Group::Kernel(arg.clone(), spec.clone(), id(r), r.dtype));
                }
                _ => {}
            }
        }
        for group in groups {
            let arg = match &group {
                Group::Builtin(arg, ..) | Group::Kernel(arg, ..) => arg.clone(),
            };
            let row_len = arg.extent.row_len();
            let (input, in_dtype) = match &*arg.node {
                Node::Source(_) | Node::Slot(_) => (Input::Source(b.source(&arg)?), arg.dtype),
                _ => {
                    let f = b.frame_for(row_len);
                    let reg = b.compile(f, &arg)?;
                    (
                        Input::Reg { frame: f, reg },
                        b.pass.frames[f].prog.lane(reg).dtype(),
                    )
                }
            };
            let trailing = match &arg.extent {
                Extent::Full { trailing, .. } => trailing.clone().unwrap_or_default(),
                _ => vec![],
            };
            let sink = match group {
                Group::Builtin(_, axis, ops) => {
                    let mut uniq: Vec<(ReduceOp, Vec<NodeId>, DType)> = Vec::new();
                    for (op, node, dtype) in ops {
                        match uniq.iter_mut().find(|u| u.0 == op) {
                            Some(u) => u.1.push(node),
                            None => uniq.push((op, vec![node], dtype)),
                        }
                    }
                    let op_list: Vec<ReduceOp> = uniq.iter().map(|u| u.0).collect();
                    let set = ReducerSet::new(&op_list, axis, in_dtype, req.rows, row_len)?;
                    ReduceSink {
                        input,
                        kernel: Arc::new(set),
                        view_dtype: None,
                        targets: uniq.into_iter().map(|(_, n, d)| (n, d)).collect(),
                        row_shape: (axis == ReduceAxis::Axis0).then_some(trailing),
                    }
                }
                Group::Kernel(_, spec, node, dtype) => {
                    let view = spec.view_dtype().unwrap_or(in_dtype);
                    ReduceSink {
                        input,
                        kernel: spec.build(view, req.rows, row_len)?,
                        view_dtype: (view != in_dtype).then_some(view),
                        targets: vec![(vec![node], dtype)],
                        row_shape: (spec.axis() == Some(ReduceAxis::Axis0)).then_some(trailing),
                    }
                }
            };
            b.pass.reduces.push(sink);
        }
        for (e, dtype) in &req.stores {
            let f = b.frame_for(e.extent.row_len());
            let reg = b.compile(f, e)?;
            b.pass.stores.push(StoreSink {
                frame: f,
                reg,
                dtype: *dtype,
                target: id(e),
            });
        }
        Ok(b.pass)
    }
}

/// Splits the work of `exprs` into pass requests: each reduction in the
/// pass after those it depends on, each streamed expression in the pass
/// after its reductions, and passes apart by row count. With `write`,
/// every expression must be streamed.
pub(crate) fn pass_requests(exprs: &[Expr], write: bool) -> Result<Vec<PassRequest>> {
    for e in exprs {
        e.check()?;
    }
    let mut memo = HashMap::new();
    let mut reduces = Vec::new();
    let mut seen = HashMap::new();
    for e in exprs {
        reduce_nodes(e, &mut reduces, &mut seen);
    }
    let mut by_key: Vec<((usize, u64), PassRequest)> = Vec::new();
    fn slot(by_key: &mut Vec<((usize, u64), PassRequest)>, lvl: usize, rows: u64) -> usize {
        match by_key.iter().position(|(k, _)| *k == (lvl, rows)) {
            Some(i) => i,
            None => {
                by_key.push((
                    (lvl, rows),
                    PassRequest {
                        rows,
                        reduces: Vec::new(),
                        stores: Vec::new(),
                    },
                ));
                by_key.len() - 1
            }
        }
    }
    for r in reduces {
        let (Node::Reduce(_, _, arg) | Node::Kernel(_, arg)) = &*r.node else {
            continue;
        };
        let lvl = level(&r, &mut memo);
        let i = slot(&mut by_key, lvl, arg.extent.rows());
        by_key[i].1.reduces.push(r.clone());
    }
    for e in exprs {
        if let Extent::Full { rows, .. } = e.extent {
            let lvl = level(e, &mut memo) + 1;
            let i = slot(&mut by_key, lvl, rows);
            by_key[i].1.stores.push((e.clone(), e.dtype));
        } else if write {
            return Err(Error::Shape(format!("{e} is not streamed")));
        }
    }
    by_key.sort_by_key(|(k, _)| *k);
    Ok(by_key.into_iter().map(|(_, r)| r).collect())
}

/// Bytes per row of each streamed output of a pass request.
pub(crate) fn store_row_bytes(req: &PassRequest) -> Vec<u64> {
    req.stores
        .iter()
        .map(|(e, d)| e.extent.row_len() as u64 * d.itemsize() as u64)
        .collect()
}
