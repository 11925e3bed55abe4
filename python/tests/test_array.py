"""Attributes, operators, astype, compute, __array__, save, explain, config."""

from __future__ import annotations

import operator

import numpy as np
import pytest

import outcore as oc

from conftest import DTYPES, assert_same, sample


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
@pytest.mark.parametrize("dtype", ["bool", "int16", "float32"])
def test_attributes(npy, shape, dtype):
    a = sample(dtype, shape)
    x = npy(a)
    assert isinstance(x, oc.Array)
    assert x.shape == a.shape and isinstance(x.shape, tuple)
    assert x.dtype == a.dtype and isinstance(x.dtype, np.dtype)
    assert (x.ndim, x.size, x.nbytes, len(x)) == (a.ndim, a.size, a.nbytes, len(a))
    assert "Array" in repr(x)


def test_open_raw(tmp_path):
    a = np.arange(24, dtype="<i4").reshape(6, 4)
    p = tmp_path / "x.raw"
    p.write_bytes(b"\0" * 16 + a.tobytes())
    x = oc.open_raw(p, "int32", (6, 4), offset=16)
    assert x.shape == (6, 4) and x.dtype == np.int32
    np.testing.assert_array_equal(x.compute(), a)
    y = oc.open_raw(str(p), np.int32, 24, offset=16)
    np.testing.assert_array_equal(np.asarray(y), a.ravel())


ARITH = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow]
COMPARE = [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]


@pytest.mark.parametrize("op", ARITH + COMPARE)
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "float32", "float64"])
def test_binary_ops(npy, op, dtype):
    a = sample(dtype, (6, 3), seed=1)
    b = sample(dtype, (6, 3), seed=2)
    if op is operator.pow:
        a, b = np.abs(a) % 4, np.abs(b) % 3  # small, no negative int powers
        a, b = a.astype(dtype), b.astype(dtype)
    if op is operator.truediv and dtype != "float64" and dtype != "float32":
        b = np.where(b == 0, 1, b).astype(dtype)
    x, y = npy(a), npy(b)
    with np.errstate(all="ignore"):
        cases = [(op(x, y), op(a, b)), (op(x, 2), op(a, 2)), (op(3, x), op(3, a)),
                 (op(x, 1.5), op(a, 1.5)), (op(2.5, x), op(2.5, a))]
    if op is operator.pow:
        cases = cases[:2] + cases[3:4]  # int ** negative int and float bases
    got = oc.compute(*[c[0] for c in cases])
    for g, (_, w) in zip(got, cases):
        assert_same(g, w, dtype)


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "int64"])
def test_logical_ops(npy, dtype):
    a = sample(dtype, (5, 4), seed=3)
    b = sample(dtype, (5, 4), seed=4)
    x, y = npy(a), npy(b)
    if dtype == "bool":
        pairs = [(x & y, a & b), (x | y, a | b), (~x, ~a), (x & True, a & True),
                 (False | x, False | a)]
    else:
        pairs = [((x > 0) & (y < 0), (a > 0) & (b < 0)), ((x > 0) | (y < 0), (a > 0) | (b < 0)),
                 (~(x > 0), ~(a > 0))]
    got = oc.compute(*[p[0] for p in pairs])
    for g, (_, w) in zip(got, pairs):
        assert_same(g, w, str(np.asarray(w).dtype))


@pytest.mark.parametrize("dtype", ["int8", "int32", "float16", "float64"])
def test_unary(npy, dtype):
    a = sample(dtype, (7,), special=True)
    x = npy(a)
    assert_same((-x).compute(), -a, dtype)
    assert_same(abs(x).compute(), np.abs(a), dtype)
    assert_same((+x).compute(), a, dtype)


@pytest.mark.parametrize("src", DTYPES)
@pytest.mark.parametrize("dst", ["bool", "int32", "uint8", "float32", "float64"])
def test_astype(npy, src, dst):
    a = sample(src, (6,))
    if src.startswith("float") and dst.startswith(("int", "uint")):
        # Out-of-range float to int casts are undefined in NumPy (C casts).
        a = np.abs(a) % 100
    x = npy(a)
    got = x.astype(dst)
    assert got.dtype == np.dtype(dst)
    with np.errstate(all="ignore"):
        assert_same(got.compute(), a.astype(dst), dst)


def test_expression_dtype_matches_numpy(npy):
    a = sample("float32", (4, 3))
    i = sample("int16", (4, 3))
    x, k = npy(a), npy(i)
    for lazy, want in [(x * 2.0, a * 2.0), (x + k, a + i), (k / 2, i / 2), (k * 2, i * 2),
                       ((x - x.mean(axis=0)) / x.std(axis=0), (a - a.mean(0)) / a.std(0))]:
        assert lazy.dtype == want.dtype
        assert_same(lazy.compute(), want, str(want.dtype))


def test_compute_and_array(npy):
    a = sample("float64", (5, 2))
    x = npy(a)
    s, m = oc.compute(x.sum(), x.mean(axis=0))
    assert isinstance(s, np.ndarray) and s.shape == ()
    np.testing.assert_allclose(s, a.sum())
    np.testing.assert_allclose(m, a.mean(axis=0))
    np.testing.assert_array_equal(np.asarray(x), a)
    np.testing.assert_array_equal(np.asarray(x, dtype="float32"), a.astype("float32"))
    assert isinstance(x.compute(), np.ndarray)
    assert oc.compute() == ()


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint64", "float16", "float32", "float64"])
def test_save_round_trip(npy, tmp_path, dtype):
    a = sample(dtype, (6, 3))
    x = npy(a)
    out = tmp_path / "out.npy"
    oc.save(out, x)
    b = np.load(out)
    assert b.dtype == a.dtype
    np.testing.assert_array_equal(b, a)
    oc.save(out, x * 2, dtype="float32", overwrite=True)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.load(out), (a * 2).astype("float32"))


def test_save_refuses_existing(npy, tmp_path):
    x = npy(np.zeros(3))
    out = tmp_path / "o.npy"
    oc.save(out, x)
    with pytest.raises(FileExistsError):
        oc.save(out, x)
    with pytest.raises(oc.OutcoreError):
        oc.save(out, x)


def test_explain(npy):
    x = npy(sample("float64", (10, 2)))
    plan = oc.explain((x - x.mean(axis=0)) / x.std(axis=0), x.median(axis=0))
    text = str(plan)
    assert "pass" in text and isinstance(plan, oc.Explain)


def test_config(npy, tmp_path):
    x = npy(sample("float64", (10, 2)))
    with oc.config(memory_limit=1 << 20, threads=1, spill_dir=tmp_path) as engine:
        assert engine.memory_limit == 1 << 20 and engine.threads == 1
        assert oc.current_engine() is engine
        assert oc.compute(x.sum())[0].shape == ()
    with oc.config(memory_limit="8MiB") as engine:
        assert engine.memory_limit == 8 << 20
