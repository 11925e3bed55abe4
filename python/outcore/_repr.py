"""``repr()`` and ``_repr_html_()`` of ``outcore.Array``: shape, dtype,
sizes, the pending operations and what computing the array would take,
from the current engine's plan — nothing is run.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Tuple

from ._outcore import Array

_MAX_EXPR = 400


def format_bytes(n: int) -> str:
    """Bytes as the engine writes them (``1.5 MiB``)."""
    x = float(n)
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if x < 1024 or unit == "TiB":
            return f"{int(x)} B" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover


def _shape(shape: Tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _expr(a: Array) -> str:
    text = a._expr
    return text if len(text) <= _MAX_EXPR else text[: _MAX_EXPR - 1] + "…"


def rows(a: Array) -> List[Tuple[str, str]]:
    """The facts shown, as (label, value) pairs."""
    from . import current_engine

    out = [
        ("shape", _shape(a.shape)),
        ("dtype", str(a.dtype)),
        ("in memory", format_bytes(a.nbytes) + " (computed)"),
        ("operations", _expr(a)),
    ]
    try:
        plan: Dict[str, Any] = current_engine().explain_dict(a)
    except Exception as e:  # an invalid expression or a limit too small
        out.append(("plan", f"{type(e).__name__}: {e}"))
        return out
    passes = plan["passes"]
    read = sum(p["bytes_read"] for p in passes)
    out.append(("reads", format_bytes(read) + " in passes"))
    steps = len(plan["steps"])
    n = len(passes)
    out.append(("passes", f"{n} pass{'es' if n != 1 else ''}"
                + (f" + {steps} operator step{'s' if steps != 1 else ''}" if steps else "")))
    if passes:
        biggest = max(passes, key=lambda p: p["block_bytes"])
        out.append(("blocks", f"{biggest['block_rows']} rows ({format_bytes(biggest['block_bytes'])})"
                    f" × up to {biggest['blocks_in_flight']} in flight"))
        peak = max(p["peak_bytes"] for p in passes)
        out.append(("peak memory", f"{format_bytes(peak)} estimated of "
                    f"{format_bytes(plan['memory_limit'])} limit"))
    for step in plan["steps"]:
        out.append(("step", step))
    out.append(("threads", str(plan["threads"])))
    return out


def text(a: Array) -> str:
    body = "\n".join(f"  {k:<12} {v}" for k, v in rows(a))
    return f"outcore.Array<shape={_shape(a.shape)}, dtype={a.dtype}>\n{body}"


def html_table(a: Array) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
        for k, v in rows(a)
    )
    return (
        "<table><thead><tr><th colspan='2' style='text-align:left'>outcore.Array"
        f"</th></tr></thead><tbody>{cells}</tbody></table>"
    )

