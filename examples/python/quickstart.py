"""outcore quick start: column statistics and a standardized copy of a
`.npy` file, under a memory budget, with NumPy's own functions.

    python examples/python/quickstart.py            # 64 MiB of data
    python examples/python/quickstart.py 1024       # 1 GiB

The NumPy code it replaces (which needs the whole array, and more, in
memory)::

    x = np.load("x.npy")                            # MemoryError when x > RAM
    mean, std = x.mean(axis=0), x.std(axis=0)
    np.save("z.npy", ((x - mean) / std).astype(np.float32))
    med = np.median(x, axis=0)
    clipped_frac = np.count_nonzero(np.abs((x - mean) / std) > 3) / x.size
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

import outcore as oc


def make_data(path: str, mib: int) -> None:
    """Writes `mib` MiB of float64 in 8 columns, a chunk at a time."""
    rows = mib * (1 << 20) // (8 * 8)
    x = np.lib.format.open_memmap(path, mode="w+", dtype="float64", shape=(rows, 8))
    rng = np.random.default_rng(0)
    step = 1 << 18
    for i in range(0, rows, step):
        n = min(step, rows - i)
        x[i:i + n] = rng.standard_normal((n, 8)) * np.arange(1, 9) + np.arange(8)
    x.flush()
    del x


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "x.npy"), os.path.join(d, "z.npy")
        make_data(src, mib)

        with oc.config(memory_limit="32MiB"):
            x = oc.open(src)                            # reads only the header
            mean, std = np.mean(x, axis=0), np.std(x, axis=0)   # lazy
            z = (x - mean) / std
            print(repr(z))                              # the plan, nothing run

            t = time.perf_counter()
            m, s, med, outliers = oc.compute(           # as few passes as possible
                mean, std, x.median(axis=0), (abs(z) > 3).count_nonzero()
            )
            print(f"stats in {time.perf_counter() - t:.2f} s")
            print("mean  ", np.round(m, 3))
            print("std   ", np.round(s, 3))
            print("median", np.round(med, 3))
            print(f"|z| > 3: {outliers / x.size:.4%} of the values")

            t = time.perf_counter()
            oc.save(dst, z, dtype="float32")            # atomic, streamed
            print(f"standardized to {dst} in {time.perf_counter() - t:.2f} s")
            print(oc.open(dst))


if __name__ == "__main__":
    main()
