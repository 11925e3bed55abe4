"""The scenario outcore exists for: an array NumPy cannot even allocate.

    >>> x = np.zeros((200_000, 10_000))
    MemoryError: Unable to allocate 14.9 GiB for an array with shape
    (200000, 10000) and data type float64

On disk, as a `.npy` file, the same array is no problem for outcore: column
means and standard deviations, a standardized float32 copy, and the column
medians, each within a 256 MiB budget. The NumPy code it replaces (which
needs the array, and a temporary of its size, in memory)::

    x = np.load("x.npy")
    mean, std = x.mean(axis=0), x.std(axis=0)
    np.save("z.npy", ((x - mean) / std).astype(np.float32))
    med = np.median(x, axis=0)

Run it small (the default, 2,000 × 10,000: 153 MiB), or as the scenario::

    python examples/python/memory_error.py                 # 153 MiB
    python examples/python/memory_error.py 200000 /big/dir # 14.9 GiB
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

import outcore as oc


def write_columns(path: str, rows: int, cols: int) -> None:
    """Writes a rows × cols float64 `.npy`, a slab of rows at a time (never
    the whole array in memory): column j has mean j and std 1 + j / cols."""
    x = np.lib.format.open_memmap(path, mode="w+", dtype="float64", shape=(rows, cols))
    rng = np.random.default_rng(0)
    scale = 1 + np.arange(cols) / cols
    step = max(1, (64 << 20) // (8 * cols))
    for i in range(0, rows, step):
        n = min(step, rows - i)
        x[i:i + n] = rng.standard_normal((n, cols)) * scale + np.arange(cols)
    x.flush()
    del x


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    where = sys.argv[2] if len(sys.argv) > 2 else None
    cols = 10_000
    with tempfile.TemporaryDirectory(dir=where) as d:
        src, dst = os.path.join(d, "x.npy"), os.path.join(d, "z.npy")
        write_columns(src, rows, cols)

        with oc.config(memory_limit="256MiB"):
            x = oc.open(src)
            print(f"x: {x.shape} {x.dtype}, {x.nbytes / 2**30:.2f} GiB on disk")

            t = time.perf_counter()
            mean, std = oc.compute(x.mean(axis=0), x.std(axis=0))   # one pass
            print(f"mean and std of {cols} columns in {time.perf_counter() - t:.2f} s:"
                  f" mean[:3] {np.round(mean[:3], 3)}, std[:3] {np.round(std[:3], 3)}")

            t = time.perf_counter()
            z = (x - x.mean(axis=0)) / x.std(axis=0)
            oc.save(dst, z, dtype="float32")                        # two passes
            print(f"standardized to float32 in {time.perf_counter() - t:.2f} s")

            t = time.perf_counter()
            (med,) = oc.compute(x.median(axis=0))                   # exact
            print(f"medians in {time.perf_counter() - t:.2f} s: med[:3] {np.round(med[:3], 3)}")

            report = oc.last_report()
            print(report)


if __name__ == "__main__":
    main()
