"""``oc.asarray`` (memmaps reopened from their files, in-memory arrays read
in place) and NumPy arrays as operands, broadcast per column or per row
as NumPy broadcasts them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import outcore as oc
from conftest import DTYPES, assert_same, sample


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_asarray_of_an_ndarray_reads_it_in_place(dtype, order):
    a = np.asarray(sample(dtype, (7, 3, 2), seed=3), order=order)
    x = oc.asarray(a)
    assert x.shape == a.shape and x.dtype == a.dtype
    assert "<ndarray (7, 3, 2)" in x._expr
    assert_same(np.asarray(x), a, dtype)
    if dtype != "bool":
        assert_same(x.max(axis=0).compute(), a.max(axis=0), dtype)


def test_asarray_keeps_the_array_alive_and_reads_without_a_copy():
    a = np.arange(12.0).reshape(4, 3)
    x = oc.asarray(a)
    a[1, 1] = 100.0  # the same memory: a copy would not see it
    del a
    assert x.sum().compute() == np.arange(12.0).sum() - 4.0 + 100.0


def test_asarray_of_other_inputs():
    assert_same(np.asarray(oc.asarray([[1, 2], [3, 4]])), np.array([[1, 2], [3, 4]]), "int64")
    big_endian = np.arange(6, dtype=">i4").reshape(3, 2)
    assert_same(oc.asarray(big_endian).sum(axis=0).compute(), big_endian.sum(axis=0), "int64")
    strided = np.arange(20.0).reshape(5, 4)[:, ::2]
    assert_same(np.asarray(oc.asarray(strided)), strided, "float64")
    y = oc.asarray(np.arange(4.0))
    assert oc.asarray(y) is y
    with pytest.raises((TypeError, ValueError)):
        oc.asarray(np.array(["a", "b"]))


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_asarray_of_a_memmap_reopens_its_file(tmp_path, mode):
    path = tmp_path / "m.bin"
    base = np.memmap(path, dtype=np.float32, mode="w+", shape=(100, 3), offset=13)
    base[:] = np.arange(300, dtype=np.float32).reshape(100, 3)
    base.flush()
    del base
    m = np.memmap(path, dtype=np.float32, mode=mode, shape=(100, 3), offset=13)
    whole = oc.asarray(m)
    part = oc.asarray(m[10:20])
    if mode == "c":
        assert "<ndarray" in whole._expr  # changes live in memory only
    else:
        assert str(path) in whole._expr and str(path) in part._expr
    assert part.shape == (10, 3)
    assert_same(np.asarray(part), np.asarray(m[10:20]), "float32")
    assert_same(whole.sum(axis=0).compute(), np.asarray(m).sum(axis=0), "float32")


def test_asarray_of_np_load_mmap_mode(tmp_path):
    a = sample("int16", (50, 4), seed=1)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    for name in ["a.npy", "f.npy"]:
        m = np.load(tmp_path / name, mmap_mode="r")
        x = oc.asarray(m)
        assert str(tmp_path / name) in x._expr
        assert_same(x.sum(axis=0).compute(), a.sum(axis=0), "int64")
    m = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert_same(np.asarray(oc.asarray(m[5:9])), a[5:9], "int16")
    with pytest.raises(ValueError, match="strided view"):
        oc.asarray(m[:, ::2])


def test_open_raw_is_np_memmap(tmp_path):
    a = sample("float64", (6, 4), seed=2)
    path = tmp_path / "r.bin"
    path.write_bytes(b"\xff" * 5 + a.tobytes(order="F") + b"tail")
    x = oc.open_raw(path, "float64", (6, 4), offset=5, order="F")
    want = np.memmap(path, dtype="float64", mode="r", shape=(6, 4), offset=5, order="F")
    assert_same(np.asarray(x), np.asarray(want), "float64")
    big = tmp_path / "b.bin"
    big.write_bytes(a.astype(">f8").tobytes())
    # Results come in native byte order.
    assert_same(np.asarray(oc.open_raw(big, ">f8", (6, 4))), a, "float64")


def test_numpy_operands_broadcast_as_numpy(npy):
    a = sample("float32", (6, 4), seed=4)
    x = npy(a)
    col = np.arange(4, dtype=np.float64)
    row = np.arange(6, dtype=np.float32).reshape(6, 1)
    cases = [
        (x - col, a - col),
        (col - x, col - a),
        (x * row, a * row),
        (x / (col.reshape(1, 4) + 1), a / (col.reshape(1, 4) + 1)),
        (x + a, a + a),
        (np.maximum(x, col), np.maximum(a, col)),
        (np.where(x > 0, x, col), np.where(a > 0, a, col)),
        (np.clip(x, -col, col), np.clip(a, -col, col)),
        (x > np.ones(1), a > np.ones(1)),
        ((x - x.mean(axis=0)) / np.float32(2), (a - a.mean(axis=0)) / np.float32(2)),
    ]
    got = oc.compute(*(c[0] for c in cases))
    for g, (_, want) in zip(got, cases):
        assert g.dtype == want.dtype
        np.testing.assert_allclose(g, want, rtol=1e-6)


def test_numpy_operands_numpy_would_refuse(npy):
    x = npy(np.zeros((6, 4)))
    for bad in [np.ones(5), np.ones((6, 2)), np.ones((2, 6, 4))]:
        with pytest.raises(ValueError, match="could not be broadcast"):
            x + bad
    y = npy(np.zeros((6, 1)))
    with pytest.raises(TypeError, match="larger"):
        y + np.ones(4)
    z = npy(np.zeros((6, 3, 2)))
    with pytest.raises(TypeError, match="both the rows and the columns"):
        z + np.ones((6, 3, 1))
    assert_same((z + np.ones((3, 1))).sum().compute(), np.float64(36.0), "float64")


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 5),
    kind=st.sampled_from(["row", "row2", "column", "full", "scalar"]),
    dtype=st.sampled_from(["int32", "float32", "float64", "uint8"]),
    op=st.sampled_from(["add", "subtract", "multiply", "maximum", "less"]),
    block=st.sampled_from(["4KiB", "64KiB"]),
    seed=st.integers(0, 1000),
)
def test_broadcasting_matches_numpy(rows, cols, kind, dtype, op, block, seed):
    a = sample("float64", (rows, cols), seed=seed)
    shapes = {"row": (cols,), "row2": (1, cols), "column": (rows, 1), "full": (rows, cols),
              "scalar": ()}
    b = sample(dtype, shapes[kind], seed=seed + 1)
    x = oc.asarray(a)
    f = getattr(np, op)
    with oc.config(memory_limit="16MiB", threads=2):
        got = np.asarray(f(x, b).sum(axis=0)) if op != "less" else np.asarray(f(x, b))
    want = f(a, b).sum(axis=0) if op != "less" else f(a, b)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12)
