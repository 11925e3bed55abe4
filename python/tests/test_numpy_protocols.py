"""NumPy's ufuncs (NEP 13) and functions (NEP 18) on outcore arrays:
lazy results, NumPy's values and dtypes, TypeError for the rest."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import outcore as oc

from conftest import assert_same, sample

UNARY = [np.negative, np.absolute, np.sqrt, np.exp, np.log, np.log1p, np.isnan,
         np.logical_not, np.positive]
BINARY = [np.add, np.subtract, np.multiply, np.true_divide, np.divide, np.power,
          np.maximum, np.minimum, np.equal, np.not_equal, np.less, np.less_equal,
          np.greater, np.greater_equal, np.logical_and, np.logical_or]


def quiet(f, *args, **kw):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return f(*args, **kw)


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint16", "float32", "float64"])
def test_unary_ufuncs(npy, dtype):
    a = sample(dtype, (6, 3), seed=5, special=True)
    if dtype.startswith("float"):
        a = np.abs(a)  # keep sqrt/log in their domain where NaN is not the point
        a.reshape(-1)[0] = np.nan
    x = npy(a)
    lazy = [u(x) for u in UNARY]
    assert all(isinstance(r, oc.Array) for r in lazy)
    for u, g in zip(UNARY, oc.compute(*lazy)):
        want = quiet(u, a)
        assert_same(g, want, str(want.dtype))


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64"])
def test_binary_ufuncs_argument_order(npy, dtype):
    a = sample(dtype, (5, 4), seed=6)
    b = sample(dtype, (5, 4), seed=7)
    if dtype.startswith("int"):
        a, b = (np.abs(a) % 4).astype(dtype), (np.abs(b) % 3 + 1).astype(dtype)
    x, y = npy(a), npy(b)
    lazy, want = [], []
    for u in BINARY:
        cases = [((x, y), (a, b)), ((x, 2), (a, 2)), ((3, x), (3, a)),
                 ((x, 1.5), (a, 1.5)), ((2.5, y), (2.5, b))]
        if u is np.power and dtype.startswith("int"):
            cases = [c for c in cases if not isinstance(c[1][1], float)
                     and not isinstance(c[1][0], float)]
        for lz, np_args in cases:
            r = u(*lz)
            assert isinstance(r, oc.Array), u
            lazy.append(r)
            want.append((u.__name__, np_args, quiet(u, *np_args)))
    for g, (name, args, w) in zip(oc.compute(*lazy), want):
        try:
            assert_same(g, w, str(np.asarray(w).dtype))
        except AssertionError as e:
            kinds = [type(v).__name__ for v in args]
            raise AssertionError(f"{name}{kinds} of {dtype}: {e}") from None


def test_numpy_scalars_and_0d_arrays(npy):
    a = sample("float32", (4, 2))
    x = npy(a)
    got = oc.compute(np.maximum(x, np.float32(0)), np.add(np.array(1.5), x),
                     x * np.float64(2), x + 1.5)
    assert_same(got[0], np.maximum(a, np.float32(0)), "float32")
    # NumPy 2 (NEP 50): NumPy scalars and 0-d arrays keep their dtype,
    # Python scalars are weak.
    assert_same(got[1], np.add(np.array(1.5), a), "float64")
    assert_same(got[2], a * np.float64(2), "float64")
    assert_same(got[3], a + 1.5, "float32")


FUNCS = ["sum", "mean", "min", "amin", "max", "amax", "argmin", "argmax", "nansum",
         "nanmean", "nanmin", "nanmax", "any", "all", "count_nonzero", "ptp"]
DDOF = ["std", "var", "nanstd", "nanvar"]


@pytest.mark.parametrize("dtype", ["int16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(9,), (6, 3)])
def test_functions_match_numpy(npy, dtype, shape):
    a = sample(dtype, shape, seed=8, special=True)
    x = npy(a)
    axes = [None, 0, -1] if len(shape) == 2 else [None, 0]
    lazy, want = [], []
    for name in FUNCS + DDOF + ["median"]:
        f = getattr(np, name)
        for axis in axes:
            if name == "median" and axis == -1 and len(shape) == 2:
                continue
            kw = {"ddof": 1} if name in DDOF else {}
            r = f(x, axis=axis, **kw)
            assert isinstance(r, oc.Array), name
            lazy.append(r)
            want.append((name, axis, quiet(f, a, axis=axis, **kw)))
    # Positional axis, as NumPy allows.
    lazy.append(np.sum(x, 0))
    want.append(("sum", "positional 0", np.sum(a, 0)))
    for g, (name, axis, w) in zip(oc.compute(*lazy), want):
        try:
            assert_same(g, w, dtype)
        except AssertionError as e:
            raise AssertionError(f"np.{name}(axis={axis}) of {dtype}{shape}: {e}") from None


def test_quantile_sort_cumsum_where_clip(npy):
    a = sample("float64", (8, 3), seed=9)
    i = sample("int32", (8, 3), seed=10)
    x, xi = npy(a), npy(i)
    lazy = [
        np.quantile(x, 0.25), np.quantile(x, q=0.9, axis=0), np.quantile(x, np.float64(0.5)),
        np.sort(x, axis=0), np.cumsum(xi, axis=0), np.sort(npy(a[:, 0])),
        np.cumsum(npy(i[:, 0])), np.where(x > 0, x, 0), np.where(x > 0, 1.0, x),
        np.where(xi > 0, xi, xi * 2), np.clip(x, -1, 1), np.clip(xi, 0, 5),
        np.clip(x, None, 0.5), np.clip(x, a_min=-0.5, a_max=None),
    ]
    want = [
        np.quantile(a, 0.25), np.quantile(a, q=0.9, axis=0), np.quantile(a, 0.5),
        np.sort(a, axis=0), np.cumsum(i, axis=0), np.sort(a[:, 0]),
        np.cumsum(i[:, 0]), np.where(a > 0, a, 0), np.where(a > 0, 1.0, a),
        np.where(i > 0, i, i * 2), np.clip(a, -1, 1), np.clip(i, 0, 5),
        np.clip(a, None, 0.5), np.clip(a, a_min=-0.5, a_max=None),
    ]
    assert all(isinstance(r, oc.Array) for r in lazy)
    for k, (g, w) in enumerate(zip(oc.compute(*lazy), want)):
        try:
            assert_same(g, w, str(w.dtype))
        except AssertionError as e:
            raise AssertionError(f"case {k}: {e}") from None


def _refused(call, name):
    with pytest.raises(TypeError) as info:
        call()
    msg = str(info.value)
    assert f"numpy.{name}" in msg and "not implemented by outcore" in msg, msg


def test_unsupported_functions_and_arguments(npy):
    a = sample("float64", (6, 3))
    x = npy(a)
    _refused(lambda: np.sum(x, axis=0, keepdims=True), "sum")
    _refused(lambda: np.mean(x, out=np.empty(3)), "mean")
    _refused(lambda: np.sum(x, dtype=np.float32), "sum")
    _refused(lambda: np.sum(x, where=a > 0), "sum")
    _refused(lambda: np.std(x, axis=(0, 1)), "std")
    _refused(lambda: np.median(x, axis=(0, 1)), "median")
    _refused(lambda: np.sort(x), "sort")  # NumPy's default axis=-1 of a 2-d array
    _refused(lambda: np.cumsum(x), "cumsum")  # flattening
    _refused(lambda: np.quantile(x, [0.1, 0.9]), "quantile")
    _refused(lambda: np.quantile(x, 0.5, method="nearest"), "quantile")
    _refused(lambda: np.where(x > 0), "where")
    _refused(lambda: np.dot(x, x), "dot")
    _refused(lambda: np.concatenate([x, x]), "concatenate")
    _refused(lambda: np.reshape(x, -1), "reshape")
    _refused(lambda: np.sin(x), "sin")
    _refused(lambda: np.add.reduce(x), "add.reduce")
    _refused(lambda: np.add(x, 1, out=np.empty((6, 3))), "add")
    _refused(lambda: np.maximum(x, "a"), "maximum")
    with pytest.raises(np.exceptions.AxisError):
        np.sum(x, axis=2)


def test_lazy_on_a_big_file(tmp_path):
    """Building, repr and explain of a 2 GiB (sparse) file read nothing."""
    p = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(p, mode="w+", dtype="float64", shape=(1 << 25, 8))
    del m
    x = oc.open(p)
    t = time.perf_counter()
    z = np.clip((x - np.mean(x, axis=0)) / np.std(x, axis=0), -3, 3)
    r = [np.sqrt(np.abs(z)), np.where(np.isnan(x), 0.0, x), np.median(x, axis=0),
         np.sort(x, axis=0)]
    text = repr(r[0]) + r[1]._repr_html_() + str(oc.explain(*r))
    assert time.perf_counter() - t < 2.0
    assert all(isinstance(v, oc.Array) for v in [z, *r])
    assert "sqrt" in text and "big.npy" in text
