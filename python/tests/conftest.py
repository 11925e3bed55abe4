"""Shared fixtures: small `.npy` files written by `np.save` in a tmp dir."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import outcore as oc

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
FLOATS = ["float16", "float32", "float64"]
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _engine():
    """Every test runs in a small engine of its own."""
    with oc.config(memory_limit="64MiB", threads=2):
        yield


@pytest.fixture
def npy(tmp_path: Path) -> Callable[[np.ndarray], oc.Array]:
    """Saves an array with `np.save` and opens it with `oc.open`."""

    def make(a: np.ndarray) -> oc.Array:
        path = tmp_path / f"a{next(_counter)}.npy"
        np.save(path, a)
        return oc.open(path)

    return make


def sample(dtype: str, shape: tuple, seed: int = 0, special: bool = False) -> np.ndarray:
    """Values of `dtype` that exercise it: small ints, signs, NaN/inf for floats."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        a = (rng.standard_normal(shape) * 10).astype(dtype)
        if special and a.size >= 4:
            flat = a.reshape(-1)
            flat[0] = np.nan
            flat[-1] = np.inf
            flat[a.size // 2] = -np.inf
        return a
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -100), min(int(info.max), 100)
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def assert_same(got: np.ndarray, want, dtype: str) -> None:
    """Same dtype, shape and values (NaN where NumPy has NaN)."""
    want = np.asarray(want)
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind == "f":
        # float16: NumPy accumulates in float32, outcore in float64.
        rtol = {"float16": 2e-3, "float32": 1e-5}.get(str(want.dtype), 1e-10)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)
