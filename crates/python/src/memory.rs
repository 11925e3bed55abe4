//! NumPy arrays in memory as engine inputs, read in place: a whole array
//! (`oc.asarray(a)`, `x + a` with `a.shape == x.shape`) through the
//! buffer protocol, and small arrays that broadcast per column or per row
//! copied into the expression.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use outcore::chunker::{ArrayFile, ByteOrder, DType, Layout, parse_descr};
use outcore::{AnyArray, Expr};
use pyo3::buffer::PyUntypedBuffer;
use pyo3::prelude::*;

use crate::errors::{raise, to_py};

/// The bytes of a NumPy array held through the buffer protocol: the
/// exporter stays alive and its memory in place until this drops.
struct NumpyBytes(AssertUnwindSafe<PyUntypedBuffer>);

impl AsRef<[u8]> for NumpyBytes {
    fn as_ref(&self) -> &[u8] {
        let buf = &self.0;
        let len = buf.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: the buffer protocol guarantees `buf_ptr()` points to
        // `len_bytes()` bytes that stay allocated and in place while the
        // buffer is held (NumPy refuses to resize an array with exports),
        // and this struct holds it. The array is contiguous (checked when
        // it was wrapped). A Python thread writing to the array during a
        // run races with the engine's reads as it would with NumPy's own
        // GIL-free loops; the documentation says not to.
        unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>(), len) }
    }
}

/// The dtype and byte order of a NumPy array or dtype-like.
pub(crate) fn dtype_and_order(dtype: &Bound<'_, PyAny>) -> PyResult<(DType, ByteOrder)> {
    let py = dtype.py();
    let dt = py.import("numpy")?.getattr("dtype")?.call1((dtype,))?;
    let descr: String = dt.getattr("str")?.extract()?;
    parse_descr(&descr).map_err(|e| raise("FormatError", format!("unsupported dtype: {e}")))
}

/// A C- or Fortran-contiguous NumPy array as an engine input, read in
/// place (zero-copy).
pub(crate) fn memory_expr(array: &Bound<'_, PyAny>) -> PyResult<Expr> {
    let (dtype, order) = dtype_and_order(&array.getattr("dtype")?)?;
    let shape: Vec<u64> = array.getattr("shape")?.extract()?;
    let buf = PyUntypedBuffer::get(array)?;
    let layout = if buf.is_c_contiguous() {
        Layout::C
    } else if buf.is_fortran_contiguous() {
        Layout::Fortran
    } else {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "a NumPy array of shape {shape:?} that is not contiguous cannot be read in place; \
             pass numpy.ascontiguousarray(a)"
        )));
    };
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let label = format!("<ndarray ({}) {dtype}>", dims.join(", "));
    let bytes = Arc::new(NumpyBytes(AssertUnwindSafe(buf)));
    let file = ArrayFile::from_memory(bytes, label, dtype, shape, order, layout)
        .map_err(|e| to_py(e.into()))?;
    Ok(Expr::array(file))
}

/// A small NumPy array (native byte order) copied into an [`AnyArray`].
pub(crate) fn values(array: &Bound<'_, PyAny>) -> PyResult<AnyArray> {
    use numpy::PyReadonlyArrayDyn as A;
    let (dtype, _) = dtype_and_order(&array.getattr("dtype")?)?;
    Ok(match dtype {
        DType::Bool => AnyArray::Bool(array.extract::<A<'_, bool>>()?.as_array().to_owned()),
        DType::I8 => AnyArray::I8(array.extract::<A<'_, i8>>()?.as_array().to_owned()),
        DType::I16 => AnyArray::I16(array.extract::<A<'_, i16>>()?.as_array().to_owned()),
        DType::I32 => AnyArray::I32(array.extract::<A<'_, i32>>()?.as_array().to_owned()),
        DType::I64 => AnyArray::I64(array.extract::<A<'_, i64>>()?.as_array().to_owned()),
        DType::U8 => AnyArray::U8(array.extract::<A<'_, u8>>()?.as_array().to_owned()),
        DType::U16 => AnyArray::U16(array.extract::<A<'_, u16>>()?.as_array().to_owned()),
        DType::U32 => AnyArray::U32(array.extract::<A<'_, u32>>()?.as_array().to_owned()),
        DType::U64 => AnyArray::U64(array.extract::<A<'_, u64>>()?.as_array().to_owned()),
        DType::F16 => AnyArray::F16(
            array
                .extract::<A<'_, outcore::f16>>()?
                .as_array()
                .to_owned(),
        ),
        DType::F32 => AnyArray::F32(array.extract::<A<'_, f32>>()?.as_array().to_owned()),
        DType::F64 => AnyArray::F64(array.extract::<A<'_, f64>>()?.as_array().to_owned()),
    })
}

/// A NumPy array operand of an expression shaped `like`: how it
/// broadcasts is decided by `outcore._operand.classify` (NumPy's rules),
/// then it is read in place (same shape), or copied as per-column,
/// per-row or scalar values.
pub(crate) fn ndarray_operand(like: &Expr, other: &Bound<'_, PyAny>) -> PyResult<Expr> {
    let py = other.py();
    let (kind, array): (String, Bound<'_, PyAny>) = py
        .import("outcore._operand")?
        .getattr("classify")?
        .call1((like.shape(), other))?
        .extract()?;
    match kind.as_str() {
        "memory" => memory_expr(&array),
        "column" => Ok(Expr::column_values(values(&array)?)),
        _ => Ok(Expr::row_values(values(&array)?)),
    }
}

/// A NumPy scalar as a 0-d value of its dtype (`None` for a dtype the
/// engine lacks, such as complex or str).
pub(crate) fn numpy_scalar(scalar: &Bound<'_, PyAny>) -> PyResult<Option<Expr>> {
    if dtype_and_order(&scalar.getattr("dtype")?).is_err() {
        return Ok(None);
    }
    ndarray_operand(&Expr::constant(0.0), scalar).map(Some)
}
