"""How a NumPy array combines with an ``outcore.Array``, by NumPy's
broadcasting rules, without copying anything of the array's size:

- the same shape: read in place (``"memory"``);
- one value per element of a row, e.g. ``(c,)`` or ``(1, c)`` against
  ``(n, c)``: ``"row"`` (the small array, broadcast to the row's shape);
- one value per row, ``(n, 1)`` against ``(n, c)``: ``"column"``;
- a single element: ``"row"`` of shape ``()``, a scalar of its dtype.

A shape NumPy would refuse raises NumPy's ``ValueError``; a broadcast
that would make the result larger than the outcore array, or that would
need a full-size copy, raises ``TypeError``.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np


def _native(a: np.ndarray) -> np.ndarray:
    if a.dtype.byteorder not in "=|":
        a = a.astype(a.dtype.newbyteorder("="))
    # (np.ascontiguousarray would make a 0-d array 1-d.)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def classify(shape: Tuple[int, ...], b: Any) -> Tuple[str, np.ndarray]:
    """(kind, array) for NumPy array ``b`` against an outcore array of ``shape``."""
    shape = tuple(int(d) for d in shape)
    b = np.asarray(b)
    if b.ndim == 0:
        return "row", _native(b)
    d = len(shape)
    padded = (1,) * max(d - b.ndim, 0) + b.shape
    fits = b.ndim <= d and all(t in (1, s) or s == 1 for s, t in zip(shape, padded))
    if not fits:
        raise ValueError(
            "operands could not be broadcast together with shapes "
            f"{shape} {b.shape}"
        )
    if any(s == 1 and t != 1 for s, t in zip(shape, padded)):
        raise TypeError(
            f"a NumPy array of shape {b.shape} would broadcast the outcore array of shape "
            f"{shape} to a larger one; outcore does not grow arrays by broadcasting"
        )
    if padded == shape:
        b = b.reshape(shape)  # a view: leading ones added
        if b.flags.c_contiguous or b.flags.f_contiguous:
            return "memory", b
        return "memory", np.ascontiguousarray(b)
    if padded[0] == 1:
        row = np.broadcast_to(b.reshape(padded[1:]), shape[1:])
        return "row", _native(row)
    if all(t == 1 for t in padded[1:]):
        return "column", _native(b.reshape(-1))
    raise TypeError(
        f"a NumPy array of shape {b.shape} broadcasts over both the rows and the columns "
        f"of the outcore array of shape {shape}; pass one of shape {shape} instead"
    )
