//! Dtypes and results between the engine and NumPy.

use numpy::IntoPyArray;
use outcore::{AnyArray, DType, parse_descr};
use pyo3::prelude::*;

use crate::errors::raise;

/// `numpy.dtype(name)` for an engine dtype.
pub(crate) fn to_numpy_dtype<'py>(py: Python<'py>, dtype: DType) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?.getattr("dtype")?.call1((dtype.name(),))
}

/// The engine dtype for anything `numpy.dtype()` accepts (a name, a type,
/// a dtype); native byte order only.
pub(crate) fn from_numpy_dtype(obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    let py = obj.py();
    let dt = py.import("numpy")?.getattr("dtype")?.call1((obj,))?;
    let descr: String = dt.getattr("str")?.extract()?;
    match parse_descr(&descr) {
        Ok((dtype, order)) if order.is_native() => Ok(dtype),
        Ok(_) => Err(raise(
            "FormatError",
            format!("dtype {descr}: only native byte order is supported here"),
        )),
        Err(e) => Err(raise("FormatError", format!("unsupported dtype: {e}"))),
    }
}

/// A result as a NumPy array, without a copy.
pub(crate) fn to_numpy(py: Python<'_>, a: AnyArray) -> Bound<'_, PyAny> {
    match a {
        AnyArray::Bool(a) => a.into_pyarray(py).into_any(),
        AnyArray::I8(a) => a.into_pyarray(py).into_any(),
        AnyArray::I16(a) => a.into_pyarray(py).into_any(),
        AnyArray::I32(a) => a.into_pyarray(py).into_any(),
        AnyArray::I64(a) => a.into_pyarray(py).into_any(),
        AnyArray::U8(a) => a.into_pyarray(py).into_any(),
        AnyArray::U16(a) => a.into_pyarray(py).into_any(),
        AnyArray::U32(a) => a.into_pyarray(py).into_any(),
        AnyArray::U64(a) => a.into_pyarray(py).into_any(),
        AnyArray::F16(a) => a.into_pyarray(py).into_any(),
        AnyArray::F32(a) => a.into_pyarray(py).into_any(),
        AnyArray::F64(a) => a.into_pyarray(py).into_any(),
    }
}
