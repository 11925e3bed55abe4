"""oc.gram, oc.cov, oc.corrcoef, oc.dot and oc.pca against NumPy (and the
PCA's invariants scikit-learn guarantees: orthonormal axes, sorted
variances, svd_flip's signs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import outcore as oc

from conftest import sample


@pytest.mark.parametrize("dtype", ["float64", "float32", "int16", "uint8", "bool"])
def test_cov_corrcoef_gram_match_numpy(npy, dtype):
    a = sample(dtype, (300, 5), seed=3)
    x = npy(a)
    c0, c1, r, g = oc.compute(oc.cov(x, ddof=0), oc.cov(x), oc.corrcoef(x), oc.gram(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_r = np.corrcoef(a, rowvar=False)
    np.testing.assert_allclose(c0, np.cov(a, rowvar=False, ddof=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c1, np.cov(a, rowvar=False), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r, want_r, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert c1.dtype == np.cov(a, rowvar=False).dtype == np.float64
    a64 = a.astype(np.float64)
    want_g = a64.T @ a64
    assert g.dtype == (np.float32 if dtype == "float32" else np.float64)
    np.testing.assert_allclose(g, want_g, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_cov_is_stable_far_from_zero(npy):
    rng = np.random.default_rng(1)
    a = 1e8 + rng.standard_normal((4000, 3))
    got = oc.compute(oc.cov(npy(a)))[0]
    np.testing.assert_allclose(got, np.cov(a, rowvar=False), rtol=1e-9)


def test_nan_propagates_and_one_variable(npy):
    a = sample("float64", (50, 3), seed=2)
    a[7, 1] = np.nan
    got = oc.compute(oc.cov(npy(a)))[0]
    want = np.cov(a, rowvar=False)
    np.testing.assert_allclose(got, want, equal_nan=True)
    v = sample("float64", (40,), seed=4)
    got = np.asarray(oc.cov(npy(v)))
    assert got.shape == ()
    np.testing.assert_allclose(got, np.cov(v, rowvar=False))


def test_rowvar_true_is_refused(npy):
    x = npy(sample("float64", (10, 2)))
    with pytest.raises(oc.ConfigError, match="rowvar"):
        oc.cov(x, rowvar=True)
    with pytest.raises(oc.InvalidOperationError, match="2-d"):
        oc.gram(npy(sample("float64", (10,))))


def test_dot_streams(npy, tmp_path):
    a = sample("float32", (500, 6), seed=5)
    w = np.random.default_rng(6).standard_normal((6, 2))
    x = npy(a)
    y = oc.dot(x, w)
    assert y.shape == (500, 2) and y.dtype == np.float64
    np.testing.assert_allclose(np.asarray(y), a.astype(np.float64) @ w, rtol=1e-12)
    (s,) = oc.compute((y * 2).sum(axis=0))
    np.testing.assert_allclose(s, (2 * (a.astype(np.float64) @ w)).sum(axis=0), rtol=1e-10)
    oc.save(tmp_path / "y.npy", y)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), a.astype(np.float64) @ w)
    with pytest.raises(oc.InvalidOperationError, match="not aligned"):
        oc.dot(x, np.ones((5, 2)))


def test_pca(npy):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + 3.0
    fit = oc.pca(npy(a), 3)
    assert fit.components_.shape == (3, 6) and fit.n_components_ == 3
    # What scikit-learn's full solver gives, from NumPy's SVD.
    centred = a - a.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    ev = s**2 / (len(a) - 1)
    np.testing.assert_allclose(fit.explained_variance_, ev[:3], rtol=1e-10)
    np.testing.assert_allclose(fit.explained_variance_ratio_, ev[:3] / ev.sum(), rtol=1e-10)
    np.testing.assert_allclose(fit.singular_values_, s[:3], rtol=1e-10)
    np.testing.assert_allclose(fit.mean_, a.mean(axis=0), rtol=1e-12)
    # svd_flip(u_based_decision=False): the largest |entry| of each axis is positive.
    signs = np.sign(vt[np.arange(3), np.argmax(np.abs(vt[:3]), axis=1)])
    np.testing.assert_allclose(fit.components_, vt[:3] * signs[:, None], atol=1e-8)
    z = np.asarray(fit.transform(npy(a)))
    np.testing.assert_allclose(z, centred @ fit.components_.T, atol=1e-9)
    with pytest.raises(oc.InvalidOperationError):
        oc.pca(npy(a), 7)


def test_t_dot(npy):
    a = sample("float64", (200, 4), seed=8)
    b = sample("float32", (200, 3), seed=9)
    x, y = npy(a), npy(b)
    got = np.asarray(oc.t_dot(x, y))
    assert got.dtype == np.float64 and got.shape == (4, 3)
    np.testing.assert_allclose(got, a.T @ b.astype(np.float64), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(oc.t_dot(x * 2, y)), 2 * (a.T @ b), rtol=1e-12)
    with pytest.raises(oc.InvalidOperationError, match="not aligned"):
        oc.t_dot(x, npy(sample("float64", (10, 2))))
