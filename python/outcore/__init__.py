"""outcore: compute over NumPy arrays larger than memory, under a memory budget.

>>> import outcore as oc
>>> x = oc.open("x.npy")                       # lazy: reads only the header
>>> mean, std = oc.compute(x.mean(axis=0), x.std(axis=0))   # one pass
>>> oc.save("z.npy", (x - x.mean(axis=0)) / x.std(axis=0), dtype="float32")

Every run happens in the current engine: the innermost ``with oc.config(...)``
or the module's default one (memory limit: half the available memory).
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _errors
from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all
from ._outcore import Array, Engine
from ._linalg import PCAResult, corrcoef, cov, dot, gram, pca, t_dot  # noqa: F401

__all__ = [
    "Array",
    "Engine",
    "Explain",
    "open",
    "open_raw",
    "compute",
    "save",
    "explain",
    "config",
    "current_engine",
    *_errors_all,
]

__version__ = "0.1.0"

_PathLike = Union[str, "os.PathLike[str]"]

_local = threading.local()
_default: Optional[Engine] = None
_default_lock = threading.Lock()


def _stack() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current_engine() -> Engine:
    """The engine runs use: the innermost ``oc.config`` block's, else the default."""
    global _default
    stack = _stack()
    if stack:
        return stack[-1]
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default


class config:
    """Engine settings.

    As a context manager, the settings apply inside the block (per thread)::

        with oc.config(memory_limit="256MiB", threads=2):
            oc.compute(x.sum())

    Called without ``with``, they become the module's default engine.

    ``memory_limit``: bytes or text such as ``"256MiB"`` (default: half of
    the available memory); ``threads``: worker threads (default: one per
    core); ``spill_dir``: where spill files go (default: the temp directory).
    """

    def __init__(
        self,
        memory_limit: Union[int, str, None] = "256MiB",
        threads: Optional[int] = None,
        spill_dir: Optional[_PathLike] = None,
    ) -> None:
        global _default
        self.engine = Engine(
            memory_limit=memory_limit,
            threads=threads,
            spill_dir=None if spill_dir is None else os.fspath(spill_dir),
        )
        self._entered = False
        with _default_lock:
            self._previous = _default
            _default = self.engine

    def __enter__(self) -> Engine:
        global _default
        # Inside `with`, the settings are the block's, not the default's.
        with _default_lock:
            if _default is self.engine:
                _default = self._previous
        _stack().append(self.engine)
        return self.engine

    def __exit__(self, *exc: Any) -> None:
        stack = _stack()
        if stack and stack[-1] is self.engine:
            stack.pop()


def open(path: _PathLike) -> Array:  # noqa: A001 - the name is NumPy-like API
    """Opens a ``.npy`` file as a lazy :class:`Array` (reads only the header)."""
    return current_engine().open(os.fspath(path))


def open_raw(
    path: _PathLike,
    dtype: Any,
    shape: Union[int, Tuple[int, ...]],
    offset: int = 0,
    order: str = "C",
) -> Array:
    """Opens a raw binary file as ``np.memmap(path, dtype, offset=, shape=)`` would."""
    return current_engine().open_raw(os.fspath(path), dtype, shape, offset, order)


def compute(*arrays: Array) -> Tuple[np.ndarray, ...]:
    """Computes the arrays together (as few passes as the engine plans)."""
    return current_engine().compute(*arrays)


def save(
    path: _PathLike,
    array: Array,
    *,
    dtype: Any = None,
    overwrite: bool = False,
) -> None:
    """Writes ``array`` (cast to ``dtype`` if given) to a ``.npy`` file, atomically."""
    current_engine().save(os.fspath(path), array, dtype, overwrite)


class Explain:
    """The plan of a computation; ``str()`` shows it, ``to_dict()`` its data."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> Dict[str, Any]:
        """``text``, ``memory_limit``, ``threads``, ``steps`` and ``passes``
        (each: inputs, reductions, outputs, rows, block_rows, block_bytes,
        blocks_in_flight, bytes_read, bytes_written, peak_bytes, ...)."""
        return copy.deepcopy(self._data)

    def __str__(self) -> str:
        return str(self._data["text"])

    def __repr__(self) -> str:
        return str(self._data["text"])


def explain(*arrays: Array) -> Explain:
    """The plan of computing the arrays together, without running it."""
    return Explain(current_engine().explain_dict(*arrays))


del _errors
