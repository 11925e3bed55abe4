"""The progress bar of long runs, drawn on ``sys.stderr`` (a terminal, or a
notebook's stderr when asked with ``oc.config(progress=True)``) while the
engine runs with the GIL released. Called by the extension every 50 ms
once a run has taken half a second."""

from __future__ import annotations

import sys
import time

from ._repr import format_bytes

_WIDTH = 30
_EVERY = 0.2  # seconds between redraws of the same step
_last_len = 0
_last_step = ""
_last_time = 0.0


def line(step: str, done: int, total: int, seconds: float) -> str:
    """One line: the step, a bar over the step's bytes (when known),
    the bytes and the rate."""
    rate = f"{format_bytes(int(done / seconds))}/s" if seconds > 0 and done else ""
    if total > 0:
        frac = min(done / total, 1.0)
        filled = int(frac * _WIDTH)
        bar = "█" * filled + "░" * (_WIDTH - filled)
        text = f"{step}  {bar} {format_bytes(done)}/{format_bytes(total)} {rate}"
    else:
        text = f"{step}  {seconds:.0f} s"
    return text.rstrip()


def draw(step: str, done: int, total: int, seconds: float) -> None:
    global _last_len, _last_step, _last_time
    now = time.monotonic()
    if step == _last_step and now - _last_time < _EVERY:
        return
    _last_step, _last_time = step, now
    text = line(step or "starting", done, total, seconds)
    pad = " " * max(_last_len - len(text), 0)
    _last_len = len(text)
    sys.stderr.write("\r" + text + pad)
    sys.stderr.flush()


def clear() -> None:
    global _last_len, _last_step
    sys.stderr.write("\r" + " " * _last_len + "\r")
    sys.stderr.flush()
    _last_len, _last_step = 0, ""
