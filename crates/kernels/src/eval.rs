//! Fused evaluation of elementwise expressions over tiles.
//!
//! An expression is compiled into a [`Program`]: a list of instructions in
//! dependency order, each writing one register. A block is evaluated tile by
//! tile (a few thousand elements, so every register stays in L1/L2 cache):
//! each instruction is one tight, monomorphised loop over the tile — the
//! vectorizer's favourite shape — and dynamic dispatch happens once per
//! instruction per tile, never per element. No register is ever larger
//! than a tile, so a chain of any length reads each input block once and
//! allocates nothing per block.
//!
//! Values are computed in four lanes: `f64` for every float dtype, `i64`
//! for signed integers, `u64` for unsigned, `bool`. After each operation
//! the lane values are rounded to the operation's NumPy result dtype
//! (float32/float16 rounding, integer wrap-around), so results equal
//! NumPy's step by step.

use std::sync::Arc;

use half::f16;
use outcore_chunker::DType;

use crate::error::{Error, Result};
use crate::op::{BinaryOp, UnaryOp};
use crate::value::{AnyArray, AnyView};

/// Elements per tile (at least one row is always taken whole).
pub const TILE_ELEMS: usize = 2048;

/// The representation values are computed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// `bool`.
    Bool,
    /// `i64`, for every signed integer dtype.
    I64,
    /// `u64`, for every unsigned integer dtype.
    U64,
    /// `f64`, for every float dtype.
    F64,
}

/// The lane values of dtype `d` are computed in.
pub fn lane_of(d: DType) -> Lane {
    if d == DType::Bool {
        Lane::Bool
    } else if d.is_float() {
        Lane::F64
    } else if d.is_signed_int() {
        Lane::I64
    } else {
        Lane::U64
    }
}

impl Lane {
    /// The dtype whose values this lane holds unchanged.
    pub fn dtype(self) -> DType {
        match self {
            Lane::Bool => DType::Bool,
            Lane::I64 => DType::I64,
            Lane::U64 => DType::U64,
            Lane::F64 => DType::F64,
        }
    }
}

/// Conversions between element types and lanes (NumPy `astype` rules,
/// with Rust's saturating float-to-int casts).
pub trait LaneCast: Copy + Send + Sync + 'static {
    /// The value as `f64` (`astype(float64)`).
    fn to_f64(self) -> f64;
    /// The value as `i64` (floats truncate toward zero, saturating).
    fn to_i64(self) -> i64;
    /// The value as `u64` (floats truncate toward zero, saturating).
    fn to_u64(self) -> u64;
    /// `self != 0` (NaN is true).
    fn to_bool(self) -> bool;
    /// The `f64` as this type (rounded to nearest for narrower floats).
    fn from_f64(v: f64) -> Self;
    /// The `i64` as this type (integer narrowing wraps).
    fn from_i64(v: i64) -> Self;
    /// The `u64` as this type (integer narrowing wraps).
    fn from_u64(v: u64) -> Self;
    /// `0` or `1`.
    fn from_bool(v: bool) -> Self;
}

macro_rules! lane_cast_num {
    ($($t:ty),*) => {$(
        impl LaneCast for $t {
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn to_i64(self) -> i64 { self as i64 }
            #[inline(always)] fn to_u64(self) -> u64 { self as u64 }
            #[inline(always)] fn to_bool(self) -> bool { self != (0 as $t) }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn from_i64(v: i64) -> Self { v as $t }
            #[inline(always)] fn from_u64(v: u64) -> Self { v as $t }
            #[inline(always)] fn from_bool(v: bool) -> Self { u8::from(v) as $t }
        }
    )*};
}

lane_cast_num!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl LaneCast for bool {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    #[inline(always)]
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    #[inline(always)]
    fn to_bool(self) -> bool {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    #[inline(always)]
    fn from_u64(v: u64) -> Self {
        v != 0
    }
    #[inline(always)]
    fn from_bool(v: bool) -> Self {
        v
    }
}

impl LaneCast for f16 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        f16::to_f64(self) as i64
    }
    #[inline(always)]
    fn to_u64(self) -> u64 {
        f16::to_f64(self) as u64
    }
    #[inline(always)]
    fn to_bool(self) -> bool {
        f16::to_f64(self) != 0.0
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        f16::from_f64(v as f64)
    }
    #[inline(always)]
    fn from_u64(v: u64) -> Self {
        f16::from_f64(v as f64)
    }
    #[inline(always)]
    fn from_bool(v: bool) -> Self {
        f16::from_f64(f64::from(u8::from(v)))
    }
}

/// A register: one tile of values in one lane.
#[derive(Clone, Debug)]
pub enum Buf {
    /// Values of [`Lane::Bool`].
    Bool(Vec<bool>),
    /// Values of [`Lane::I64`].
    I64(Vec<i64>),
    /// Values of [`Lane::U64`].
    U64(Vec<u64>),
    /// Values of [`Lane::F64`].
    F64(Vec<f64>),
}

impl Buf {
    fn new(lane: Lane, len: usize) -> Buf {
        match lane {
            Lane::Bool => Buf::Bool(vec![false; len]),
            Lane::I64 => Buf::I64(vec![0; len]),
            Lane::U64 => Buf::U64(vec![0; len]),
            Lane::F64 => Buf::F64(vec![0.0; len]),
        }
    }

    /// Converts any array's values into a lane buffer.
    pub fn from_array(a: &AnyArray, lane: Lane) -> Buf {
        macro_rules! conv {
            ($arr:expr) => {
                match lane {
                    Lane::Bool => Buf::Bool($arr.iter().map(|v| v.to_bool()).collect()),
                    Lane::I64 => Buf::I64($arr.iter().map(|v| v.to_i64()).collect()),
                    Lane::U64 => Buf::U64($arr.iter().map(|v| v.to_u64()).collect()),
                    Lane::F64 => Buf::F64($arr.iter().map(|v| v.to_f64()).collect()),
                }
            };
        }
        match a {
            AnyArray::Bool(x) => conv!(x),
            AnyArray::I8(x) => conv!(x),
            AnyArray::I16(x) => conv!(x),
            AnyArray::I32(x) => conv!(x),
            AnyArray::I64(x) => conv!(x),
            AnyArray::U8(x) => conv!(x),
            AnyArray::U16(x) => conv!(x),
            AnyArray::U32(x) => conv!(x),
            AnyArray::U64(x) => conv!(x),
            AnyArray::F16(x) => conv!(x),
            AnyArray::F32(x) => conv!(x),
            AnyArray::F64(x) => conv!(x),
        }
    }

    /// The first `n` values as a `rows × cols` view in the lane's dtype.
    pub fn view(&self, rows: usize, cols: usize) -> AnyView<'_> {
        let n = rows * cols;
        let shape = (rows, cols);
        // The registers are tile-sized by construction.
        match self {
            Buf::Bool(b) => ndarray::ArrayView2::from_shape(shape, &b[..n])
                .expect("tile")
                .into(),
            Buf::I64(b) => ndarray::ArrayView2::from_shape(shape, &b[..n])
                .expect("tile")
                .into(),
            Buf::U64(b) => ndarray::ArrayView2::from_shape(shape, &b[..n])
                .expect("tile")
                .into(),
            Buf::F64(b) => ndarray::ArrayView2::from_shape(shape, &b[..n])
                .expect("tile")
                .into(),
        }
    }

    /// Writes the first `out.len()` values converted to `T`.
    pub fn store<T: LaneCast>(&self, out: &mut [T]) {
        let n = out.len();
        match self {
            Buf::Bool(b) => out
                .iter_mut()
                .zip(&b[..n])
                .for_each(|(o, &v)| *o = T::from_bool(v)),
            Buf::I64(b) => out
                .iter_mut()
                .zip(&b[..n])
                .for_each(|(o, &v)| *o = T::from_i64(v)),
            Buf::U64(b) => out
                .iter_mut()
                .zip(&b[..n])
                .for_each(|(o, &v)| *o = T::from_u64(v)),
            Buf::F64(b) => out
                .iter_mut()
                .zip(&b[..n])
                .for_each(|(o, &v)| *o = T::from_f64(v)),
        }
    }
}

/// How a broadcast value lines up with the frame being evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One value everywhere.
    Scalar,
    /// One value per column.
    Row,
    /// One value per row (indexed by the array's row number).
    Col,
    /// One value per element of the frame.
    Full,
}

/// An instruction; register `i` holds the output of instruction `i`.
#[derive(Clone)]
pub enum Instr {
    /// Rows of input block `src`, converted to the dtype's lane.
    Source {
        /// Index of the block among the block's inputs.
        src: usize,
        /// The input's dtype.
        dtype: DType,
    },
    /// Rows of a `map_blocks` result computed earlier for this block.
    Block {
        /// Index of the result among the block-level results.
        slot: usize,
        /// The result's dtype.
        dtype: DType,
    },
    /// A value computed before this pass, broadcast over the frame.
    Value {
        /// The values.
        data: Arc<Buf>,
        /// How they line up with the frame.
        shape: Shape,
    },
    /// Lane conversion of a tile register.
    Convert {
        /// The register converted.
        arg: usize,
        /// The lane it is converted to.
        to: Lane,
    },
    /// A function of one register, rounded to `dtype`.
    Unary {
        /// The function.
        op: UnaryOp,
        /// Its operand.
        arg: usize,
        /// NumPy's result dtype.
        dtype: DType,
    },
    /// A function of two registers (in one lane), rounded to `dtype`.
    Binary {
        /// The function.
        op: BinaryOp,
        /// The left operand.
        a: usize,
        /// The right operand.
        b: usize,
        /// NumPy's result dtype.
        dtype: DType,
    },
    /// `np.where(c, a, b)`.
    Where {
        /// The bool condition.
        c: usize,
        /// Where the condition is true.
        a: usize,
        /// Where it is false.
        b: usize,
        /// The result dtype.
        dtype: DType,
    },
    /// `astype(dtype)`.
    Cast {
        /// The register cast.
        arg: usize,
        /// The dtype cast to.
        dtype: DType,
    },
}

/// A compiled expression DAG.
#[derive(Clone, Default)]
pub struct Program {
    /// The instructions, in dependency order.
    pub instrs: Vec<Instr>,
    /// The kind of frame the program runs over.
    pub frame: Option<Shape>,
}

impl Program {
    /// Appends an instruction; returns its register.
    pub fn push(&mut self, instr: Instr) -> usize {
        self.instrs.push(instr);
        self.instrs.len() - 1
    }

    /// The lane of register `r`.
    pub fn lane(&self, r: usize) -> Lane {
        match &self.instrs[r] {
            Instr::Source { dtype, .. }
            | Instr::Block { dtype, .. }
            | Instr::Unary { dtype, .. }
            | Instr::Binary { dtype, .. }
            | Instr::Where { dtype, .. }
            | Instr::Cast { dtype, .. } => lane_of(*dtype),
            Instr::Value { data, .. } => match **data {
                Buf::Bool(_) => Lane::Bool,
                Buf::I64(_) => Lane::I64,
                Buf::U64(_) => Lane::U64,
                Buf::F64(_) => Lane::F64,
            },
            Instr::Convert { to, .. } => *to,
        }
    }

    /// Bytes of scratch one evaluating thread needs for tiles of `tile_elems`.
    pub fn scratch_bytes(&self, tile_elems: usize) -> usize {
        self.instrs
            .iter()
            .filter(|i| !matches!(i, Instr::Value { .. }))
            .count()
            * tile_elems
            * 8
    }
}

/// The inputs of one block: the source blocks' views and the results of
/// block-level functions.
pub struct BlockInputs<'a, 'b> {
    /// Views of the block's input rows, one per source.
    pub sources: &'a [AnyView<'b>],
    /// Results of block-level functions (`map_blocks`) for the block.
    pub blocks: &'a [AnyArray],
    /// Array row of the block's first row.
    pub first_row: u64,
}

/// Per-thread registers for evaluating a program.
pub struct Machine {
    regs: Vec<Buf>,
}

enum Opnd<'a, T> {
    Tile(&'a [T]),
    Scalar(T),
    Row(&'a [T]),
    Col(&'a [T]),
}

impl<T: Copy> Opnd<'_, T> {
    #[inline(always)]
    fn get(&self, r: usize, c: usize, cols: usize) -> T {
        match self {
            Opnd::Tile(x) => x[r * cols + c],
            Opnd::Scalar(s) => *s,
            Opnd::Row(x) => x[c],
            Opnd::Col(x) => x[r],
        }
    }
}

/// `out[r, c] = f(a[r, c], b[r, c])` with broadcasting; contiguous fast paths.
#[inline(always)]
fn apply2<A: Copy, B: Copy, O>(
    out: &mut [O],
    cols: usize,
    a: Opnd<'_, A>,
    b: Opnd<'_, B>,
    f: impl Fn(A, B) -> O,
) {
    let n = out.len();
    match (a, b) {
        (Opnd::Tile(x), Opnd::Tile(y)) => {
            for ((o, &x), &y) in out.iter_mut().zip(&x[..n]).zip(&y[..n]) {
                *o = f(x, y);
            }
        }
        (Opnd::Tile(x), Opnd::Scalar(s)) => {
            for (o, &x) in out.iter_mut().zip(&x[..n]) {
                *o = f(x, s);
            }
        }
        (Opnd::Scalar(s), Opnd::Tile(y)) => {
            for (o, &y) in out.iter_mut().zip(&y[..n]) {
                *o = f(s, y);
            }
        }
        (Opnd::Tile(x), Opnd::Row(w)) => {
            for (orow, xrow) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
                for ((o, &x), &w) in orow.iter_mut().zip(xrow).zip(w) {
                    *o = f(x, w);
                }
            }
        }
        (Opnd::Row(w), Opnd::Tile(y)) => {
            for (orow, yrow) in out.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
                for ((o, &y), &w) in orow.iter_mut().zip(yrow).zip(w) {
                    *o = f(w, y);
                }
            }
        }
        (Opnd::Tile(x), Opnd::Col(k)) => {
            for ((orow, xrow), &k) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)).zip(k) {
                for (o, &x) in orow.iter_mut().zip(xrow) {
                    *o = f(x, k);
                }
            }
        }
        (Opnd::Col(k), Opnd::Tile(y)) => {
            for ((orow, yrow), &k) in out.chunks_exact_mut(cols).zip(y.chunks_exact(cols)).zip(k) {
                for (o, &y) in orow.iter_mut().zip(yrow) {
                    *o = f(k, y);
                }
            }
        }
        (a, b) => {
            for (i, o) in out.iter_mut().enumerate() {
                let (r, c) = (i / cols, i % cols);
                *o = f(a.get(r, c, cols), b.get(r, c, cols));
            }
        }
    }
}

/// `out[i] = f(x[i])`: a one-operand map, with `apply2`'s fast paths.
#[inline(always)]
fn map_into<A: Copy, O>(out: &mut [O], x: Opnd<'_, A>, f: impl Fn(A) -> O) {
    apply2(out, 1, x, Opnd::Scalar(()), |x, _| f(x));
}

/// Rounds lane values to what `dtype` can hold (float32/float16
/// rounding, integer wrap-around), as NumPy stores each result.
pub fn round_to(buf: &mut [f64], dtype: DType) {
    match dtype {
        DType::F32 => buf.iter_mut().for_each(|v| *v = *v as f32 as f64),
        DType::F16 => buf.iter_mut().for_each(|v| *v = f16::from_f64(*v).to_f64()),
        _ => {}
    }
}

fn wrap_i(buf: &mut [i64], dtype: DType) {
    match dtype {
        DType::I8 => buf.iter_mut().for_each(|v| *v = *v as i8 as i64),
        DType::I16 => buf.iter_mut().for_each(|v| *v = *v as i16 as i64),
        DType::I32 => buf.iter_mut().for_each(|v| *v = *v as i32 as i64),
        _ => {}
    }
}

fn wrap_u(buf: &mut [u64], dtype: DType) {
    match dtype {
        DType::U8 => buf.iter_mut().for_each(|v| *v = *v as u8 as u64),
        DType::U16 => buf.iter_mut().for_each(|v| *v = *v as u16 as u64),
        DType::U32 => buf.iter_mut().for_each(|v| *v = *v as u32 as u64),
        _ => {}
    }
}

#[inline(always)]
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a >= b {
        a
    } else {
        b
    }
}

#[inline(always)]
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a <= b {
        a
    } else {
        b
    }
}

impl Machine {
    /// Registers for `prog` over tiles of up to `tile_elems` elements.
    pub fn new(prog: &Program, tile_elems: usize) -> Machine {
        let regs = (0..prog.instrs.len())
            .map(|i| match &prog.instrs[i] {
                Instr::Value { .. } => Buf::new(prog.lane(i), 0),
                _ => Buf::new(prog.lane(i), tile_elems),
            })
            .collect();
        Machine { regs }
    }

    /// The register holding instruction `r`'s output for the last tile.
    pub fn reg(&self, r: usize) -> &Buf {
        &self.regs[r]
    }

    /// Evaluates `prog` for rows `r0 .. r1` of the block (a tile of
    /// `(r1 - r0) × cols` elements).
    pub fn run(
        &mut self,
        prog: &Program,
        inputs: &BlockInputs<'_, '_>,
        r0: usize,
        r1: usize,
        cols: usize,
    ) -> Result<()> {
        let n = (r1 - r0) * cols;
        if n == 0 {
            return Ok(()); // rows of no elements: nothing to compute
        }
        let frame = prog.frame.unwrap_or(Shape::Full);
        let first = inputs.first_row as usize + r0;
        for i in 0..prog.instrs.len() {
            let (done, rest) = self.regs.split_at_mut(i);
            let out = &mut rest[0];
            let opnd = |r: usize| -> OpndRef<'_> {
                match &prog.instrs[r] {
                    Instr::Value { data, shape } => OpndRef {
                        buf: data,
                        shape: if *shape == frame { Shape::Full } else { *shape },
                        offset: if *shape == Shape::Col && frame != Shape::Col {
                            first
                        } else {
                            0
                        },
                    },
                    _ => OpndRef {
                        buf: &done[r],
                        shape: Shape::Full,
                        offset: 0,
                    },
                }
            };
            match &prog.instrs[i] {
                Instr::Value { .. } => {}
                Instr::Source { src, dtype } => {
                    load_view(&inputs.sources[*src], r0, r1, out, *dtype)?;
                }
                Instr::Block { slot, dtype } => {
                    let block = &inputs.blocks[*slot];
                    let view = array_view2(block)?;
                    load_view(&view, r0, r1, out, *dtype)?;
                }
                Instr::Convert { arg, to } => convert(opnd(*arg), out, n, *to),
                Instr::Unary { op, arg, dtype } => unary(*op, opnd(*arg), out, n, *dtype)?,
                Instr::Binary { op, a, b, dtype } => {
                    binary(*op, opnd(*a), opnd(*b), out, n, cols, *dtype)?
                }
                Instr::Where { c, a, b, dtype } => {
                    select(opnd(*c), opnd(*a), opnd(*b), out, n, cols, *dtype)
                }
                Instr::Cast { arg, dtype } => {
                    let arg = opnd(*arg);
                    convert(arg, out, n, lane_of(*dtype));
                    if matches!(arg.buf, Buf::F64(_)) {
                        // float → integer saturates at the target's range
                        // (NaN → 0); integer → integer wraps, as NumPy.
                        saturate_from_float(arg, out, n, *dtype);
                    }
                    finish_dtype(out, n, *dtype);
                }
            }
        }
        Ok(())
    }
}

/// A resolved operand: a buffer and how it broadcasts.
#[derive(Clone, Copy)]
struct OpndRef<'a> {
    buf: &'a Buf,
    shape: Shape,
    /// First element to use for per-row (`Col`) values.
    offset: usize,
}

macro_rules! opnd_as {
    ($fn:ident, $var:ident, $t:ty) => {
        fn $fn(o: OpndRef<'_>, n: usize) -> Option<Opnd<'_, $t>> {
            let Buf::$var(v) = o.buf else { return None };
            Some(match o.shape {
                Shape::Full => Opnd::Tile(&v[..n]),
                Shape::Scalar => Opnd::Scalar(v[0]),
                Shape::Row => Opnd::Row(v),
                Shape::Col => Opnd::Col(&v[o.offset..]),
            })
        }
    };
}

opnd_as!(as_f64, F64, f64);
opnd_as!(as_i64, I64, i64);
opnd_as!(as_u64, U64, u64);
opnd_as!(as_bool, Bool, bool);

fn lane_err(what: &str) -> Error {
    Error::Invalid(format!("internal: operand lane mismatch in {what}"))
}

/// A 2-d array (a `map_blocks` input or result) as a view.
pub fn array_view2(a: &AnyArray) -> Result<AnyView<'_>> {
    macro_rules! v {
        ($x:expr) => {
            $x.view()
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| Error::Invalid(format!("map_blocks result is not 2-d: {e}")))?
                .into()
        };
    }
    Ok(match a {
        AnyArray::Bool(x) => v!(x),
        AnyArray::I8(x) => v!(x),
        AnyArray::I16(x) => v!(x),
        AnyArray::I32(x) => v!(x),
        AnyArray::I64(x) => v!(x),
        AnyArray::U8(x) => v!(x),
        AnyArray::U16(x) => v!(x),
        AnyArray::U32(x) => v!(x),
        AnyArray::U64(x) => v!(x),
        AnyArray::F16(x) => v!(x),
        AnyArray::F32(x) => v!(x),
        AnyArray::F64(x) => v!(x),
    })
}

/// Converts rows `r0 .. r1` of a typed view into the lane register.
fn load_view(view: &AnyView<'_>, r0: usize, r1: usize, out: &mut Buf, dtype: DType) -> Result<()> {
    macro_rules! load {
        ($v:expr) => {{
            let rows = $v.slice(ndarray::s![r0..r1, ..]);
            let Some(src) = rows.as_slice() else {
                return Err(Error::Invalid("internal: block rows not contiguous".into()));
            };
            let n = src.len();
            match out {
                Buf::F64(o) => o[..n]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = v.to_f64()),
                Buf::I64(o) => o[..n]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = v.to_i64()),
                Buf::U64(o) => o[..n]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = v.to_u64()),
                Buf::Bool(o) => o[..n]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = v.to_bool()),
            }
        }};
    }
    debug_assert_eq!(view.dtype(), dtype);
    match view {
        AnyView::Bool(v) => load!(v),
        AnyView::I8(v) => load!(v),
        AnyView::I16(v) => load!(v),
        AnyView::I32(v) => load!(v),
        AnyView::I64(v) => load!(v),
        AnyView::U8(v) => load!(v),
        AnyView::U16(v) => load!(v),
        AnyView::U32(v) => load!(v),
        AnyView::U64(v) => load!(v),
        AnyView::F16(v) => load!(v),
        AnyView::F32(v) => load!(v),
        AnyView::F64(v) => load!(v),
    }
    Ok(())
}

fn convert(a: OpndRef<'_>, out: &mut Buf, n: usize, to: Lane) {
    macro_rules! conv {
        ($o:expr, $f:ident) => {{
            let o = &mut $o[..n];
            match a.buf {
                Buf::F64(_) => map_into(o, as_f64(a, n).expect("f64"), |x| x.$f()),
                Buf::I64(_) => map_into(o, as_i64(a, n).expect("i64"), |x| x.$f()),
                Buf::U64(_) => map_into(o, as_u64(a, n).expect("u64"), |x| x.$f()),
                Buf::Bool(_) => map_into(o, as_bool(a, n).expect("bool"), |x| x.$f()),
            }
        }};
    }
    match (out, to) {
        (Buf::F64(o), Lane::F64) => conv!(o, to_f64),
        (Buf::I64(o), Lane::I64) => conv!(o, to_i64),
        (Buf::U64(o), Lane::U64) => conv!(o, to_u64),
        (Buf::Bool(o), Lane::Bool) => conv!(o, to_bool),
        _ => unreachable!("register lanes are fixed at compile time"),
    }
}

/// Converts float lane values to a narrow integer dtype with saturation.
fn saturate_from_float(arg: OpndRef<'_>, out: &mut Buf, n: usize, dtype: DType) {
    let Some(Opnd::Tile(x)) = as_f64(arg, n) else {
        return;
    };
    macro_rules! sat {
        ($o:expr, $t:ty, $w:ty) => {
            $o[..n]
                .iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = v as $t as $w)
        };
    }
    match (out, dtype) {
        (Buf::I64(o), DType::I8) => sat!(o, i8, i64),
        (Buf::I64(o), DType::I16) => sat!(o, i16, i64),
        (Buf::I64(o), DType::I32) => sat!(o, i32, i64),
        (Buf::U64(o), DType::U8) => sat!(o, u8, u64),
        (Buf::U64(o), DType::U16) => sat!(o, u16, u64),
        (Buf::U64(o), DType::U32) => sat!(o, u32, u64),
        _ => {}
    }
}

fn finish_dtype(out: &mut Buf, n: usize, dtype: DType) {
    match out {
        Buf::F64(o) => round_to(&mut o[..n], dtype),
        Buf::I64(o) => wrap_i(&mut o[..n], dtype),
        Buf::U64(o) => wrap_u(&mut o[..n], dtype),
        Buf::Bool(_) => {}
    }
}

fn unary(op: UnaryOp, a: OpndRef<'_>, out: &mut Buf, n: usize, dtype: DType) -> Result<()> {
    match out {
        Buf::F64(o) => {
            let x = as_f64(a, n).ok_or_else(|| lane_err("unary"))?;
            let o = &mut o[..n];
            match op {
                UnaryOp::Neg => map_into(o, x, |x| -x),
                UnaryOp::Abs => map_into(o, x, |x| x.abs()),
                UnaryOp::Sqrt => map_into(o, x, |x| x.sqrt()),
                UnaryOp::Exp => map_into(o, x, |x| x.exp()),
                UnaryOp::Log => map_into(o, x, |x| x.ln()),
                UnaryOp::Log1p => map_into(o, x, |x| x.ln_1p()),
                UnaryOp::IsNan | UnaryOp::Not => return Err(lane_err("unary f64")),
            }
        }
        Buf::I64(o) => {
            let x = as_i64(a, n).ok_or_else(|| lane_err("unary"))?;
            let o = &mut o[..n];
            match op {
                UnaryOp::Neg => map_into(o, x, |x| x.wrapping_neg()),
                UnaryOp::Abs => map_into(o, x, |x| x.wrapping_abs()),
                _ => return Err(lane_err("unary i64")),
            }
        }
        Buf::U64(o) => {
            let x = as_u64(a, n).ok_or_else(|| lane_err("unary"))?;
            let o = &mut o[..n];
            match op {
                UnaryOp::Neg => map_into(o, x, |x| x.wrapping_neg()),
                UnaryOp::Abs => map_into(o, x, |x| x),
                _ => return Err(lane_err("unary u64")),
            }
        }
        Buf::Bool(o) => {
            let o = &mut o[..n];
            match (op, a.buf) {
                (UnaryOp::IsNan, Buf::F64(_)) => {
                    map_into(o, as_f64(a, n).expect("f64"), |x| x.is_nan())
                }
                (UnaryOp::IsNan, _) => o.iter_mut().for_each(|v| *v = false),
                (UnaryOp::Not, Buf::Bool(_)) => map_into(o, as_bool(a, n).expect("bool"), |x| !x),
                _ => return Err(lane_err("unary bool")),
            }
        }
    }
    finish_dtype(out, n, dtype);
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one operand per argument, as the instruction has
fn binary(
    op: BinaryOp,
    a: OpndRef<'_>,
    b: OpndRef<'_>,
    out: &mut Buf,
    n: usize,
    cols: usize,
    dtype: DType,
) -> Result<()> {
    use BinaryOp::*;
    if op.is_comparison() {
        let Buf::Bool(o) = out else {
            return Err(lane_err("comparison"));
        };
        let o = &mut o[..n];
        macro_rules! cmp {
            ($x:expr, $y:expr) => {{
                let (x, y) = ($x, $y);
                match op {
                    Eq => apply2(o, cols, x, y, |x, y| x == y),
                    Ne => apply2(o, cols, x, y, |x, y| x != y),
                    Lt => apply2(o, cols, x, y, |x, y| x < y),
                    Le => apply2(o, cols, x, y, |x, y| x <= y),
                    Gt => apply2(o, cols, x, y, |x, y| x > y),
                    _ => apply2(o, cols, x, y, |x, y| x >= y),
                }
            }};
        }
        match (a.buf, b.buf) {
            (Buf::F64(_), Buf::F64(_)) => cmp!(as_f64(a, n).unwrap(), as_f64(b, n).unwrap()),
            (Buf::I64(_), Buf::I64(_)) => cmp!(as_i64(a, n).unwrap(), as_i64(b, n).unwrap()),
            (Buf::U64(_), Buf::U64(_)) => cmp!(as_u64(a, n).unwrap(), as_u64(b, n).unwrap()),
            (Buf::Bool(_), Buf::Bool(_)) => cmp!(as_bool(a, n).unwrap(), as_bool(b, n).unwrap()),
            _ => return Err(lane_err("comparison operands")),
        }
        return Ok(());
    }
    match out {
        Buf::F64(o) => {
            let (x, y) = (
                as_f64(a, n).ok_or_else(|| lane_err("binary"))?,
                as_f64(b, n).ok_or_else(|| lane_err("binary"))?,
            );
            let o = &mut o[..n];
            match op {
                Add => apply2(o, cols, x, y, |x, y| x + y),
                Sub => apply2(o, cols, x, y, |x, y| x - y),
                Mul => apply2(o, cols, x, y, |x, y| x * y),
                Div => apply2(o, cols, x, y, |x, y| x / y),
                Pow => apply2(o, cols, x, y, f64::powf),
                Maximum => apply2(o, cols, x, y, nan_max),
                Minimum => apply2(o, cols, x, y, nan_min),
                _ => return Err(lane_err("binary f64")),
            }
        }
        Buf::I64(o) => {
            let (x, y) = (
                as_i64(a, n).ok_or_else(|| lane_err("binary"))?,
                as_i64(b, n).ok_or_else(|| lane_err("binary"))?,
            );
            let o = &mut o[..n];
            match op {
                Add => apply2(o, cols, x, y, i64::wrapping_add),
                Sub => apply2(o, cols, x, y, i64::wrapping_sub),
                Mul => apply2(o, cols, x, y, i64::wrapping_mul),
                Maximum => apply2(o, cols, x, y, i64::max),
                Minimum => apply2(o, cols, x, y, i64::min),
                Pow => {
                    let negative = std::cell::Cell::new(false);
                    apply2(o, cols, x, y, |x, y| {
                        negative.set(negative.get() | (y < 0));
                        x.wrapping_pow(y.clamp(0, u32::MAX as i64) as u32)
                    });
                    if negative.get() {
                        return Err(Error::Invalid(
                            "integers to negative integer powers are not allowed (as in NumPy); \
                             cast to float first"
                                .into(),
                        ));
                    }
                }
                _ => return Err(lane_err("binary i64")),
            }
        }
        Buf::U64(o) => {
            let (x, y) = (
                as_u64(a, n).ok_or_else(|| lane_err("binary"))?,
                as_u64(b, n).ok_or_else(|| lane_err("binary"))?,
            );
            let o = &mut o[..n];
            match op {
                Add => apply2(o, cols, x, y, u64::wrapping_add),
                Sub => apply2(o, cols, x, y, u64::wrapping_sub),
                Mul => apply2(o, cols, x, y, u64::wrapping_mul),
                Maximum => apply2(o, cols, x, y, u64::max),
                Minimum => apply2(o, cols, x, y, u64::min),
                Pow => apply2(o, cols, x, y, |x, y| {
                    x.wrapping_pow(y.min(u32::MAX as u64) as u32)
                }),
                _ => return Err(lane_err("binary u64")),
            }
        }
        Buf::Bool(o) => {
            let (x, y) = (
                as_bool(a, n).ok_or_else(|| lane_err("binary"))?,
                as_bool(b, n).ok_or_else(|| lane_err("binary"))?,
            );
            let o = &mut o[..n];
            match op {
                And | Minimum => apply2(o, cols, x, y, |x, y| x & y),
                Or | Maximum => apply2(o, cols, x, y, |x, y| x | y),
                _ => return Err(lane_err("binary bool")),
            }
        }
    }
    finish_dtype(out, n, dtype);
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one operand per argument, as the instruction has
fn select(
    c: OpndRef<'_>,
    a: OpndRef<'_>,
    b: OpndRef<'_>,
    out: &mut Buf,
    n: usize,
    cols: usize,
    dtype: DType,
) {
    let Some(c) = as_bool(c, n) else { return };
    macro_rules! sel {
        ($o:expr, $as:ident) => {{
            let (x, y) = ($as(a, n).expect("lane"), $as(b, n).expect("lane"));
            for (i, o) in $o[..n].iter_mut().enumerate() {
                let (r, k) = (i / cols, i % cols);
                *o = if c.get(r, k, cols) {
                    x.get(r, k, cols)
                } else {
                    y.get(r, k, cols)
                };
            }
        }};
    }
    match out {
        Buf::F64(o) => sel!(o, as_f64),
        Buf::I64(o) => sel!(o, as_i64),
        Buf::U64(o) => sel!(o, as_u64),
        Buf::Bool(o) => sel!(o, as_bool),
    }
    finish_dtype(out, n, dtype);
}

/// Converts the first `n` values of a register into `dtype`'s bytes,
/// appended to `out` (native byte order).
pub fn store_bytes(buf: &Buf, n: usize, dtype: DType, out: &mut [u8]) {
    macro_rules! store {
        ($t:ty) => {{
            let typed: &mut [$t] = bytemuck::cast_slice_mut(out);
            buf.store(&mut typed[..n]);
        }};
    }
    match dtype {
        // bool is stored as its byte, 0 or 1.
        DType::Bool => {
            let mut tmp = vec![false; n];
            buf.store(&mut tmp);
            out[..n]
                .iter_mut()
                .zip(tmp)
                .for_each(|(o, b)| *o = u8::from(b));
        }
        DType::I8 => store!(i8),
        DType::I16 => store!(i16),
        DType::I32 => store!(i32),
        DType::I64 => store!(i64),
        DType::U8 => store!(u8),
        DType::U16 => store!(u16),
        DType::U32 => store!(u32),
        DType::U64 => store!(u64),
        DType::F16 => store!(f16),
        DType::F32 => store!(f32),
        DType::F64 => store!(f64),
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.instrs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_chain_over_a_tile() {
        // (x * 2 + row) > 3, over a 2 × 3 tile.
        let x = ndarray::arr2(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let views = [AnyView::from(x.view())];
        let inputs = BlockInputs {
            sources: &views,
            blocks: &[],
            first_row: 0,
        };
        let mut p = Program::default();
        let s = p.push(Instr::Source {
            src: 0,
            dtype: DType::F64,
        });
        let two = p.push(Instr::Value {
            data: Arc::new(Buf::F64(vec![2.0])),
            shape: Shape::Scalar,
        });
        let m = p.push(Instr::Binary {
            op: BinaryOp::Mul,
            a: s,
            b: two,
            dtype: DType::F64,
        });
        let row = p.push(Instr::Value {
            data: Arc::new(Buf::F64(vec![0.0, -1.0, -10.0])),
            shape: Shape::Row,
        });
        let add = p.push(Instr::Binary {
            op: BinaryOp::Add,
            a: m,
            b: row,
            dtype: DType::F64,
        });
        let three = p.push(Instr::Value {
            data: Arc::new(Buf::F64(vec![3.0])),
            shape: Shape::Scalar,
        });
        let gt = p.push(Instr::Binary {
            op: BinaryOp::Gt,
            a: add,
            b: three,
            dtype: DType::Bool,
        });
        let mut m = Machine::new(&p, 6);
        m.run(&p, &inputs, 0, 2, 3).unwrap();
        let Buf::Bool(v) = m.reg(gt) else { panic!() };
        assert_eq!(&v[..6], &[false, false, false, true, true, false]);
        let Buf::F64(v) = m.reg(add) else { panic!() };
        assert_eq!(&v[..6], &[2.0, 3.0, -4.0, 8.0, 9.0, 2.0]);
    }
}
