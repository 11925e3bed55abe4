//! The planner: from requested outputs to the fewest streaming passes.
//!
//! Every reduction is placed in the pass after the reductions it depends on
//! (standardize = one statistics pass, then one write pass). All outputs of
//! a pass that stream the same rows share one read of each input block;
//! within a pass, elementwise chains compile into one fused [`Program`]
//! per row length, and reductions over the same expression and axis share
//! one [`ReducerSet`] (mean and std cost one sweep).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use outcore_chunker::{ArrayFile, DType};

use crate::error::{Error, Result};
use crate::expr::{BlockFn, Expr, Extent, Node, promote_operands};
use outcore_kernels::AnyArray;
use outcore_kernels::cast::{convert_buf, expand, truncate};
use outcore_kernels::eval::{Buf, Instr, Lane, Program, Shape, lane_of};
use outcore_kernels::{BinaryOp, UnaryOp};
use outcore_kernels::{ReduceAxis, ReduceOp, ReducerSet};

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

/// Reductions over one input and axis.
pub(crate) struct ReduceSink {
    pub(crate) input: Input,
    pub(crate) axis: ReduceAxis,
    pub(crate) set: ReducerSet,
    /// For each op of the set: the Reduce nodes it answers, and the dtype
    /// NumPy gives the result (lane reductions are cast back to it).
    pub(crate) targets: Vec<(ReduceOp, Vec<NodeId>, DType)>,
    /// The NumPy shape of an axis-0 result (the trailing shape).
    pub(crate) row_shape: Vec<u64>,
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
}

/// A fused program over rows of one length.
pub(crate) struct Frame {
    pub(crate) prog: Program,
    pub(crate) cols: usize,
    /// Computes a `map_blocks` input only; never shared with sinks.
    pub(crate) dedicated: bool,
}

/// One streaming pass over the rows of its inputs.
pub(crate) struct Pass {
    pub(crate) rows: u64,
    pub(crate) sources: Vec<Arc<ArrayFile>>,
    pub(crate) frames: Vec<Frame>,
    pub(crate) stages: Vec<Stage>,
    pub(crate) reduces: Vec<ReduceSink>,
    pub(crate) stores: Vec<StoreSink>,
}

impl Pass {
    /// Input bytes per row (all sources).
    pub(crate) fn source_row_bytes(&self) -> u64 {
        self.sources
            .iter()
            .map(|s| s.meta().row_bytes() as u64)
            .sum()
    }
}

/// Builds the passes that compute the Reduce nodes in `reduces` and the
/// full-extent expressions in `stores`, level by level, given the values
/// already computed.
pub(crate) struct Planner<'a> {
    pub(crate) values: &'a HashMap<NodeId, AnyArray>,
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
        | Node::Const { .. }
        | Node::Invalid(_)
        | Node::Quantile(..)
        | Node::Op(..) => 0,
        Node::Reduce(_, _, a) => level(a, memo) + 1,
        Node::Unary(_, a) | Node::Cast(a, _) => level(a, memo),
        Node::MapBlocks { input, .. } => level(input, memo),
        Node::Binary(_, a, b) => level(a, memo).max(level(b, memo)),
        Node::Where(c, a, b) => level(c, memo).max(level(a, memo)).max(level(b, memo)),
    };
    memo.insert(id(e), l);
    l
}

/// Collects the Reduce nodes reachable from `e` (including `e`).
pub(crate) fn reduce_nodes(e: &Expr, out: &mut Vec<Expr>, seen: &mut HashMap<NodeId, ()>) {
    if seen.insert(id(e), ()).is_some() {
        return;
    }
    match &*e.node {
        Node::Source(_)
        | Node::Const { .. }
        | Node::Invalid(_)
        | Node::Quantile(..)
        | Node::Op(..) => {}
        Node::Reduce(_, _, a) => {
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

    fn source(&mut self, file: &Arc<ArrayFile>) -> usize {
        let key = Arc::as_ptr(file) as usize;
        if let Some(&i) = self.source_ids.get(&key) {
            return i;
        }
        self.pass.sources.push(file.clone());
        self.source_ids.insert(key, self.pass.sources.len() - 1);
        self.pass.sources.len() - 1
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
            Node::Source(file) => {
                let src = self.source(file);
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
                self.pass.stages.push(Stage {
                    frame: in_frame,
                    reg,
                    in_dtype: input.dtype,
                    f: func.clone(),
                    out_dtype: *dtype,
                    out_len: *row_len,
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
            Node::Const { .. } | Node::Reduce(..) | Node::Quantile(..) | Node::Op(..) => {
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
        Extent::Row { .. } => Shape::Row,
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
        Node::Reduce(..) | Node::Quantile(..) | Node::Op(..) => Err(Error::Invalid(format!(
            "internal: {e} was not computed before it was needed"
        ))),
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
            let mut machine = outcore_kernels::eval::Machine::new(prog, n);
            let inputs = outcore_kernels::eval::BlockInputs {
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
            Extent::Row { .. } => Shape::Row,
            Extent::Column { .. } => Shape::Col,
            Extent::Full { .. } => Shape::Full,
        };
        let leaf = self.values.contains_key(&id(e))
            || matches!(
                &*e.node,
                Node::Const { .. } | Node::Reduce(..) | Node::Quantile(..) | Node::Invalid(_)
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
        // Group reductions by (argument, axis).
        // (argument, axis, [(op, node, result dtype)])
        type Group = (Expr, ReduceAxis, Vec<(ReduceOp, NodeId, DType)>);
        let mut groups: Vec<Group> = Vec::new();
        for r in &req.reduces {
            let Node::Reduce(op, axis, arg) = &*r.node else {
                continue;
            };
            let key = (id(arg), *axis);
            match groups.iter_mut().find(|g| (id(&g.0), g.1) == key) {
                Some(g) => g.2.push((*op, id(r), r.dtype)),
                None => groups.push((arg.clone(), *axis, vec![(*op, id(r), r.dtype)])),
            }
        }
        for (arg, axis, ops) in groups {
            let row_len = arg.extent.row_len();
            let (input, in_dtype) = match &*arg.node {
                Node::Source(file) => (Input::Source(b.source(file)), arg.dtype),
                _ => {
                    let f = b.frame_for(row_len);
                    let reg = b.compile(f, &arg)?;
                    (
                        Input::Reg { frame: f, reg },
                        b.pass.frames[f].prog.lane(reg).dtype(),
                    )
                }
            };
            let mut uniq: Vec<(ReduceOp, Vec<NodeId>, DType)> = Vec::new();
            for (op, node, dtype) in ops {
                match uniq.iter_mut().find(|u| u.0 == op) {
                    Some(u) => u.1.push(node),
                    None => uniq.push((op, vec![node], dtype)),
                }
            }
            let op_list: Vec<ReduceOp> = uniq.iter().map(|u| u.0).collect();
            let set = ReducerSet::new(&op_list, axis, in_dtype, req.rows, row_len)?;
            let row_shape = match &arg.extent {
                Extent::Full { trailing, .. } => trailing.clone().unwrap_or_default(),
                _ => vec![],
            };
            b.pass.reduces.push(ReduceSink {
                input,
                axis,
                set,
                targets: uniq,
                row_shape,
            });
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

/// A human-readable description of a plan, from [`Engine::explain`](crate::Engine::explain).
#[derive(Clone, Debug, Default)]
pub struct Explain {
    /// Whole-array operators and quantiles, run before the passes, one
    /// line each.
    pub steps: Vec<String>,
    /// One entry per pass.
    pub passes: Vec<PassInfo>,
    /// The memory limit in bytes.
    pub memory_limit: u64,
    /// Worker threads.
    pub threads: usize,
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
        writeln!(
            f,
            "plan: {} pass{} on {} thread{}, memory limit {}",
            self.passes.len(),
            if self.passes.len() == 1 { "" } else { "es" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            fb(self.memory_limit)
        )?;
        for step in &self.steps {
            writeln!(f, "before the passes: {step}")?;
        }
        for (i, p) in self.passes.iter().enumerate() {
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
