"""Linear algebra over arrays larger than memory: Gram matrices, covariance,
correlation, products with an in-memory matrix, and PCA.

>>> import outcore as oc
>>> x = oc.open("x.npy")
>>> c, r, g = oc.compute(oc.cov(x), oc.corrcoef(x), oc.gram(x))   # one pass
>>> fit = oc.pca(x, 10)
>>> oc.save("z.npy", fit.transform(x))
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import _outcore
from ._outcore import Array

__all__ = ["gram", "t_dot", "cov", "corrcoef", "dot", "pca", "PCAResult"]


def _rows_as_variables(rowvar: bool, name: str) -> None:
    if rowvar:
        raise _outcore_error(
            "ConfigError",
            "%s(rowvar=True) is not supported: outcore streams rows, so columns are "
            "the variables; pass rowvar=False" % name,
        )


def _outcore_error(name: str, msg: str) -> Exception:
    from . import _errors

    err: Exception = getattr(_errors, name)(msg)
    return err


def gram(x: Array) -> Array:
    """``x.T @ x`` of a 2-d array, lazily (summed in float64; float32 input
    gives float32 as NumPy does, integers float64)."""
    return _outcore._gram(x)


def t_dot(x: Array, y: Array) -> Array:
    """``x.T @ y`` of two 2-d arrays with the same rows, lazily (``y`` must be
    an opened file; float32 when both are float32, float64 otherwise)."""
    return _outcore._t_dot(x, y)


def cov(x: Array, rowvar: bool = False, ddof: Optional[int] = None) -> Array:
    """``np.cov(x, rowvar=False, ddof=ddof)``, lazily: float64, columns are
    the variables (``ddof`` None means 1, NumPy's default)."""
    _rows_as_variables(rowvar, "cov")
    return _outcore._cov(x, 1 if ddof is None else int(ddof))


def corrcoef(x: Array, rowvar: bool = False) -> Array:
    """``np.corrcoef(x, rowvar=False)``, lazily (float64)."""
    _rows_as_variables(rowvar, "corrcoef")
    return _outcore._corrcoef(x)


def dot(x: Array, w: Any) -> Array:
    """``x @ w`` for a 2-d array ``x`` and a matrix ``w`` in memory: a lazy
    ``n × k`` float64 array, streamed block by block (save it, reduce it,
    combine it with other arrays)."""
    w = np.ascontiguousarray(np.asarray(w, dtype=np.float64))
    if w.ndim == 1:
        w = w[:, None]
    return _outcore._dot(x, w)


class PCAResult:
    """A fitted PCA, with scikit-learn's attribute names.

    ``components_`` (k × c), ``explained_variance_``,
    ``explained_variance_ratio_``, ``singular_values_``, ``noise_variance_``,
    ``mean_``, ``n_components_``, ``n_samples_``; ``transform(x)`` is the
    lazy ``(x - mean_) @ components_.T``.
    """

    def __init__(self, fit: Dict[str, Any], mean: np.ndarray, n_samples: int) -> None:
        self.components_: np.ndarray = fit["components"]
        self.explained_variance_: np.ndarray = fit["explained_variance"]
        self.explained_variance_ratio_: np.ndarray = fit["explained_variance_ratio"]
        self.singular_values_: np.ndarray = fit["singular_values"]
        self.noise_variance_: float = float(fit["noise_variance"])
        self.mean_: np.ndarray = mean
        self.n_components_: int = int(self.components_.shape[0])
        self.n_samples_: int = int(n_samples)

    def transform(self, x: Array) -> Array:
        """``(x - mean_) @ components_.T``, lazily (float64, n × k)."""
        w = np.ascontiguousarray(self.components_.T)
        return _outcore._dot(x, w, np.ascontiguousarray(self.mean_))

    def __repr__(self) -> str:
        return "PCAResult(n_components=%d, n_samples=%d, explained_variance_ratio=%s)" % (
            self.n_components_,
            self.n_samples_,
            np.array2string(self.explained_variance_ratio_, precision=4),
        )


def pca(x: Array, k: int) -> PCAResult:
    """``PCA(n_components=k, svd_solver="full").fit(x)`` of a 2-d array: one
    pass for the mean and the covariance, then the eigen-decomposition of
    the small c × c matrix (components signed as scikit-learn's ``svd_flip``)."""
    from . import compute

    if len(x.shape) != 2:
        raise _outcore_error(
            "ShapeError", "pca needs a 2-d array (rows x columns), not shape %r" % (x.shape,)
        )
    mean, c = compute(x.astype(np.float64).mean(axis=0), cov(x))
    fit = _outcore._pca_from_cov(np.ascontiguousarray(c), int(x.shape[0]), int(k))
    return PCAResult(fit, mean, int(x.shape[0]))
