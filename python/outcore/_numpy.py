"""NumPy's protocols on ``outcore.Array``: ufuncs (NEP 13) and functions
(NEP 18) the engine has return lazy arrays; anything else raises
``TypeError`` — an outcore array is never loaded whole behind the user's
back (``np.asarray(x)`` is the explicit way).
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ._outcore import Array

UNARY_UFUNCS = frozenset(
    ["negative", "positive", "absolute", "sqrt", "exp", "log", "log1p", "isnan", "logical_not"]
)
BINARY_UFUNCS = frozenset(
    [
        "add", "subtract", "multiply", "divide", "true_divide", "power",
        "maximum", "minimum", "equal", "not_equal", "less", "less_equal",
        "greater", "greater_equal", "logical_and", "logical_or",
    ]
)

_NV = np._NoValue  # NumPy's "argument not given" marker


def _refuse(name: str, what: Optional[str] = None) -> TypeError:
    detail = f" with {what}" if what else ""
    return TypeError(
        f"numpy.{name}{detail} is not implemented by outcore for outcore.Array "
        "(it would load the whole array; use np.asarray(x) to load it explicitly)"
    )


def _scalar(v: Any) -> Any:
    """A 0-d NumPy array as its scalar; anything else unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v[()]
    return v


# ---- NEP 13 ---------------------------------------------------------------


def array_ufunc(
    ufunc: Any, method: str, inputs: Tuple[Any, ...], kwargs: Optional[Dict[str, Any]]
) -> Any:
    name = getattr(ufunc, "__name__", str(ufunc))
    if method != "__call__":
        raise _refuse(f"{name}.{method}")
    if kwargs:
        raise _refuse(name, ", ".join(f"{k}=" for k in kwargs))
    inputs = tuple(_scalar(v) for v in inputs)
    if name in UNARY_UFUNCS and len(inputs) == 1:
        return inputs[0]._unary(name)
    if name in BINARY_UFUNCS and len(inputs) == 2:
        out = Array._binary(name, inputs[0], inputs[1])
        if out is None:
            types = ", ".join(type(v).__name__ for v in inputs)
            raise _refuse(name, f"operands of types ({types})")
        return out
    raise _refuse(name)


# ---- NEP 18 ---------------------------------------------------------------


def _axis(
    name: str, a: Array, axis: Any, allowed: Tuple[Optional[int], ...] = (None, 0, 1)
) -> Optional[int]:
    """The axis normalized; ``TypeError`` for one the engine lacks."""
    if axis is None:
        if None in allowed:
            return None
        raise _refuse(name, "axis=None")
    if isinstance(axis, tuple):
        raise _refuse(name, f"axis={axis!r}")
    ax = operator.index(axis)
    if ax < 0:
        ax += a.ndim
    if not 0 <= ax < a.ndim:
        np_exc = getattr(np, "exceptions", np)
        raise np_exc.AxisError(axis, a.ndim)
    if ax not in allowed or (ax == 1 and a.ndim != 2):
        raise _refuse(name, f"axis={axis}")
    return ax


def _no(name: str, **given: Any) -> None:
    """Refuses arguments given other than their defaults."""
    defaults = {"out": None, "keepdims": False, "dtype": None, "overwrite_input": False,
                "method": "linear", "kind": None, "order": None, "stable": None,
                "weights": None, "interpolation": None, "mean": _NV, "correction": _NV}
    for k, v in given.items():
        if v is _NV or v is defaults.get(k, _NV):
            continue
        if k == "keepdims" and v is False:
            continue
        if k == "method" and v == "linear":
            continue
        raise _refuse(name, f"{k}={v!r}")


def _require_array(name: str, a: Any) -> Array:
    if not isinstance(a, Array):
        raise _refuse(name, f"a {type(a).__name__} as its array (only outcore arrays)")
    return a


def _reduction(name: str, method: str, with_dtype: bool, with_initial: bool) -> Callable[..., Any]:
    def f(a, axis=None, *args, **kw):  # type: ignore[no-untyped-def]
        if args:
            raise _refuse(name, "positional arguments after axis")
        allowed = {"out", "keepdims", "where"}
        if with_dtype:
            allowed.add("dtype")
        if with_initial:
            allowed.add("initial")
        extra = set(kw) - allowed
        if extra:
            raise _refuse(name, ", ".join(f"{k}=" for k in sorted(extra)))
        _no(name, **kw)
        x = _require_array(name, a)
        return getattr(x, method)(axis=_axis(name, x, axis))

    return f


def _variance(name: str) -> Callable[..., Any]:
    def f(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV,  # type: ignore[no-untyped-def]
          mean=_NV, correction=_NV):
        _no(name, dtype=dtype, out=out, keepdims=keepdims, where=where, mean=mean,
            correction=correction)
        x = _require_array(name, a)
        return getattr(x, name)(axis=_axis(name, x, axis), ddof=operator.index(ddof))

    return f


def _median(name: str) -> Callable[..., Any]:
    def f(a, axis=None, out=None, overwrite_input=False, keepdims=False):  # type: ignore[no-untyped-def]
        _no(name, out=out, overwrite_input=overwrite_input, keepdims=keepdims)
        x = _require_array(name, a)
        return getattr(x, name)(axis=_axis(name, x, axis))

    return f


def _quantile(name: str) -> Callable[..., Any]:
    def f(a, q, axis=None, out=None, overwrite_input=False, method="linear",  # type: ignore[no-untyped-def]
          keepdims=False, *, weights=None, interpolation=None):
        _no(name, out=out, overwrite_input=overwrite_input, method=method,
            keepdims=keepdims, weights=weights, interpolation=interpolation)
        x = _require_array(name, a)
        q = _scalar(np.asarray(q)) if not isinstance(q, (int, float)) else q
        if isinstance(q, np.ndarray):
            raise _refuse(name, "an array of q (one q at a time)")
        return getattr(x, name)(float(q), axis=_axis(name, x, axis))

    return f


def _sort(a, axis=-1, kind=None, order=None, *, stable=None):  # type: ignore[no-untyped-def]
    _no("sort", kind=kind, order=order, stable=stable)
    x = _require_array("sort", a)
    return x.sort(axis=_axis("sort", x, axis, (0,)))


def _cumsum(a, axis=None, dtype=None, out=None):  # type: ignore[no-untyped-def]
    _no("cumsum", dtype=dtype, out=out)
    x = _require_array("cumsum", a)
    if axis is None and x.ndim == 1:
        axis = 0
    return x.cumsum(axis=_axis("cumsum", x, axis, (0,)))


def _count_nonzero(a, axis=None, *, keepdims=False):  # type: ignore[no-untyped-def]
    _no("count_nonzero", keepdims=keepdims)
    x = _require_array("count_nonzero", a)
    return x.count_nonzero(axis=_axis("count_nonzero", x, axis))


def _ptp(a, axis=None, out=None, keepdims=_NV):  # type: ignore[no-untyped-def]
    _no("ptp", out=out, keepdims=keepdims)
    x = _require_array("ptp", a)
    return x.ptp(axis=_axis("ptp", x, axis))


def _where(condition, x=_NV, y=_NV):  # type: ignore[no-untyped-def]
    if x is _NV or y is _NV:
        raise _refuse("where", "one argument (np.nonzero)")
    ops = [_scalar(v) for v in (condition, x, y)]
    out = Array._where(*ops)
    if out is None:
        raise _refuse("where", "operands of types "
                      f"({', '.join(type(v).__name__ for v in ops)})")
    return out


def _clip(a, a_min=_NV, a_max=_NV, out=None, *, min=_NV, max=_NV, **kwargs):  # type: ignore[no-untyped-def]  # noqa: A002
    if kwargs:
        raise _refuse("clip", ", ".join(f"{k}=" for k in kwargs))
    _no("clip", out=out)
    x = _require_array("clip", a)
    lo = min if a_min is _NV else a_min
    hi = max if a_max is _NV else a_max
    lo, hi = (None if v is _NV else _scalar(v) for v in (lo, hi))
    # NumPy's result dtype: Python scalars are weak, everything else strong.
    dtype = np.result_type(*(v.dtype if isinstance(v, Array) else v
                             for v in (x, lo, hi) if v is not None))
    res = x._clip(lo, hi, dtype)
    if res is None:
        raise _refuse("clip", "bounds that are neither scalars nor outcore arrays")
    return res


FUNCTIONS: Dict[Any, Callable[..., Any]] = {}


def _register() -> None:
    for name, method in [("sum", "sum"), ("nansum", "nansum"), ("mean", "mean"),
                         ("nanmean", "nanmean")]:
        FUNCTIONS[getattr(np, name)] = _reduction(name, method, True, name.endswith("sum"))
    for name, method in [("min", "min"), ("amin", "min"), ("max", "max"), ("amax", "max"),
                         ("nanmin", "nanmin"), ("nanmax", "nanmax")]:
        if hasattr(np, name):
            FUNCTIONS[getattr(np, name)] = _reduction(name, method, False, True)
    for name in ["argmin", "argmax", "any", "all"]:
        FUNCTIONS[getattr(np, name)] = _reduction(name, name, False, False)
    for name in ["std", "var", "nanstd", "nanvar"]:
        FUNCTIONS[getattr(np, name)] = _variance(name)
    FUNCTIONS[np.median] = _median("median")
    FUNCTIONS[np.nanmedian] = _median("nanmedian")
    FUNCTIONS[np.quantile] = _quantile("quantile")
    FUNCTIONS[np.nanquantile] = _quantile("nanquantile")
    FUNCTIONS[np.sort] = _sort
    FUNCTIONS[np.cumsum] = _cumsum
    FUNCTIONS[np.count_nonzero] = _count_nonzero
    FUNCTIONS[np.ptp] = _ptp
    FUNCTIONS[np.where] = _where
    FUNCTIONS[np.clip] = _clip


_register()


def array_function(
    func: Any, types: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]
) -> Any:
    if not all(issubclass(t, (Array, np.ndarray)) for t in types):
        return NotImplemented
    handler = FUNCTIONS.get(func)
    if handler is None:
        raise _refuse(getattr(func, "__name__", str(func)))
    return handler(*args, **kwargs)
