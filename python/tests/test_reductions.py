"""Every method against NumPy: values and result dtypes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import outcore as oc

from conftest import DTYPES, FLOATS, assert_same, sample

PLAIN = ["sum", "mean", "min", "max", "argmin", "argmax", "any", "all", "count_nonzero"]
NAN = ["nansum", "nanmean", "nanmin", "nanmax"]
DDOF = ["std", "var", "nanstd", "nanvar"]
SHAPES = [(7,), (6, 3), (4, 3, 2)]


def numpy_call(a: np.ndarray, name: str, axis, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(np, name)(a, axis=axis, **kw)


def axes(shape):
    return [None, 0, 1] if len(shape) == 2 else [None, 0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_reductions_match_numpy(npy, dtype, shape):
    a = sample(dtype, shape, seed=len(shape))
    x = npy(a)
    names = PLAIN + NAN + DDOF + ["median"]
    if dtype != "bool":
        names.append("ptp")
    lazy, want = [], []
    for name in names:
        for axis in axes(shape):
            if name == "median" and axis == 1:
                continue  # the engine's quantiles run along axis 0 or all
            kw = {"ddof": 1} if name in DDOF and axis is not None else {}
            lazy.append(getattr(x, name)(axis=axis, **kw))
            want.append((name, axis, numpy_call(a, name, axis, **kw)))
    got = oc.compute(*lazy)
    for g, (name, axis, w) in zip(got, want):
        try:
            assert_same(g, w, dtype)
        except AssertionError as e:
            raise AssertionError(f"{name}(axis={axis}) of {dtype}{shape}: {e}") from None


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_and_inf(npy, dtype):
    a = sample(dtype, (8, 3), special=True)
    x = npy(a)
    for name in ["sum", "mean", "min", "max", "std", "var", "nansum", "nanmean",
                 "nanmin", "nanmax", "nanstd", "nanvar", "argmin", "argmax", "ptp"]:
        for axis in [None, 0, 1]:
            got = getattr(x, name)(axis=axis).compute()
            assert_same(got, numpy_call(a, name, axis), dtype)


@pytest.mark.parametrize("dtype", ["int32", "float32", "float64", "uint8"])
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.99, 1.0])
def test_quantile(npy, dtype, q):
    a = sample(dtype, (9, 2))
    x = npy(a)
    for axis in [None, 0]:
        assert_same(x.quantile(q, axis=axis).compute(), np.quantile(a, q, axis=axis), dtype)


@pytest.mark.parametrize("dtype", ["bool", "int8", "int64", "uint32", "float16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(9,), (5, 3)])
def test_cumsum_and_sort(npy, dtype, shape):
    a = sample(dtype, shape, special=True)
    x = npy(a)
    assert_same(x.cumsum().compute(), np.cumsum(a, axis=0), dtype)
    assert_same(x.sort().compute(), np.sort(a, axis=0), dtype)
    assert_same(x.sort(axis=0).compute(), np.sort(a, axis=0), dtype)


def test_sort_other_axis_is_refused(npy):
    x = npy(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        x.sort(axis=1)


def test_negative_axis(npy):
    a = sample("float64", (5, 3))
    x = npy(a)
    assert_same(x.sum(axis=-1).compute(), a.sum(axis=-1), "float64")
    assert_same(x.mean(axis=-2).compute(), a.mean(axis=-2), "float64")


def test_axis_out_of_range(npy):
    x = npy(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        x.sum(axis=2)
    with pytest.raises(IndexError):
        x.sum(axis=-3)
