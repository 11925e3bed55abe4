"""np.nanmedian / np.nanquantile and quantiles along axis 1, exact: the
same values as NumPy's (NaN where NumPy has NaN), as methods and through
NumPy's functions (NEP 18)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import outcore as oc

from conftest import sample


def numpy(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # All-NaN slice
        return f(*args, **kw)


def exact(got, want) -> None:
    want = np.asarray(want)
    got = np.asarray(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)  # NaN equal to NaN, no tolerance


def with_nan(dtype: str) -> np.ndarray:
    a = sample(dtype, (40, 5), seed=3)
    if dtype.startswith("float"):
        a[::7, 0] = np.nan
        a[:, 2] = np.nan  # an all-NaN column
        a[5, :] = np.nan  # an all-NaN row
    return a


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int16", "uint8"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_nanmedian_and_nanquantile_equal_numpy(npy, dtype, axis):
    a = with_nan(dtype)
    x = npy(a)
    got = oc.compute(x.nanmedian(axis=axis), x.nanquantile(0.3, axis=axis),
                     np.nanmedian(x, axis=axis), np.nanquantile(x, 0.9, axis=axis))
    exact(got[0], numpy(np.nanmedian, a, axis=axis))
    exact(got[1], numpy(np.nanquantile, a, 0.3, axis=axis))
    exact(got[2], numpy(np.nanmedian, a, axis=axis))
    exact(got[3], numpy(np.nanquantile, a, 0.9, axis=axis))


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_median_and_quantile_along_axis_1(npy, dtype):
    a = sample(dtype, (30, 7), seed=4)
    x = npy(a)
    m, q = oc.compute(np.median(x, axis=1), x.quantile(0.75, axis=1))
    exact(m, np.median(a, axis=1))
    exact(q, np.quantile(a, 0.75, axis=1))


def test_float16_nanmedian_overflows_as_numpy_does(npy):
    # NumPy's nanmedian along an axis shorter than 600 adds the middle
    # values in float16: 60000 + 60000 is inf there, as here.
    a = np.full((5, 2), 60000.0, dtype=np.float16)
    a[0, 1] = np.nan
    x = npy(a)
    (got,) = oc.compute(x.nanmedian(axis=0))
    exact(got, numpy(np.nanmedian, a, axis=0))


def test_nanquantile_refuses_q_outside_0_1(npy):
    x = npy(sample("float64", (4, 2)))
    with pytest.raises(Exception, match="range"):
        x.nanquantile(1.5)
