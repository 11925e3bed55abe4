"""Exceptions: classes (outcore's and NumPy's built-in ones), never a crash."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import outcore as oc

from conftest import sample


def test_hierarchy():
    assert issubclass(oc.MemoryLimitError, oc.OutcoreError)
    assert issubclass(oc.MemoryLimitError, MemoryError)
    assert issubclass(oc.FormatError, ValueError)
    assert issubclass(oc.IntegerOverflowError, OverflowError)
    assert issubclass(oc.ShapeError, ValueError)
    assert issubclass(oc.InvalidOperationError, TypeError)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a numpy file at all", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'",
     b"\x93NUMPY\x01\x00\x46\x00{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }" + b" " * 10],
)
def test_bad_file_is_format_error(tmp_path, content):
    p = tmp_path / "bad.npy"
    p.write_bytes(content)
    with pytest.raises(oc.FormatError) as info:
        oc.open(p)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, oc.OutcoreError)


def test_truncated_file(tmp_path):
    p = tmp_path / "t.npy"
    np.save(p, np.zeros(100))
    p.write_bytes(p.read_bytes()[:-80])
    with pytest.raises(oc.OutcoreError):
        oc.open(p).sum().compute()


def test_missing_file(tmp_path):
    with pytest.raises(OSError) as info:
        oc.open(tmp_path / "nope.npy")
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, oc.OutcoreError)


def test_memory_limit_too_small(npy):
    x = npy(sample("float64", (1000, 50)))
    with oc.config(memory_limit="1KiB"):
        with pytest.raises(oc.MemoryLimitError) as info:
            oc.compute(x.mean(axis=0))
    assert isinstance(info.value, MemoryError)
    assert "smallest limit" in str(info.value)


def test_bad_memory_limit_text():
    with pytest.raises(ValueError):
        oc.config(memory_limit="lots")


def test_bool_ptp_is_type_error(npy):
    x = npy(np.array([True, False]))
    with pytest.raises(TypeError):
        np.ptp(np.array([True, False]))
    with pytest.raises(TypeError):
        x.ptp().compute()


def test_bool_subtract(npy):
    x = npy(np.array([True, False]))
    with pytest.raises(TypeError):
        (x - x).compute()


def test_shape_mismatch(npy):
    x, y = npy(np.zeros((3, 2))), npy(np.zeros((4, 2)))
    with pytest.raises(ValueError):
        (x + y).compute()


def test_integer_overflow(npy):
    x = npy(np.full(4, np.iinfo(np.int64).max, dtype=np.int64))
    with pytest.raises(OverflowError):
        x.sum().compute()
    with pytest.raises(OverflowError):
        x + 2**70


def test_empty_min_is_value_error(npy):
    x = npy(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        np.min(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        x.min().compute()


def test_unsupported_operand(npy):
    x = npy(np.zeros(3))
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError):
        oc.compute(np.zeros(3))


def test_bad_quantile_and_ddof(npy):
    x = npy(np.zeros(3))
    with pytest.raises(ValueError):
        x.quantile(1.5)
    with pytest.raises(ValueError):
        x.var(ddof=-1)


def test_open_raw_bad_spec(tmp_path):
    p = tmp_path / "r.raw"
    p.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError):
        oc.open_raw(p, "float64", (4,))
    with pytest.raises(ValueError):
        oc.open_raw(p, "float64", (1,), order="X")
    with pytest.raises((ValueError, TypeError)):
        oc.open_raw(p, "complex128", (1,))
