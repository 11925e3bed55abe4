"""The exceptions outcore raises, defined once (the Rust module raises these)."""

from __future__ import annotations

__all__ = [
    "OutcoreError",
    "MemoryLimitError",
    "FormatError",
    "TruncatedError",
    "OutcoreOSError",
    "OutputExistsError",
    "ShapeError",
    "AxisError",
    "InvalidOperationError",
    "EmptyReductionError",
    "IntegerOverflowError",
    "ConfigError",
    "CancelledError",
]


class OutcoreError(Exception):
    """Base class of every error outcore raises."""


class MemoryLimitError(OutcoreError, MemoryError):
    """The memory limit cannot hold the computation (the message names the
    smallest limit that works), or a result is too big for it (use ``oc.save``)."""


class FormatError(OutcoreError, ValueError):
    """A file is not a valid array of a supported dtype (bad header, dtype, size)."""


class TruncatedError(OutcoreError, OSError):
    """A file is shorter than its header says."""


class OutcoreOSError(OutcoreError, OSError):
    """Reading, writing or spilling failed (``errno`` as the OS gave it)."""


class OutputExistsError(OutcoreError, FileExistsError):
    """The output exists and ``overwrite=False``."""


class ShapeError(OutcoreError, ValueError):
    """Operands whose shapes cannot be combined."""


class AxisError(OutcoreError, ValueError, IndexError):
    """An axis out of range (as ``numpy.exceptions.AxisError``)."""


class InvalidOperationError(OutcoreError, TypeError, ValueError):
    """An operation not defined for the dtype (NumPy raises ``TypeError``
    for most, e.g. bool subtraction) or for the arguments."""


class EmptyReductionError(OutcoreError, ValueError):
    """min/max/argmin/argmax of an empty array or axis."""


class IntegerOverflowError(OutcoreError, OverflowError):
    """An exact integer result does not fit its dtype."""


class ConfigError(OutcoreError, ValueError):
    """A bad setting or argument (memory limit text, ddof, q, order)."""


class CancelledError(OutcoreError):
    """The run was cancelled."""
