//! Lazy expressions: what users build; nothing runs until the engine
//! computes or writes them.

use std::fmt;
use std::ops;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use outcore_chunker::{ArrayFile, DType};

use crate::kernel::{AxisKernel, KernelSpec};
use crate::ops::kind::{ArrayOp, Quantile, cumsum_dtype, quantile_dtype};
use outcore_kernels::{AnyArray, AnyView, BinaryOp, DynElement, ReduceKind, UnaryOp};
use outcore_kernels::{ReduceAxis, ReduceOp};

/// How an expression's values are laid out relative to the rows being
/// streamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// One value per element of a `rows × row_len` array: streamed in blocks.
    Full {
        rows: u64,
        /// The trailing shape (the source's `shape[1..]`, or `[n]` after a
        /// `map_blocks` that changes the row length); `None` for 0-d and
        /// 1-d sources (row length 1).
        trailing: Option<Vec<u64>>,
        /// Source dimensionality (0, 1 or more), for NumPy-shaped results.
        ndim: usize,
    },
    /// One value per column, broadcast along rows (an axis-0 reduction).
    Row { row_len: usize, shape: Vec<u64> },
    /// One value per row, broadcast along columns (an axis-1 reduction).
    Column { rows: u64 },
    /// A single value, broadcast everywhere.
    Scalar,
    /// A value of any other shape (a user aggregate's matrix or vector of
    /// counts): combines only with scalars and values of its shape.
    Value { shape: Vec<u64> },
}

impl Extent {
    pub(crate) fn row_len(&self) -> usize {
        match self {
            Extent::Full { trailing, .. } => trailing
                .as_ref()
                .map_or(1, |t| t.iter().product::<u64>() as usize),
            Extent::Row { row_len, .. } => *row_len,
            Extent::Value { shape } => shape.iter().product::<u64>() as usize,
            Extent::Column { .. } | Extent::Scalar => 1,
        }
    }

    pub(crate) fn rows(&self) -> u64 {
        match self {
            Extent::Full { rows, .. } | Extent::Column { rows } => *rows,
            Extent::Row { .. } | Extent::Scalar | Extent::Value { .. } => 1,
        }
    }

    /// The NumPy shape of a value of this extent.
    pub(crate) fn shape(&self) -> Vec<u64> {
        match self {
            Extent::Full {
                rows,
                trailing,
                ndim,
            } => match (ndim, trailing) {
                (0, _) => vec![],
                (_, None) => vec![*rows],
                (_, Some(t)) => std::iter::once(*rows).chain(t.iter().copied()).collect(),
            },
            Extent::Row { shape, .. } => shape.clone(),
            Extent::Column { rows } => vec![*rows],
            Extent::Scalar => vec![],
            Extent::Value { shape } => shape.clone(),
        }
    }
}

/// A user function applied block by block (see [`Expr::map_blocks`]).
pub(crate) trait BlockFn: Send + Sync {
    fn call(&self, block: AnyView<'_>) -> AnyArray;
}

struct TypedBlockFn<T, U, F> {
    f: F,
    _types: std::marker::PhantomData<fn(T) -> U>,
}

impl<T, U, F> BlockFn for TypedBlockFn<T, U, F>
where
    T: DynElement,
    U: DynElement,
    F: Fn(ArrayView2<'_, T>) -> Array2<U> + Send + Sync,
{
    fn call(&self, block: AnyView<'_>) -> AnyArray {
        let view =
            T::from_view(block).expect("the engine casts map_blocks input to the closure's dtype");
        U::into_any((self.f)(view).into_dyn())
    }
}

/// A node of the expression graph.
pub(crate) enum Node {
    Source(Arc<ArrayFile>),
    /// A constant. `weak` constants (Rust literals) take the other
    /// operand's dtype where NumPy's rules for Python scalars say so.
    Const {
        value: f64,
        int: Option<i64>,
        weak: bool,
    },
    Unary(UnaryOp, Expr),
    Binary(BinaryOp, Expr, Expr),
    Where(Expr, Expr, Expr),
    Cast(Expr, DType),
    Reduce(ReduceOp, ReduceAxis, Expr),
    /// A reduction that is a kernel of its own (a registered kind along
    /// an axis, or a user aggregate).
    Kernel(Arc<dyn KernelSpec>, Expr),
    MapBlocks {
        input: Expr,
        f: Arc<dyn BlockFn>,
        dtype: DType,
        row_len: usize,
    },
    /// An operator over the whole array (sort, cumsum, persist): run
    /// before the passes, its result read back from a spill file.
    Op(ArrayOp, Expr),
    /// An exact quantile, computed before the passes.
    Quantile(Quantile, ReduceAxis, Expr),
    /// Values held in memory, broadcast per column (`Extent::Row`) or
    /// per row (`Extent::Column`).
    Values(Arc<AnyArray>),
    /// An array an earlier step of the plan leaves in a spill file (a
    /// sorted or cumulated array, a spilled intermediate): read like a
    /// source once that step has run.
    Slot(usize),
    /// A construction error, reported when the expression is computed.
    Invalid(String),
}

/// A lazy array expression.
///
/// Built from arrays opened by an [`Engine`](crate::Engine) with arithmetic
/// operators, elementwise functions and reductions; nothing is read until
/// the engine computes or writes it. Cloning is cheap (a reference count).
///
/// Mistakes such as mismatched shapes are recorded in the expression and
/// reported by [`Expr::check`] or when it is computed — operators cannot
/// return errors, and outcore never panics on user input.
#[derive(Clone)]
pub struct Expr {
    pub(crate) node: Arc<Node>,
    pub(crate) dtype: DType,
    pub(crate) extent: Extent,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({self})")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.node {
            Node::Source(file) => write!(f, "{}", file.path().display()),
            Node::Const { value, int, .. } => match int {
                Some(i) => write!(f, "{i}"),
                None => write!(f, "{value}"),
            },
            Node::Unary(op, a) => write!(f, "{}({a})", format!("{op:?}").to_lowercase()),
            Node::Binary(op, a, b) if op.is_comparison() || op.symbol().len() <= 2 => {
                write!(f, "({a} {} {b})", op.symbol())
            }
            Node::Binary(op, a, b) => write!(f, "{}({a}, {b})", op.symbol()),
            Node::Where(c, a, b) => write!(f, "where({c}, {a}, {b})"),
            Node::Cast(a, d) => write!(f, "{a}.astype({d})"),
            Node::Reduce(op, axis, a) => match axis {
                ReduceAxis::All => write!(f, "{op}({a})"),
                ReduceAxis::Axis0 => write!(f, "{op}({a}, axis=0)"),
                ReduceAxis::Axis1 => write!(f, "{op}({a}, axis=1)"),
            },
            Node::Kernel(k, a) => f.write_str(&k.describe(&a.to_string())),
            Node::Slot(k) => write!(f, "<spilled #{k}>"),
            Node::Values(v) if v.shape().is_empty() => {
                write!(f, "{}({})", v.dtype(), v.to_f64().sum())
            }
            Node::Values(v) => write!(f, "<{} values of {}>", v.len(), v.dtype()),
            Node::MapBlocks { input, .. } => write!(f, "map_blocks({input})"),
            Node::Op(ArrayOp::Sort, a) => write!(f, "sort({a}, axis=0)"),
            Node::Op(ArrayOp::Cumsum, a) => write!(f, "cumsum({a}, axis=0)"),
            Node::Op(ArrayOp::Persist, a) => write!(f, "persist({a})"),
            Node::Quantile(q, axis, a) => {
                match q {
                    Quantile::Median | Quantile::NanMedian => write!(f, "{}({a}", q.name())?,
                    Quantile::Linear(v) | Quantile::NanLinear(v) => {
                        write!(f, "{}({a}, {v}", q.name())?
                    }
                }
                match axis {
                    ReduceAxis::All => write!(f, ")"),
                    ReduceAxis::Axis0 => write!(f, ", axis=0)"),
                    ReduceAxis::Axis1 => write!(f, ", axis=1)"),
                }
            }
            Node::Invalid(msg) => write!(f, "<invalid: {msg}>"),
        }
    }
}

/// Anything that can stand as an operand: an expression or a number.
pub trait IntoExpr {
    /// The operand as an expression.
    fn into_expr(self) -> Expr;
}

impl IntoExpr for Expr {
    fn into_expr(self) -> Expr {
        self
    }
}

impl IntoExpr for &Expr {
    fn into_expr(self) -> Expr {
        self.clone()
    }
}

impl IntoExpr for f64 {
    fn into_expr(self) -> Expr {
        Expr::constant(self)
    }
}

impl IntoExpr for i64 {
    fn into_expr(self) -> Expr {
        Expr::int_constant(self)
    }
}

impl IntoExpr for i32 {
    fn into_expr(self) -> Expr {
        Expr::int_constant(i64::from(self))
    }
}

/// An axis argument: `0`, `1`, or [`ReduceAxis::All`] (also `None`).
pub trait IntoAxis {
    /// The axis, or a message when it is out of range.
    fn into_axis(self) -> Result<ReduceAxis, String>;
}

impl IntoAxis for ReduceAxis {
    fn into_axis(self) -> Result<ReduceAxis, String> {
        Ok(self)
    }
}

impl IntoAxis for usize {
    fn into_axis(self) -> Result<ReduceAxis, String> {
        match self {
            0 => Ok(ReduceAxis::Axis0),
            1 => Ok(ReduceAxis::Axis1),
            n => Err(format!("axis {n} is not supported (use 0, 1 or all)")),
        }
    }
}

impl IntoAxis for i32 {
    fn into_axis(self) -> Result<ReduceAxis, String> {
        usize::try_from(self)
            .map_err(|_| format!("axis {self} is not supported (use 0, 1 or all)"))?
            .into_axis()
    }
}

impl IntoAxis for Option<usize> {
    fn into_axis(self) -> Result<ReduceAxis, String> {
        self.map_or(Ok(ReduceAxis::All), IntoAxis::into_axis)
    }
}

impl Expr {
    pub(crate) fn new(node: Node, dtype: DType, extent: Extent) -> Expr {
        Expr {
            node: Arc::new(node),
            dtype,
            extent,
        }
    }

    pub(crate) fn source(file: Arc<ArrayFile>) -> Expr {
        let meta = file.meta();
        let extent = Extent::Full {
            rows: meta.rows(),
            trailing: (meta.ndim() > 1).then(|| meta.shape[1..].to_vec()),
            ndim: meta.ndim(),
        };
        let dtype = meta.dtype;
        Expr::new(Node::Source(file), dtype, extent)
    }

    pub(crate) fn invalid(msg: String) -> Expr {
        Expr::new(Node::Invalid(msg), DType::F64, Extent::Scalar)
    }

    /// A float constant (a "weak" scalar: `x_f32 * 2.0` stays float32, as
    /// with a Python float in NumPy).
    pub fn constant(value: f64) -> Expr {
        Expr::new(
            Node::Const {
                value,
                int: None,
                weak: true,
            },
            DType::F64,
            Extent::Scalar,
        )
    }

    /// An integer constant (weak, like a Python int in NumPy).
    pub fn int_constant(value: i64) -> Expr {
        Expr::new(
            Node::Const {
                value: value as f64,
                int: Some(value),
                weak: true,
            },
            DType::I64,
            Extent::Scalar,
        )
    }

    /// An array already opened, as a lazy expression read with the
    /// file's own read mode ([`Engine::array`](crate::Engine::array)
    /// gives it the engine's).
    pub fn array(file: ArrayFile) -> Expr {
        Expr::source(Arc::new(file))
    }

    /// Values in memory that broadcast along the rows, one per element of
    /// a row, as NumPy broadcasts a `(c,)` array against an `(n, c)` one
    /// (for an `(n, a, b)` array, `values` has shape `(a, b)`): `x -
    /// Expr::row_values(means)`. A 0-d array is a scalar.
    ///
    /// ```
    /// use outcore_exec::{AnyArray, Expr};
    /// let offsets = Expr::row_values(AnyArray::F64(ndarray::arr1(&[1.0, 2.0]).into_dyn()));
    /// assert_eq!(offsets.shape(), vec![2]);
    /// ```
    pub fn row_values(values: AnyArray) -> Expr {
        let extent = if values.shape().is_empty() {
            Extent::Scalar
        } else {
            Extent::Row {
                row_len: values.len(),
                shape: values.shape().iter().map(|&d| d as u64).collect(),
            }
        };
        Expr::new(
            Node::Values(Arc::new(values.clone())),
            values.dtype(),
            extent,
        )
    }

    /// Values in memory that broadcast along the columns, one per row, as
    /// NumPy broadcasts an `(n, 1)` array against an `(n, c)` one. Any
    /// shape is taken as its `len()` values in order.
    ///
    /// ```
    /// use outcore_exec::{AnyArray, Expr};
    /// let weights = Expr::column_values(AnyArray::F32(ndarray::arr1(&[1.0f32, 2.0, 3.0]).into_dyn()));
    /// assert_eq!(weights.shape(), vec![3]); // one value per row
    /// ```
    pub fn column_values(values: AnyArray) -> Expr {
        let rows = values.len() as u64;
        Expr::new(
            Node::Values(Arc::new(values.clone())),
            values.dtype(),
            Extent::Column { rows },
        )
    }

    /// The element type of the result.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The NumPy shape of the result.
    pub fn shape(&self) -> Vec<u64> {
        self.extent.shape()
    }

    /// Reports the first construction error in the expression, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`](crate::Error::Invalid) or
    /// [`Error::Shape`](crate::Error::Shape) describing the mistake.
    pub fn check(&self) -> crate::Result<()> {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            if let Node::Invalid(msg) = &*e.node {
                return Err(crate::Error::Invalid(msg.clone()));
            }
            stack.extend(e.children());
        }
        Ok(())
    }

    /// The expressions this one is computed from.
    pub(crate) fn children(&self) -> Vec<&Expr> {
        match &*self.node {
            Node::Source(_)
            | Node::Const { .. }
            | Node::Values(_)
            | Node::Invalid(_)
            | Node::Slot(_) => Vec::new(),
            Node::Unary(_, a)
            | Node::Cast(a, _)
            | Node::Reduce(_, _, a)
            | Node::Kernel(_, a)
            | Node::Op(_, a)
            | Node::Quantile(_, _, a) => vec![a],
            Node::MapBlocks { input, .. } => vec![input],
            Node::Binary(_, a, b) => vec![a, b],
            Node::Where(c, a, b) => vec![c, a, b],
        }
    }

    pub(crate) fn is_invalid(&self) -> bool {
        matches!(&*self.node, Node::Invalid(_))
    }

    // ---- elementwise -------------------------------------------------

    /// Applies a unary function.
    pub fn unary(&self, op: UnaryOp) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        let d = self.dtype;
        let dtype = match op {
            UnaryOp::Neg | UnaryOp::Abs => {
                if d == DType::Bool {
                    return Expr::invalid(format!(
                        "{op:?} of a bool array is not supported (NumPy refuses it too); cast first"
                    ));
                }
                d
            }
            UnaryOp::Sqrt | UnaryOp::Exp | UnaryOp::Log | UnaryOp::Log1p => float_of(d),
            UnaryOp::IsNan => DType::Bool,
            UnaryOp::Not => {
                if d != DType::Bool {
                    return Expr::invalid(format!("logical not needs a bool operand, not {d}"));
                }
                DType::Bool
            }
            // `UnaryOp` is non-exhaustive: a function added to the kernels
            // before the engine knows its result dtype.
            _ => return Expr::invalid(format!("{op:?} is not supported by this engine")),
        };
        Expr::new(Node::Unary(op, self.clone()), dtype, self.extent.clone())
    }

    /// Applies a binary function with broadcasting: scalars broadcast
    /// everywhere, per-column results (axis-0 reductions) along rows,
    /// per-row results (axis-1 reductions) along columns.
    pub fn binary(&self, op: BinaryOp, other: impl IntoExpr) -> Expr {
        let other = other.into_expr();
        if self.is_invalid() {
            return self.clone();
        }
        if other.is_invalid() {
            return other;
        }
        let extent = match broadcast(&self.extent, &other.extent) {
            Ok(e) => e,
            Err(msg) => return Expr::invalid(format!("{msg} in {self} {} {other}", op.symbol())),
        };
        let dtype = match binary_dtype(op, self, &other) {
            Ok(d) => d,
            Err(msg) => return Expr::invalid(msg),
        };
        if !op.is_comparison()
            && let Some(msg) =
                literal_out_of_range(self, dtype).or(literal_out_of_range(&other, dtype))
        {
            return Expr::invalid(msg);
        }
        Expr::new(Node::Binary(op, self.clone(), other), dtype, extent)
    }

    /// `|x|`.
    pub fn abs(&self) -> Expr {
        self.unary(UnaryOp::Abs)
    }

    /// Square root.
    pub fn sqrt(&self) -> Expr {
        self.unary(UnaryOp::Sqrt)
    }

    /// `e^x`.
    pub fn exp(&self) -> Expr {
        self.unary(UnaryOp::Exp)
    }

    /// Natural logarithm.
    pub fn log(&self) -> Expr {
        self.unary(UnaryOp::Log)
    }

    /// `ln(1 + x)`.
    pub fn log1p(&self) -> Expr {
        self.unary(UnaryOp::Log1p)
    }

    /// True where NaN.
    pub fn isnan(&self) -> Expr {
        self.unary(UnaryOp::IsNan)
    }

    /// `x ** e`.
    pub fn pow(&self, e: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Pow, e)
    }

    /// Elementwise maximum (`np.maximum`, NaN-propagating).
    pub fn maximum(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Maximum, other)
    }

    /// Elementwise minimum (`np.minimum`, NaN-propagating).
    pub fn minimum(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Minimum, other)
    }

    /// Limits values to `[lo, hi]` (`np.clip`; NaN stays NaN).
    pub fn clip(&self, lo: impl IntoExpr, hi: impl IntoExpr) -> Expr {
        self.maximum(lo).minimum(hi).cast(self.dtype)
    }

    /// `x == other`.
    pub fn eq(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Eq, other)
    }

    /// `x != other`.
    pub fn ne(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Ne, other)
    }

    /// `x < other`.
    pub fn lt(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Lt, other)
    }

    /// `x <= other`.
    pub fn le(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Le, other)
    }

    /// `x > other`.
    pub fn gt(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Gt, other)
    }

    /// `x >= other`.
    pub fn ge(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Ge, other)
    }

    /// Logical and of two bool expressions.
    pub fn and(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::And, other)
    }

    /// Logical or of two bool expressions.
    pub fn or(&self, other: impl IntoExpr) -> Expr {
        self.binary(BinaryOp::Or, other)
    }

    /// `np.where(self, a, b)`: `a` where this bool expression is true, else `b`.
    pub fn select(&self, a: impl IntoExpr, b: impl IntoExpr) -> Expr {
        let (a, b) = (a.into_expr(), b.into_expr());
        for e in [self, &a, &b] {
            if e.is_invalid() {
                return e.clone();
            }
        }
        if self.dtype != DType::Bool {
            return Expr::invalid(format!(
                "the condition of where/select must be bool, not {}",
                self.dtype
            ));
        }
        let extent = match broadcast(&self.extent, &a.extent).and_then(|e| broadcast(&e, &b.extent))
        {
            Ok(e) => e,
            Err(msg) => return Expr::invalid(format!("{msg} in where({self}, {a}, {b})")),
        };
        let dtype = promote_operands(&a, &b);
        Expr::new(Node::Where(self.clone(), a, b), dtype, extent)
    }

    /// Converts to `dtype` (`astype`): float → int truncates toward zero
    /// and saturates (NaN → 0; NumPy leaves these undefined); float64 →
    /// float32/float16 rounds to nearest, overflowing to ±inf; integer
    /// narrowing wraps; anything → bool is `x != 0`.
    pub fn cast(&self, dtype: DType) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        Expr::new(Node::Cast(self.clone(), dtype), dtype, self.extent.clone())
    }

    /// Applies `f` to each block of rows (as `rows × row_len` of `T`),
    /// which must return `rows × out_row_len` values of `U`.
    ///
    /// The input is cast to `T` first if its dtype differs. A panic in `f`
    /// becomes an error of the computation; a block of the wrong shape too.
    pub fn map_blocks<T, U, F>(&self, out_row_len: usize, f: F) -> Expr
    where
        T: DynElement,
        U: DynElement,
        F: Fn(ArrayView2<'_, T>) -> Array2<U> + Send + Sync + 'static,
    {
        if self.is_invalid() {
            return self.clone();
        }
        let Extent::Full { rows, ndim, .. } = self.extent else {
            return Expr::invalid(format!(
                "map_blocks needs an array streamed by rows, not a reduced value ({self})"
            ));
        };
        let input = if self.dtype == T::DATA_TYPE {
            self.clone()
        } else {
            self.cast(T::DATA_TYPE)
        };
        let f: Arc<dyn BlockFn> = Arc::new(TypedBlockFn {
            f,
            _types: std::marker::PhantomData,
        });
        Expr::new(
            Node::MapBlocks {
                input,
                f,
                dtype: U::DATA_TYPE,
                row_len: out_row_len,
            },
            U::DATA_TYPE,
            Extent::Full {
                rows,
                trailing: Some(vec![out_row_len as u64]),
                ndim: ndim.max(2),
            },
        )
    }

    // ---- reductions --------------------------------------------------

    /// A reduction along `axis` (`0`, `1` or [`ReduceAxis::All`]).
    pub fn reduce(&self, op: ReduceOp, axis: impl IntoAxis) -> Expr {
        match self.reduced(op.name(), axis) {
            Ok((axis, extent)) => Expr::new(
                Node::Reduce(op, axis, self.clone()),
                op.result_dtype(self.dtype),
                extent,
            ),
            Err(invalid) => invalid,
        }
    }

    /// A reduction that is a kernel of its own (see
    /// [`outcore_kernels::reduce::kinds`]: `any`, `all`, `count_nonzero`,
    /// `ptp`, ...) along `axis` (`0`, `1` or [`ReduceAxis::All`]). It
    /// shares the pass of the other reductions over the same input.
    pub fn reduce_kind(&self, kind: &'static dyn ReduceKind, axis: impl IntoAxis) -> Expr {
        let (axis, extent) = match self.reduced(kind.name(), axis) {
            Ok(r) => r,
            Err(invalid) => return invalid,
        };
        let dtype = match kind.result_dtype(self.dtype) {
            Ok(d) => d,
            Err(outcore_kernels::Error::Invalid(msg)) => return Expr::invalid(msg),
            Err(e) => return Expr::invalid(e.to_string()),
        };
        let spec: Arc<dyn KernelSpec> = Arc::new(AxisKernel { kind, axis });
        Expr::new(Node::Kernel(spec, self.clone()), dtype, extent)
    }

    /// The axis and extent of a reduction called `what` along `axis`, or
    /// the invalid expression saying why there is none.
    fn reduced(&self, what: &str, axis: impl IntoAxis) -> Result<(ReduceAxis, Extent), Expr> {
        if self.is_invalid() {
            return Err(self.clone());
        }
        let axis = axis.into_axis().map_err(Expr::invalid)?;
        let Extent::Full {
            rows,
            ref trailing,
            ndim,
        } = self.extent
        else {
            return Err(Expr::invalid(format!(
                "{what} of an already reduced value ({self}) is not supported; \
                 reduce the streamed array instead"
            )));
        };
        let extent = match axis {
            ReduceAxis::All => Extent::Scalar,
            ReduceAxis::Axis0 => {
                if ndim == 0 {
                    return Err(Expr::invalid(
                        "axis 0 is out of bounds for a 0-d array".into(),
                    ));
                }
                Extent::Row {
                    row_len: self.extent.row_len(),
                    shape: trailing.clone().unwrap_or_default(),
                }
            }
            ReduceAxis::Axis1 => {
                if ndim < 2 {
                    return Err(Expr::invalid(format!(
                        "axis 1 is out of bounds for a {ndim}-d array"
                    )));
                }
                Extent::Column { rows }
            }
        };
        Ok((axis, extent))
    }

    /// A user [`Aggregate`](crate::aggregate::Aggregate) as an expression:
    /// it runs in the same pass as the other reductions over the same
    /// input (cast to `T` first if its dtype differs), its state is
    /// reserved in the budget like theirs, and its result — an array of
    /// `A::Output`'s dtype and [`Aggregate::output_shape`](crate::aggregate::Aggregate::output_shape)
    /// — can feed later expressions: a value of one per column (the
    /// input's trailing shape) broadcasts along rows, one value
    /// everywhere, any other shape combines with values of its shape.
    pub fn aggregate<T, A>(&self, agg: A) -> Expr
    where
        T: DynElement,
        A: crate::aggregate::Aggregate<T> + 'static,
        A::Output: crate::aggregate::ArrayOutput,
    {
        use crate::aggregate::ArrayOutput;
        let Extent::Full {
            rows, ref trailing, ..
        } = self.extent
        else {
            if self.is_invalid() {
                return self.clone();
            }
            return Expr::invalid(format!(
                "an aggregate needs an array streamed by rows, not a reduced value ({self})"
            ));
        };
        let input = if self.dtype == T::DATA_TYPE {
            self.clone()
        } else {
            self.cast(T::DATA_TYPE)
        };
        let row_len = self.extent.row_len();
        let shape = crate::aggregate::Aggregate::output_shape(&agg, rows, row_len);
        let extent = if shape.is_empty() {
            Extent::Scalar
        } else if Some(&shape) == trailing.as_ref() || (trailing.is_none() && shape == [1]) {
            Extent::Row { row_len, shape }
        } else {
            Extent::Value { shape }
        };
        let spec = crate::aggregate::AggregateSpec::<T, A>::array(agg, rows, row_len);
        Expr::new(
            Node::Kernel(Arc::new(spec), input),
            <A::Output as ArrayOutput>::DTYPE,
            extent,
        )
    }

    /// `np.any`: whether any value along `axis` is nonzero (bool; NaN is
    /// true; false over nothing).
    pub fn any(&self, axis: impl IntoAxis) -> Expr {
        self.reduce_kind(&outcore_kernels::reduce::any::Any, axis)
    }

    /// `np.all`: whether every value along `axis` is nonzero (bool; NaN
    /// is true; true over nothing).
    pub fn all(&self, axis: impl IntoAxis) -> Expr {
        self.reduce_kind(&outcore_kernels::reduce::all::All, axis)
    }

    /// `np.count_nonzero`: how many values along `axis` are nonzero
    /// (int64; NaN counts, `-0.0` does not).
    pub fn count_nonzero(&self, axis: impl IntoAxis) -> Expr {
        self.reduce_kind(&outcore_kernels::reduce::count_nonzero::CountNonzero, axis)
    }

    /// `np.ptp`: `max − min` along `axis`, in the input dtype (integers
    /// wrap as in NumPy; NaN if any NaN). Bool input is refused, as NumPy
    /// refuses it; an empty axis is an error.
    pub fn ptp(&self, axis: impl IntoAxis) -> Expr {
        self.reduce_kind(&outcore_kernels::reduce::ptp::Ptp, axis)
    }

    /// Sorts every column along axis 0, as `np.sort(x, axis=0)` (NaN
    /// last): an external merge sort through spill files, under the
    /// budget. For an n-d array, each trailing position is a column.
    pub fn sort(&self) -> Expr {
        self.array_op(ArrayOp::Sort, self.dtype)
    }

    /// Cumulative sum along axis 0, as `np.cumsum(x, axis=0)`: bool and
    /// signed integers give int64, unsigned uint64 (an error where NumPy
    /// would wrap), floats keep their type and NumPy's row-order rounding.
    pub fn cumsum(&self) -> Expr {
        self.array_op(ArrayOp::Cumsum, cumsum_dtype(self.dtype))
    }

    /// Materializes the values in a temporary spill file, so later passes
    /// read them instead of recomputing them (the planner does this by
    /// itself where recomputing is impossible, e.g. after a sort).
    pub fn persist(&self) -> Expr {
        self.array_op(ArrayOp::Persist, self.dtype)
    }

    fn array_op(&self, op: ArrayOp, dtype: DType) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        match self.extent {
            Extent::Full { ndim: 0, .. } => Expr::invalid(format!(
                "{op:?} along axis 0 needs an array with at least one dimension, not a 0-d array"
            )
            .to_lowercase()),
            Extent::Full { .. } => Expr::new(Node::Op(op, self.clone()), dtype, self.extent.clone()),
            _ => Expr::invalid(format!(
                "{} of an already reduced value ({self}) is not supported",
                format!("{op:?}").to_lowercase()
            )),
        }
    }

    /// The exact median along `axis` (`0`, `1` — per row, over all its
    /// trailing axes — or [`ReduceAxis::All`]), as `np.median`: float
    /// inputs keep their type, others give float64; NaN where the values
    /// hold a NaN (see [`Expr::nanmedian`]).
    pub fn median(&self, axis: impl IntoAxis) -> Expr {
        self.quantile_of(Quantile::Median, axis)
    }

    /// The exact median of the values that are not NaN, along `axis` (as
    /// [`Expr::median`]), as `np.nanmedian`: NaN where every value is NaN
    /// (NumPy warns "All-NaN slice encountered"). Along an axis shorter
    /// than 600 NumPy takes its masked-array median, which adds the two
    /// middle values in the input's float type (float16 overflows past
    /// 65504); that is reproduced.
    pub fn nanmedian(&self, axis: impl IntoAxis) -> Expr {
        self.quantile_of(Quantile::NanMedian, axis)
    }

    /// The exact `q`-quantile (`0 <= q <= 1`) along `axis` (`0`, `1` or
    /// [`ReduceAxis::All`]), as `np.quantile(x, q, axis)` with its default
    /// linear interpolation: float inputs keep their type, integers give
    /// float64, bool is refused (as NumPy does).
    pub fn quantile(&self, q: f64, axis: impl IntoAxis) -> Expr {
        self.linear_quantile(Quantile::Linear(q), q, axis)
    }

    /// The exact `q`-quantile of the values that are not NaN, along
    /// `axis` (as [`Expr::quantile`]), as `np.nanquantile(x, q, axis)`:
    /// NaN where every value is NaN, and over an empty axis (where
    /// `quantile` is an error).
    pub fn nanquantile(&self, q: f64, axis: impl IntoAxis) -> Expr {
        self.linear_quantile(Quantile::NanLinear(q), q, axis)
    }

    fn linear_quantile(&self, kind: Quantile, q: f64, axis: impl IntoAxis) -> Expr {
        if !(0.0..=1.0).contains(&q) {
            return Expr::invalid(format!("quantile {q} is outside [0, 1]"));
        }
        if self.dtype == DType::Bool {
            return Expr::invalid(format!(
                "{} of a bool array is undefined (NumPy raises TypeError); \
                 cast to an integer dtype first",
                kind.name()
            ));
        }
        self.quantile_of(kind, axis)
    }

    fn quantile_of(&self, q: Quantile, axis: impl IntoAxis) -> Expr {
        if self.is_invalid() {
            return self.clone();
        }
        let axis = match axis.into_axis() {
            Ok(a) => a,
            Err(msg) => return Expr::invalid(msg),
        };
        // The extent and checks of a reduction along the same axis.
        let like = self.reduce(ReduceOp::Max, axis);
        if like.is_invalid() {
            return like;
        }
        let dtype = quantile_dtype(self.dtype);
        Expr::new(Node::Quantile(q, axis, self.clone()), dtype, like.extent)
    }

    /// Sum (`np.sum`): exact int64/uint64 for integers, float64 for floats.
    pub fn sum(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::Sum, axis)
    }

    /// Arithmetic mean (float64).
    pub fn mean(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::Mean, axis)
    }

    /// Minimum (input dtype; NaN if any NaN).
    pub fn min(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::Min, axis)
    }

    /// Maximum (input dtype; NaN if any NaN).
    pub fn max(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::Max, axis)
    }

    /// Variance with `ddof` delta degrees of freedom (float64).
    pub fn var(&self, axis: impl IntoAxis, ddof: u32) -> Expr {
        self.reduce(ReduceOp::Var { ddof }, axis)
    }

    /// Standard deviation with `ddof` delta degrees of freedom (float64).
    pub fn std(&self, axis: impl IntoAxis, ddof: u32) -> Expr {
        self.reduce(ReduceOp::Std { ddof }, axis)
    }

    /// Index of the first minimum (int64; flat C-order index over all).
    pub fn argmin(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::ArgMin, axis)
    }

    /// Index of the first maximum (int64; flat C-order index over all).
    pub fn argmax(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::ArgMax, axis)
    }

    /// Sum ignoring NaN.
    pub fn nansum(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::NanSum, axis)
    }

    /// Mean ignoring NaN.
    pub fn nanmean(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::NanMean, axis)
    }

    /// Minimum ignoring NaN.
    pub fn nanmin(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::NanMin, axis)
    }

    /// Maximum ignoring NaN.
    pub fn nanmax(&self, axis: impl IntoAxis) -> Expr {
        self.reduce(ReduceOp::NanMax, axis)
    }

    /// Variance ignoring NaN.
    pub fn nanvar(&self, axis: impl IntoAxis, ddof: u32) -> Expr {
        self.reduce(ReduceOp::NanVar { ddof }, axis)
    }

    /// Standard deviation ignoring NaN.
    pub fn nanstd(&self, axis: impl IntoAxis, ddof: u32) -> Expr {
        self.reduce(ReduceOp::NanStd { ddof }, axis)
    }
}

/// The smallest float dtype NumPy gives a float function of `d`
/// (`np.sqrt(int8)` is float16, of int16 float32, of int32/64 float64).
pub(crate) fn float_of(d: DType) -> DType {
    match d {
        DType::F16 | DType::F32 | DType::F64 => d,
        DType::Bool | DType::I8 | DType::U8 => DType::F16,
        DType::I16 | DType::U16 => DType::F32,
        _ => DType::F64,
    }
}

fn bits(d: DType) -> usize {
    d.itemsize() * 8
}

/// NumPy's type promotion for two array dtypes.
pub(crate) fn promote(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    match (a, b) {
        (Bool, x) | (x, Bool) => x,
        (x, y) if x.is_float() && y.is_float() => {
            if bits(x) >= bits(y) {
                x
            } else {
                y
            }
        }
        (f, i) | (i, f) if f.is_float() => {
            // The smallest float at least as wide as f that holds int i.
            let need = float_of(i);
            if bits(need) >= bits(f) { need } else { f }
        }
        (x, y) if x.is_signed_int() == y.is_signed_int() => {
            if bits(x) >= bits(y) {
                x
            } else {
                y
            }
        }
        (s, u) | (u, s) if s.is_signed_int() => {
            if bits(s) > bits(u) {
                s
            } else {
                match bits(u) {
                    8 => I16,
                    16 => I32,
                    32 => I64,
                    _ => F64,
                }
            }
        }
        _ => F64,
    }
}

fn is_weak(e: &Expr) -> bool {
    matches!(&*e.node, Node::Const { weak: true, .. })
}

/// Promotion of two operands with NEP 50's rules for weak (literal) scalars:
/// a literal takes the array's dtype when its kind is no higher (an int
/// literal with any array, a float literal with a float array); a float
/// literal with an integer array gives float64.
pub(crate) fn promote_operands(a: &Expr, b: &Expr) -> DType {
    match (is_weak(a), is_weak(b)) {
        (true, true) => promote(a.dtype, b.dtype),
        (true, false) => weak_with(a.dtype, b.dtype),
        (false, true) => weak_with(b.dtype, a.dtype),
        (false, false) => promote(a.dtype, b.dtype),
    }
}

/// NumPy 2 refuses arithmetic between an integer array and a Python int
/// its dtype cannot hold (`np.uint8(...) + 300` is an OverflowError).
fn literal_out_of_range(e: &Expr, dtype: DType) -> Option<String> {
    let Node::Const {
        int: Some(v),
        weak: true,
        ..
    } = &*e.node
    else {
        return None;
    };
    let (lo, hi): (i128, i128) = match dtype {
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I64 => (i64::MIN.into(), i64::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        DType::U16 => (0, u16::MAX.into()),
        DType::U32 => (0, u32::MAX.into()),
        DType::U64 => (0, u64::MAX.into()),
        _ => return None,
    };
    let v = i128::from(*v);
    (v < lo || v > hi).then(|| {
        format!("integer literal {v} is out of bounds for {dtype} (NumPy raises OverflowError too)")
    })
}

fn weak_with(weak: DType, strong: DType) -> DType {
    match (weak.is_float(), strong.is_float(), strong) {
        (false, _, DType::Bool) => DType::I64,
        (false, _, _) => strong,
        (true, true, _) => strong,
        (true, false, _) => DType::F64,
    }
}

fn binary_dtype(op: BinaryOp, a: &Expr, b: &Expr) -> Result<DType, String> {
    let p = promote_operands(a, b);
    match op {
        BinaryOp::And | BinaryOp::Or => {
            if a.dtype == DType::Bool && b.dtype == DType::Bool {
                Ok(DType::Bool)
            } else {
                Err(format!(
                    "logical {} needs bool operands, not {} and {}",
                    op.symbol(),
                    a.dtype,
                    b.dtype
                ))
            }
        }
        op if op.is_comparison() => Ok(DType::Bool),
        // True division: integers give float64 (NumPy), floats keep their width.
        BinaryOp::Div => Ok(if p.is_float() { p } else { DType::F64 }),
        _ if p == DType::Bool => Err(format!(
            "arithmetic '{}' on bool operands is not supported; cast to a number first",
            op.symbol()
        )),
        _ => Ok(p),
    }
}

fn broadcast(a: &Extent, b: &Extent) -> Result<Extent, String> {
    use Extent::*;
    let full_len = |e: &Extent| e.row_len();
    Ok(match (a, b) {
        (Scalar, x) | (x, Scalar) => x.clone(),
        (Value { shape: s1 }, Value { shape: s2 }) => {
            if s1 != s2 {
                return Err(format!("values of shapes {s1:?} and {s2:?} differ"));
            }
            a.clone()
        }
        (v @ Value { .. }, x) | (x, v @ Value { .. }) => {
            return Err(format!(
                "a value of shape {:?} cannot broadcast with shape {:?}",
                v.shape(),
                x.shape()
            ));
        }
        (Full { rows: r1, .. }, Full { rows: r2, .. }) => {
            if r1 != r2 || full_len(a) != full_len(b) {
                return Err(format!("shapes {:?} and {:?} differ", a.shape(), b.shape()));
            }
            a.clone()
        }
        (f @ Full { .. }, Row { row_len, .. }) | (Row { row_len, .. }, f @ Full { .. }) => {
            if full_len(f) != *row_len {
                return Err(format!(
                    "a per-column value of length {row_len} cannot broadcast over rows of length {}",
                    full_len(f)
                ));
            }
            f.clone()
        }
        (f @ Full { rows, .. }, Column { rows: r })
        | (Column { rows: r }, f @ Full { rows, .. }) => {
            if rows != r {
                return Err(format!(
                    "a per-row value of length {r} cannot broadcast over {rows} rows"
                ));
            }
            f.clone()
        }
        (Row { row_len: l1, .. }, Row { row_len: l2, .. }) => {
            if l1 != l2 {
                return Err(format!("per-column values of lengths {l1} and {l2} differ"));
            }
            a.clone()
        }
        (Column { rows: r1 }, Column { rows: r2 }) => {
            if r1 != r2 {
                return Err(format!("per-row values of lengths {r1} and {r2} differ"));
            }
            a.clone()
        }
        (Row { .. }, Column { .. }) | (Column { .. }, Row { .. }) => {
            return Err(
                "a per-column and a per-row value cannot be combined (that would be an outer product)"
                    .to_string(),
            );
        }
    })
}

macro_rules! impl_op {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<R: IntoExpr> ops::$trait<R> for &Expr {
            type Output = Expr;
            fn $method(self, rhs: R) -> Expr {
                self.binary($op, rhs)
            }
        }
        impl<R: IntoExpr> ops::$trait<R> for Expr {
            type Output = Expr;
            fn $method(self, rhs: R) -> Expr {
                self.binary($op, rhs)
            }
        }
        impl ops::$trait<&Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: &Expr) -> Expr {
                Expr::constant(self).binary($op, rhs)
            }
        }
        impl ops::$trait<Expr> for f64 {
            type Output = Expr;
            fn $method(self, rhs: Expr) -> Expr {
                Expr::constant(self).binary($op, rhs)
            }
        }
    };
}

impl_op!(Add, add, BinaryOp::Add);
impl_op!(Sub, sub, BinaryOp::Sub);
impl_op!(Mul, mul, BinaryOp::Mul);
impl_op!(Div, div, BinaryOp::Div);

impl ops::Neg for &Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.unary(UnaryOp::Neg)
    }
}

impl ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        self.unary(UnaryOp::Neg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn promotion_follows_numpy() {
        assert_eq!(promote(F32, F64), F64);
        assert_eq!(promote(I16, F16), F32);
        assert_eq!(promote(I8, F16), F16);
        assert_eq!(promote(I32, F32), F64);
        assert_eq!(promote(U8, I8), I16);
        assert_eq!(promote(U32, I32), I64);
        assert_eq!(promote(U64, I64), F64);
        assert_eq!(promote(U8, I16), I16);
        assert_eq!(promote(Bool, U16), U16);
        assert_eq!(weak_with(F64, F32), F32);
        assert_eq!(weak_with(F64, I16), F64);
        assert_eq!(weak_with(I64, U8), U8);
    }
}
