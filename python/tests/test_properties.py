"""Hypothesis: random arrays, shapes and dtypes against NumPy."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import outcore as oc

from conftest import assert_same

_n = itertools.count()
SETTINGS = settings(max_examples=int(__import__("os").environ.get("OUTCORE_HYPOTHESIS_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.sampled_from(["int8", "int32", "uint16", "int64", "float32", "float64"])


def arrays(dtype):
    elements = None
    if dtype.startswith("float"):
        elements = st.one_of(
            st.floats(-1e6, 1e6, width=int(dtype[5:])),
            st.sampled_from([np.nan, np.inf, -np.inf]),
        )
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -1000), min(info.max, 1000))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=9),
                      elements=elements)


@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_stats_match_numpy(tmp_path, data, dtype):
    a = data.draw(arrays(dtype))
    p = tmp_path / f"h{next(_n)}.npy"
    np.save(p, a)
    x = oc.open(p)
    axis = data.draw(st.sampled_from([None, 0] + ([1] if a.ndim == 2 else [])))
    names = ["sum", "mean", "min", "max", "nanmean", "nanmax", "std", "argmax", "count_nonzero"]
    if axis != 1:
        names.append("median")
    got = oc.compute(*[getattr(x, n)(axis=axis) for n in names])
    for g, n in zip(got, names):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            want = getattr(np, n)(a, axis=axis)
        if dtype.startswith("float") and n in ("sum", "mean", "std"):
            # outcore's sums are exact (then rounded), NumPy's pairwise ones
            # are not: compare with NumPy over float64, where both are finite.
            want = np.asarray(want)
            assert g.dtype == want.dtype and g.shape == want.shape
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                exact = np.asarray(getattr(np, n)(a.astype(np.float64), axis=axis))
            fin = np.isfinite(exact) & np.isfinite(g)
            assert (np.isnan(g) == np.isnan(exact.astype(dtype))).all()
            scale = 1 + np.abs(a[np.isfinite(a)]).max(initial=0)
            np.testing.assert_allclose(g[fin], exact[fin], rtol=1e-5, atol=1e-6 * scale)
            continue
        assert_same(g, want, dtype)


@SETTINGS
@given(data=st.data())
def test_elementwise_match_numpy(tmp_path, data):
    a = data.draw(arrays("float64"))
    p = tmp_path / f"e{next(_n)}.npy"
    np.save(p, a)
    x = oc.open(p)
    c = data.draw(st.floats(-10, 10))
    with np.errstate(all="ignore"):
        want = [(a * c - a) / 3.0, a > c, abs(-a) + 1]
    got = oc.compute(x * c - x, x > c, abs(-x) + 1)
    got = (got[0] / 3.0, got[1], got[2])
    for g, w in zip(got, want):
        assert_same(np.asarray(g), w, str(w.dtype))
