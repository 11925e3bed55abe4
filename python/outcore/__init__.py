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
import mmap
import os
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from . import _errors
from ._errors import *  # noqa: F403
from ._errors import __all__ as _errors_all
from ._outcore import Array, Engine, _memory_array
from ._linalg import PCAResult, corrcoef, cov, dot, gram, pca, t_dot

__all__ = [
    "Array",
    "Engine",
    "Explain",
    "Report",
    "last_report",
    "open",
    "open_raw",
    "asarray",
    "compute",
    "save",
    "explain",
    "config",
    "current_engine",
    "cov",
    "corrcoef",
    "gram",
    "t_dot",
    "dot",
    "pca",
    "PCAResult",
    *_errors_all,
]

__version__ = "0.1.0"

_PathLike = Union[str, "os.PathLike[str]"]

_local = threading.local()
_default: Optional[Engine] = None
_default_lock = threading.Lock()


def _stack() -> List[Engine]:
    stack: Optional[List[Engine]] = getattr(_local, "stack", None)
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
    core); ``spill_dir``: where spill files go (default: the temp
    directory); ``progress``: a progress bar on ``sys.stderr`` during runs
    longer than half a second (default: only when ``sys.stderr`` is a
    terminal, so never in pipes or tests; ``True`` in a notebook).
    """

    def __init__(
        self,
        memory_limit: Union[int, str, None] = "256MiB",
        threads: Optional[int] = None,
        spill_dir: Optional[_PathLike] = None,
        progress: Optional[bool] = None,
    ) -> None:
        global _default
        self.engine = Engine(
            memory_limit=memory_limit,
            threads=threads,
            spill_dir=None if spill_dir is None else os.fspath(spill_dir),
            progress=progress,
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


def _memmap_of(a: Any) -> Optional[np.memmap]:
    """The ``np.memmap`` whose mapping ``a`` views, if any."""
    obj = a
    while isinstance(obj, np.ndarray):
        if isinstance(obj, np.memmap) and getattr(obj, "_mmap", None) is not None:
            return obj
        obj = obj.base
    return None


def asarray(a: Any) -> Array:
    """``a`` as a lazy :class:`Array`, without copying or reading it.

    - an :class:`Array` is returned as is;
    - an ``np.memmap`` (also ``np.load(path, mmap_mode="r")``, or a
      contiguous slice of one) is reopened from its file — filename, offset,
      dtype, shape and order — so its pages are never touched and the run
      stays within the budget (a copy-on-write ``mode="c"`` map is read in
      memory instead, since its changes are not in the file);
    - an in-memory ``np.ndarray`` is read in place, zero-copy, so the same
      code runs on arrays that fit (a non-contiguous view is copied once,
      ``np.ascontiguousarray``); anything else goes through ``np.asarray``.

    The array must not be modified while a run reads it.
    """
    if isinstance(a, Array):
        return a
    mm = _memmap_of(a)
    if mm is not None and mm.mode != "c" and mm.filename is not None:
        if a.flags.c_contiguous:
            order = "C"
        elif a.flags.f_contiguous:
            order = "F"
        else:
            raise ValueError(
                f"a strided view of the memmap of {mm.filename} (shape {a.shape}, strides "
                f"{a.strides}) cannot be reopened from the file; pass the whole memmap or "
                "a contiguous slice of rows"
            )
        start = mm.offset - mm.offset % mmap.ALLOCATIONGRANULARITY
        base = np.frombuffer(mm._mmap, dtype=np.uint8).ctypes.data  # type: ignore[attr-defined]
        offset = start + (a.ctypes.data - base)
        return open_raw(mm.filename, a.dtype, a.shape, offset=offset, order=order)
    arr = np.asarray(a)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    return _memory_array(arr)


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


class Report:
    """What a run did and used (:func:`last_report`).

    ``seconds``, ``passes``, ``blocks``, ``bytes_read``, ``bytes_written``,
    ``bytes_spilled``, ``memory_limit``, ``peak_reserved`` (the most the
    engine held at once, all consumers), ``reserved_by_consumer`` (the
    most each held: reader, kernel, state, writer, spill, other),
    ``peak_rss`` and ``rss`` (the process's peak and current resident set
    after the run, in bytes; ``None`` where the OS does not tell).
    """

    seconds: float
    passes: int
    blocks: int
    bytes_read: int
    bytes_written: int
    bytes_spilled: int
    memory_limit: int
    peak_reserved: int
    peak_rss: Optional[int]
    rss: Optional[int]
    reserved_by_consumer: Dict[str, int]

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = dict(data)
        for k, v in data.items():
            setattr(self, k, v)

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a dict."""
        return copy.deepcopy(self._data)

    def __repr__(self) -> str:
        from ._repr import format_bytes as fb

        rss = "n/a" if self.peak_rss is None else fb(self.peak_rss)
        return (
            f"outcore.Report({self.seconds:.3f} s, {self.passes} pass"
            f"{'es' if self.passes != 1 else ''}, read {fb(self.bytes_read)}, "
            f"written {fb(self.bytes_written)}, spilled {fb(self.bytes_spilled)}, "
            f"peak reserved {fb(self.peak_reserved)} of {fb(self.memory_limit)} limit, "
            f"peak RSS {rss})"
        )


def last_report() -> Optional[Report]:
    """The :class:`Report` of the current engine's last finished run
    (``compute``, ``save``, ``np.asarray``), or ``None`` before the first."""
    data = current_engine().last_report()
    return None if data is None else Report(data)


def explain(*arrays: Array) -> Explain:
    """The plan of computing the arrays together, without running it."""
    return Explain(current_engine().explain_dict(*arrays))


del _errors
