//! `outcore.Array`: a lazy array with NumPy's operators and method names.

use outcore::exec::{BinaryOp, UnaryOp};
use outcore::{DType, Expr};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyTuple};

use crate::convert::{from_numpy_dtype, to_numpy_dtype};
use crate::errors::raise;
use crate::memory;

/// A lazy array over files: operators and methods build a plan; nothing
/// is read until `compute`, `save` or `numpy.asarray`.
#[pyclass(name = "Array", module = "outcore", frozen)]
pub struct PyArray {
    pub(crate) expr: Expr,
}

/// What a result dtype follows, as NumPy's functions do.
#[derive(Clone, Copy)]
enum Rule {
    /// Sums: bool and signed integers to int64, unsigned to uint64,
    /// floats keep theirs.
    Sum,
    /// Means, variances, medians: integers to float64, floats keep theirs.
    Float,
    /// The engine's dtype is NumPy's (min, max, arg*, any, ...).
    Engine,
}

fn numpy_dtype(input: DType, rule: Rule) -> Option<DType> {
    match rule {
        Rule::Engine => None,
        Rule::Sum if input.is_float() => Some(input),
        Rule::Sum if input.is_unsigned_int() => Some(DType::U64),
        Rule::Sum => Some(DType::I64),
        Rule::Float if input.is_float() => Some(input),
        Rule::Float => Some(DType::F64),
    }
}

/// An axis as NumPy takes it (`None`, or an index from either end).
fn axis_of(expr: &Expr, axis: Option<i64>) -> PyResult<Option<usize>> {
    let Some(a) = axis else { return Ok(None) };
    let ndim = expr.shape().len() as i64;
    let norm = if a < 0 { a + ndim } else { a };
    if !(0..ndim).contains(&norm) {
        return Err(raise(
            "AxisError",
            format!("axis {a} is out of bounds for array of dimension {ndim}"),
        ));
    }
    Ok(Some(norm as usize))
}

/// A Python operand as an expression: an `Array`; a Python scalar (weak,
/// as NumPy treats them); a NumPy scalar (of its dtype); a NumPy array
/// that broadcasts against `like` (the other operand) as NumPy's rules
/// say. `None` for anything else.
fn operand(other: &Bound<'_, PyAny>, like: Option<&Expr>) -> PyResult<Option<Expr>> {
    if let Ok(a) = other.extract::<PyRef<'_, PyArray>>() {
        return Ok(Some(a.expr.clone()));
    }
    let numpy = other.py().import("numpy")?;
    if other.is_instance(&numpy.getattr("ndarray")?)? {
        return match like {
            Some(like) => Ok(Some(memory::ndarray_operand(like, other)?)),
            None => Ok(None),
        };
    }
    // NumPy scalars (np.float64(2), np.int8(3)) keep their dtype, as in
    // NumPy 2 (NEP 50): float32 data times np.float64(2) is float64. First:
    // np.float64 is also a Python float.
    if other.is_instance(&numpy.getattr("generic")?)? {
        return memory::numpy_scalar(other);
    }
    if other.is_instance_of::<PyBool>() {
        let v: bool = other.extract()?;
        return Ok(Some(Expr::int_constant(i64::from(v)).cast(DType::Bool)));
    }
    if other.is_instance_of::<PyInt>() {
        return match other.extract::<i64>() {
            Ok(v) => Ok(Some(Expr::int_constant(v))),
            Err(_) => Err(raise(
                "IntegerOverflowError",
                format!("Python integer {other} out of bounds for int64"),
            )),
        };
    }
    if other.is_instance_of::<PyFloat>() {
        return Ok(Some(Expr::constant(other.extract()?)));
    }
    Ok(None)
}

/// Two operands, a NumPy array among them broadcasting against the other.
fn pair(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<(Option<Expr>, Option<Expr>)> {
    let ea = operand(a, None)?;
    let eb = operand(b, ea.as_ref())?;
    if ea.is_none() && eb.is_some() {
        return Ok((operand(a, eb.as_ref())?, eb));
    }
    Ok((ea, eb))
}

fn wrap(expr: Expr) -> PyArray {
    PyArray { expr }
}

impl PyArray {
    fn binary(
        &self,
        op: BinaryOp,
        other: &Bound<'_, PyAny>,
        reflected: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Some(o) = operand(other, Some(&self.expr))? else {
            return Ok(py.NotImplemented());
        };
        let expr = if reflected {
            o.binary(op, &self.expr)
        } else {
            self.expr.binary(op, &o)
        };
        Ok(Bound::new(py, wrap(expr))?.into_any().unbind())
    }

    fn reduce(&self, rule: Rule, f: impl FnOnce(&Expr) -> Expr) -> PyArray {
        let out = f(&self.expr);
        match numpy_dtype(self.expr.dtype(), rule) {
            Some(dt) if dt != out.dtype() => wrap(out.cast(dt)),
            _ => wrap(out),
        }
    }

    fn ddof(ddof: i64) -> PyResult<u32> {
        u32::try_from(ddof).map_err(|_| raise("ConfigError", format!("ddof={ddof}: must be ≥ 0")))
    }
}

/// A quantile `q` as NumPy checks it (`ValueError` outside [0, 1]).
fn check_q(q: f64) -> PyResult<()> {
    if !(0.0..=1.0).contains(&q) {
        return Err(raise(
            "ConfigError",
            "Quantiles must be in the range [0, 1]",
        ));
    }
    Ok(())
}

/// `ptp` is not defined for bool in NumPy (`TypeError`).
fn refuse_bool(expr: &Expr, op: &str) -> PyResult<()> {
    if expr.dtype() == DType::Bool {
        return Err(raise(
            "InvalidOperationError",
            format!("numpy boolean subtract, the `-` operator, is not supported ({op} of bool)"),
        ));
    }
    Ok(())
}

#[pymethods]
impl PyArray {
    /// The shape, as a tuple.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.expr.shape())
    }

    /// The element type, a `numpy.dtype`.
    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_numpy_dtype(py, self.expr.dtype())
    }

    /// The number of dimensions.
    #[getter]
    fn ndim(&self) -> usize {
        self.expr.shape().len()
    }

    /// The number of elements.
    #[getter]
    fn size(&self) -> u64 {
        self.expr.shape().iter().product()
    }

    /// The bytes of the elements.
    #[getter]
    fn nbytes(&self) -> u64 {
        self.size() * self.expr.dtype().itemsize() as u64
    }

    fn __len__(&self) -> PyResult<usize> {
        match self.expr.shape().first() {
            Some(&n) => Ok(n as usize),
            None => Err(pyo3::exceptions::PyTypeError::new_err(
                "len() of unsized object",
            )),
        }
    }

    /// Shape, dtype, pending operations and the cost of computing it
    /// (from the current engine's plan; nothing is run).
    fn __repr__(slf: Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        py.import("outcore._repr")?
            .getattr("text")?
            .call1((slf,))?
            .extract()
    }

    /// The same as an HTML table, for notebooks.
    fn _repr_html_(slf: Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        py.import("outcore._repr")?
            .getattr("html_table")?
            .call1((slf,))?
            .extract()
    }

    /// The pending operations, as text (`sqrt(x.npy) + 1`).
    #[getter]
    fn _expr(&self) -> String {
        self.expr.to_string()
    }

    /// NEP 13: NumPy's ufuncs on outcore arrays stay lazy (see
    /// `outcore._numpy`).
    #[pyo3(signature = (ufunc, method, *inputs, **kwargs))]
    fn __array_ufunc__<'py>(
        slf: Bound<'py, Self>,
        ufunc: &Bound<'py, PyAny>,
        method: &Bound<'py, PyAny>,
        inputs: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("outcore._numpy")?
            .getattr("array_ufunc")?
            .call((ufunc, method, inputs, kwargs), None)
    }

    /// NEP 18: NumPy's functions on outcore arrays stay lazy (see
    /// `outcore._numpy`).
    fn __array_function__<'py>(
        slf: Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        types: &Bound<'py, PyAny>,
        args: &Bound<'py, PyAny>,
        kwargs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("outcore._numpy")?
            .getattr("array_function")?
            .call1((func, types, args, kwargs))
    }

    /// The ufunc of one operand named as NumPy names it (`sqrt`,
    /// `negative`, `logical_not`, ...).
    fn _unary(&self, name: &str) -> PyResult<PyArray> {
        let op = match name {
            "negative" => UnaryOp::Neg,
            "absolute" => UnaryOp::Abs,
            "sqrt" => UnaryOp::Sqrt,
            "exp" => UnaryOp::Exp,
            "log" => UnaryOp::Log,
            "log1p" => UnaryOp::Log1p,
            "isnan" => UnaryOp::IsNan,
            "positive" => return Ok(wrap(self.expr.clone())),
            "logical_not" => {
                return Ok(wrap(self.expr.cast(DType::Bool).unary(UnaryOp::Not)));
            }
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "numpy.{name} is not implemented by outcore"
                )));
            }
        };
        Ok(wrap(self.expr.unary(op)))
    }

    /// The ufunc of two operands named as NumPy names it, `a` and `b`
    /// each an `Array` or a scalar; `None` if an operand is neither.
    #[staticmethod]
    fn _binary(
        name: &str,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
    ) -> PyResult<Option<PyArray>> {
        let (Some(a), Some(b)) = pair(a, b)? else {
            return Ok(None);
        };
        let op = match name {
            "add" => BinaryOp::Add,
            "subtract" => BinaryOp::Sub,
            "multiply" => BinaryOp::Mul,
            "divide" | "true_divide" => BinaryOp::Div,
            "power" => BinaryOp::Pow,
            "maximum" => BinaryOp::Maximum,
            "minimum" => BinaryOp::Minimum,
            "equal" => BinaryOp::Eq,
            "not_equal" => BinaryOp::Ne,
            "less" => BinaryOp::Lt,
            "less_equal" => BinaryOp::Le,
            "greater" => BinaryOp::Gt,
            "greater_equal" => BinaryOp::Ge,
            "logical_and" => {
                return Ok(Some(wrap(a.cast(DType::Bool).and(b.cast(DType::Bool)))));
            }
            "logical_or" => {
                return Ok(Some(wrap(a.cast(DType::Bool).or(b.cast(DType::Bool)))));
            }
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "numpy.{name} is not implemented by outcore"
                )));
            }
        };
        Ok(Some(wrap(a.binary(op, &b))))
    }

    /// `np.where(cond, a, b)`, each an `Array` or a scalar; `None` if an
    /// operand is neither.
    #[staticmethod]
    fn _where(
        cond: &Bound<'_, PyAny>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
    ) -> PyResult<Option<PyArray>> {
        let like = [cond, a, b]
            .into_iter()
            .find_map(|o| o.extract::<PyRef<'_, PyArray>>().ok())
            .map(|a| a.expr.clone());
        let (Some(c), Some(a), Some(b)) = (
            operand(cond, like.as_ref())?,
            operand(a, like.as_ref())?,
            operand(b, like.as_ref())?,
        ) else {
            return Ok(None);
        };
        Ok(Some(wrap(c.cast(DType::Bool).select(a, b))))
    }

    /// `np.clip(x, lo, hi)` (either bound may be `None`), cast to `dtype`
    /// (NumPy's `result_type` of the operands, computed by the caller).
    /// `None` if a bound is not an operand.
    #[pyo3(signature = (lo, hi, dtype))]
    fn _clip(
        &self,
        lo: Option<&Bound<'_, PyAny>>,
        hi: Option<&Bound<'_, PyAny>>,
        dtype: &Bound<'_, PyAny>,
    ) -> PyResult<Option<PyArray>> {
        let dtype = from_numpy_dtype(dtype)?;
        let mut out = self.expr.clone();
        for (bound, op) in [(lo, BinaryOp::Maximum), (hi, BinaryOp::Minimum)] {
            let Some(bound) = bound.filter(|b| !b.is_none()) else {
                continue;
            };
            let Some(e) = operand(bound, Some(&self.expr))? else {
                return Ok(None);
            };
            out = out.binary(op, &e);
        }
        Ok(Some(wrap(out.cast(dtype))))
    }

    fn __add__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Add, o, false)
    }
    fn __radd__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Add, o, true)
    }
    fn __sub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Sub, o, false)
    }
    fn __rsub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Sub, o, true)
    }
    fn __mul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Mul, o, false)
    }
    fn __rmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Mul, o, true)
    }
    fn __truediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Div, o, false)
    }
    fn __rtruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Div, o, true)
    }
    fn __pow__(
        &self,
        o: &Bound<'_, PyAny>,
        modulo: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if modulo.is_some_and(|m| !m.is_none()) {
            return Ok(o.py().NotImplemented());
        }
        self.binary(BinaryOp::Pow, o, false)
    }
    fn __rpow__(
        &self,
        o: &Bound<'_, PyAny>,
        modulo: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if modulo.is_some_and(|m| !m.is_none()) {
            return Ok(o.py().NotImplemented());
        }
        self.binary(BinaryOp::Pow, o, true)
    }
    fn __and__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::And, o, false)
    }
    fn __rand__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::And, o, true)
    }
    fn __or__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Or, o, false)
    }
    fn __ror__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Or, o, true)
    }
    fn __lt__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Lt, o, false)
    }
    fn __le__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Le, o, false)
    }
    fn __gt__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Gt, o, false)
    }
    fn __ge__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Ge, o, false)
    }
    fn __eq__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Eq, o, false)
    }
    fn __ne__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.binary(BinaryOp::Ne, o, false)
    }
    fn __neg__(&self) -> PyArray {
        wrap(self.expr.unary(UnaryOp::Neg))
    }
    fn __pos__(&self) -> PyArray {
        wrap(self.expr.clone())
    }
    fn __abs__(&self) -> PyArray {
        wrap(self.expr.abs())
    }
    fn __invert__(&self) -> PyArray {
        wrap(self.expr.unary(UnaryOp::Not))
    }

    /// The array cast to `dtype` (NumPy's `astype`, unsafe casting).
    fn astype(&self, dtype: &Bound<'_, PyAny>) -> PyResult<PyArray> {
        Ok(wrap(self.expr.cast(from_numpy_dtype(dtype)?)))
    }

    /// `np.sum`.
    #[pyo3(signature = (axis=None))]
    fn sum(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Sum, |e| e.sum(a)))
    }
    /// `np.nansum`.
    #[pyo3(signature = (axis=None))]
    fn nansum(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Sum, |e| e.nansum(a)))
    }
    /// `np.mean`.
    #[pyo3(signature = (axis=None))]
    fn mean(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.mean(a)))
    }
    /// `np.nanmean`.
    #[pyo3(signature = (axis=None))]
    fn nanmean(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.nanmean(a)))
    }
    /// `np.var`.
    #[pyo3(signature = (axis=None, ddof=0))]
    fn var(&self, axis: Option<i64>, ddof: i64) -> PyResult<PyArray> {
        let (a, d) = (axis_of(&self.expr, axis)?, Self::ddof(ddof)?);
        Ok(self.reduce(Rule::Float, |e| e.var(a, d)))
    }
    /// `np.nanvar`.
    #[pyo3(signature = (axis=None, ddof=0))]
    fn nanvar(&self, axis: Option<i64>, ddof: i64) -> PyResult<PyArray> {
        let (a, d) = (axis_of(&self.expr, axis)?, Self::ddof(ddof)?);
        Ok(self.reduce(Rule::Float, |e| e.nanvar(a, d)))
    }
    /// `np.std`.
    #[pyo3(signature = (axis=None, ddof=0))]
    fn std(&self, axis: Option<i64>, ddof: i64) -> PyResult<PyArray> {
        let (a, d) = (axis_of(&self.expr, axis)?, Self::ddof(ddof)?);
        Ok(self.reduce(Rule::Float, |e| e.std(a, d)))
    }
    /// `np.nanstd`.
    #[pyo3(signature = (axis=None, ddof=0))]
    fn nanstd(&self, axis: Option<i64>, ddof: i64) -> PyResult<PyArray> {
        let (a, d) = (axis_of(&self.expr, axis)?, Self::ddof(ddof)?);
        Ok(self.reduce(Rule::Float, |e| e.nanstd(a, d)))
    }
    /// `np.min`.
    #[pyo3(signature = (axis=None))]
    fn min(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.min(a)))
    }
    /// `np.max`.
    #[pyo3(signature = (axis=None))]
    fn max(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.max(a)))
    }
    /// `np.nanmin`.
    #[pyo3(signature = (axis=None))]
    fn nanmin(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.nanmin(a)))
    }
    /// `np.nanmax`.
    #[pyo3(signature = (axis=None))]
    fn nanmax(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.nanmax(a)))
    }
    /// `np.argmin` (over the flattened array when `axis` is `None`).
    #[pyo3(signature = (axis=None))]
    fn argmin(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.argmin(a)))
    }
    /// `np.argmax` (over the flattened array when `axis` is `None`).
    #[pyo3(signature = (axis=None))]
    fn argmax(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.argmax(a)))
    }
    /// `np.ptp` (`TypeError` for bool, as NumPy).
    #[pyo3(signature = (axis=None))]
    fn ptp(&self, axis: Option<i64>) -> PyResult<PyArray> {
        refuse_bool(&self.expr, "ptp")?;
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.ptp(a)))
    }
    /// `np.any`.
    #[pyo3(signature = (axis=None))]
    fn any(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.any(a)))
    }
    /// `np.all`.
    #[pyo3(signature = (axis=None))]
    fn all(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.all(a)))
    }
    /// `np.count_nonzero`.
    #[pyo3(signature = (axis=None))]
    fn count_nonzero(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Engine, |e| e.count_nonzero(a)))
    }
    /// `np.median` (exact).
    #[pyo3(signature = (axis=None))]
    fn median(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.median(a)))
    }
    /// `np.quantile(x, q, axis=)` for one `q` in [0, 1] (exact, linear).
    #[pyo3(signature = (q, axis=None))]
    fn quantile(&self, q: f64, axis: Option<i64>) -> PyResult<PyArray> {
        check_q(q)?;
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.quantile(q, a)))
    }
    /// `np.nanmedian` (exact): NaN skipped, NaN where all are NaN.
    #[pyo3(signature = (axis=None))]
    fn nanmedian(&self, axis: Option<i64>) -> PyResult<PyArray> {
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.nanmedian(a)))
    }
    /// `np.nanquantile(x, q, axis=)` for one `q` in [0, 1] (exact,
    /// linear): NaN skipped, NaN where all are NaN.
    #[pyo3(signature = (q, axis=None))]
    fn nanquantile(&self, q: f64, axis: Option<i64>) -> PyResult<PyArray> {
        check_q(q)?;
        let a = axis_of(&self.expr, axis)?;
        Ok(self.reduce(Rule::Float, |e| e.nanquantile(q, a)))
    }
    /// `np.sort(x, axis=0)`: each column sorted (NaN last); returns a new
    /// lazy array (unlike `ndarray.sort`, nothing is sorted in place).
    #[pyo3(signature = (axis=0))]
    fn sort(&self, axis: Option<i64>) -> PyResult<PyArray> {
        self.along_rows(axis, "sort")?;
        Ok(wrap(self.expr.sort()))
    }
    /// `np.cumsum(x, axis=0)`: running sums down each column.
    #[pyo3(signature = (axis=0))]
    fn cumsum(&self, axis: Option<i64>) -> PyResult<PyArray> {
        self.along_rows(axis, "cumsum")?;
        Ok(self.reduce(Rule::Sum, |e| e.cumsum()))
    }

    /// Computes the array; a `numpy.ndarray`.
    fn compute<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let out = py.import("outcore")?.getattr("compute")?.call1((slf,))?;
        out.get_item(0)
    }

    /// `numpy.asarray(x)`: computes the array.
    #[pyo3(signature = (dtype=None, copy=None))]
    fn __array__<'py>(
        slf: Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if copy == Some(false) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "an outcore.Array is computed when converted: copy=False is impossible",
            ));
        }
        let out = Self::compute(slf)?;
        match dtype {
            Some(dt) if !dt.is_none() => out.call_method1("astype", (dt,)),
            _ => Ok(out),
        }
    }
}

impl PyArray {
    /// `sort` and `cumsum` run along axis 0 (or the only axis).
    fn along_rows(&self, axis: Option<i64>, op: &str) -> PyResult<()> {
        let ndim = self.expr.shape().len();
        match axis_of(&self.expr, axis)? {
            Some(0) => Ok(()),
            None if ndim == 1 => Ok(()),
            _ => Err(raise(
                "InvalidOperationError",
                format!("{op} runs along axis 0 only (axis={axis:?} given)"),
            )),
        }
    }
}

/// `outcore.asarray` for an in-memory NumPy array: the array read in
/// place, zero-copy.
#[pyfunction]
pub(crate) fn _memory_array(array: &Bound<'_, PyAny>) -> PyResult<PyArray> {
    Ok(PyArray {
        expr: memory::memory_expr(array)?,
    })
}
