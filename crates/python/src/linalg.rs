//! Linear algebra for Python: lazy `gram`, `t_dot`, `cov`, `corrcoef` and `dot`
//! arrays over an `outcore.Array`, and the PCA of a computed covariance
//! (`python/outcore/_linalg.py` builds `oc.cov`, `oc.pca`, ... on these).

use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use outcore::kernels::linalg::pca::pca_from_cov;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::array::PyArray;
use crate::errors::{raise, to_py};

/// The extension's linear algebra functions, added to `module`.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(_gram, module)?)?;
    module.add_function(wrap_pyfunction!(_t_dot, module)?)?;
    module.add_function(wrap_pyfunction!(_cov, module)?)?;
    module.add_function(wrap_pyfunction!(_corrcoef, module)?)?;
    module.add_function(wrap_pyfunction!(_dot, module)?)?;
    module.add_function(wrap_pyfunction!(_pca_from_cov, module)?)?;
    Ok(())
}

fn lazy(expr: outcore::Expr) -> PyResult<PyArray> {
    expr.check().map_err(to_py)?;
    Ok(PyArray { expr })
}

/// `x.T @ x` of a 2-d array, lazily (float64 sums; float32 stays float32).
#[pyfunction]
fn _gram(x: PyRef<'_, PyArray>) -> PyResult<PyArray> {
    lazy(x.expr.gram())
}

/// `x.T @ y` of two 2-d arrays with the same rows (`y` an opened file),
/// lazily.
#[pyfunction]
fn _t_dot(x: PyRef<'_, PyArray>, y: PyRef<'_, PyArray>) -> PyResult<PyArray> {
    lazy(x.expr.t_dot(&y.expr))
}

/// `np.cov(x, rowvar=False, ddof=ddof)`, lazily (float64).
#[pyfunction]
fn _cov(x: PyRef<'_, PyArray>, ddof: i64) -> PyResult<PyArray> {
    let ddof = u32::try_from(ddof)
        .map_err(|_| raise("ConfigError", format!("ddof={ddof}: must be ≥ 0")))?;
    lazy(x.expr.cov(ddof))
}

/// `np.corrcoef(x, rowvar=False)`, lazily (float64).
#[pyfunction]
fn _corrcoef(x: PyRef<'_, PyArray>) -> PyResult<PyArray> {
    lazy(x.expr.corrcoef())
}

/// `x @ w` (or `(x - mean) @ w`) for a float64 `w` in memory, lazily:
/// an `n × k` float64 array streamed block by block.
#[pyfunction]
#[pyo3(signature = (x, w, mean=None))]
fn _dot(
    x: PyRef<'_, PyArray>,
    w: PyReadonlyArray2<'_, f64>,
    mean: Option<PyReadonlyArray1<'_, f64>>,
) -> PyResult<PyArray> {
    let w = w.as_array().to_owned();
    lazy(match mean {
        Some(m) => x.expr.dot_centred(m.as_array().to_owned(), w),
        None => x.expr.dot(w),
    })
}

/// The PCA of `n_samples` rows from their covariance (`ddof=1`), keeping
/// `k` components: a dict of scikit-learn's attribute names (without the
/// trailing underscore) to NumPy arrays and floats.
#[pyfunction]
fn _pca_from_cov<'py>(
    py: Python<'py>,
    cov: PyReadonlyArray2<'py, f64>,
    n_samples: u64,
    k: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let cov = cov.as_array().to_owned();
    let fit = py
        .detach(|| pca_from_cov(cov.view(), n_samples, k))
        .map_err(|e| to_py(e.into()))?;
    let out = PyDict::new(py);
    out.set_item("components", fit.components.into_pyarray(py))?;
    out.set_item(
        "explained_variance",
        fit.explained_variance.into_pyarray(py),
    )?;
    out.set_item(
        "explained_variance_ratio",
        fit.explained_variance_ratio.into_pyarray(py),
    )?;
    out.set_item("singular_values", fit.singular_values.into_pyarray(py))?;
    out.set_item("noise_variance", fit.noise_variance)?;
    Ok(out)
}
