"""outcore side by side with NumPy and Dask, on the same file, in one run.

Run through ``run.sh`` (it makes the venv and builds outcore). Every
implementation runs each task in its own process, so peak RSS is that
process's own: its ``VmHWM`` (``/proc/self/status``) when the task ends,
which counts touched file-mapped pages, as the OOM killer does; outcore
reports the same figure as ``peak_rss_bytes``. (A child's ``ru_maxrss``
from ``wait4`` would not do: Linux carries the parent's RSS at ``fork``
into it.) Seconds are measured inside the process
around the task alone (no interpreter start-up or imports; outcore's are its
JSON ``seconds``). The median of ``--runs`` runs (default 3; 1 for median
and sort) is reported; RSS is the largest. The input is read once before the first run so that every run
finds it in the page cache. No output is fsync'd except outcore's
"fsync" rows (its default), shown beside the others.

Implementations:

numpy
    ``np.load(path, mmap_mode="r")`` and the whole-array call
    (``x.sum(axis=0)``, ``np.median(x, axis=0)``, ``np.save(out, ...)``).
chunked
    The loop users are told to write: 64 MiB row blocks of the memmap,
    outputs written into ``np.lib.format.open_memmap``. Median and sort need
    whole columns, so they go by column groups of ``--memory-limit`` bytes
    (copied out of the memmap, then ``np.median`` / ``np.sort``).
dask
    ``dask.array`` built from one memmap slice per 128 MiB block
    (``da.from_delayed``; ``da.from_array`` on a memmap copies the whole
    file since Dask 2024.12), threaded scheduler with one worker per core,
    outputs stored into ``open_memmap`` with ``da.store``. Dask has no
    sort along an axis: that cell is n/a.
outcore
    The ``outcore`` CLI at ``--memory-limit``, outputs with ``--no-fsync``
    (and the default, fsync'd, as "outcore fsync").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = ["colsum", "colstats", "standardize", "cast", "median", "sort"]
IMPLS = ["numpy", "chunked", "dask", "outcore"]
COLS = 256
MIB = 1 << 20


def parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MIB, "mib": MIB,
             "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}
    t = text.strip().lower()
    i = len(t)
    while i and not t[i - 1].isdigit() and t[i - 1] != ".":
        i -= 1
    return int(float(t[:i]) * units[t[i:].strip()])


def fmt_bytes(n: float) -> str:
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


# --------------------------------------------------------------------------
# Workers: one task of one Python implementation, in its own process.
# --------------------------------------------------------------------------

def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(impl: str, task: str, path: str, out: str, limit: int) -> float:
    import numpy as np

    x = np.load(path, mmap_mode="r")
    rows, cols = x.shape
    t = time.perf_counter()
    if impl == "numpy":
        numpy_task(np, x, task, out)
    elif impl == "chunked":
        chunked_task(np, x, task, out, limit)
    elif impl == "dask":
        dask_task(np, path, rows, cols, task, out)
    else:
        raise SystemExit(f"unknown implementation {impl}")
    return time.perf_counter() - t


def numpy_task(np, x, task: str, out: str) -> None:
    if task == "colsum":
        x.sum(axis=0)
    elif task == "colstats":
        x.mean(axis=0), x.std(axis=0)
    elif task == "standardize":
        np.save(out, (x - x.mean(axis=0)) / x.std(axis=0))
    elif task == "cast":
        np.save(out, x.astype(np.float32))
    elif task == "median":
        np.median(x, axis=0)
    elif task == "sort":
        np.save(out, np.sort(x, axis=0))


def row_blocks(rows: int, cols: int, block_bytes: int):
    step = max(1, block_bytes // (cols * 8))
    for i in range(0, rows, step):
        yield i, min(rows, i + step)


def chunked_stats(np, x):
    rows, cols = x.shape
    s = np.zeros(cols)
    s2 = np.zeros(cols)
    for i, j in row_blocks(rows, cols, 64 * MIB):
        c = x[i:j]
        s += c.sum(axis=0)
        s2 += (c * c).sum(axis=0)
    mean = s / rows
    return mean, np.sqrt(np.maximum(s2 / rows - mean * mean, 0.0))


def chunked_task(np, x, task: str, out: str, limit: int) -> None:
    rows, cols = x.shape
    if task == "colsum":
        s = np.zeros(cols)
        for i, j in row_blocks(rows, cols, 64 * MIB):
            s += x[i:j].sum(axis=0)
    elif task == "colstats":
        chunked_stats(np, x)
    elif task in ("standardize", "cast"):
        dtype = np.float64 if task == "standardize" else np.float32
        if task == "standardize":
            mean, std = chunked_stats(np, x)
        z = np.lib.format.open_memmap(out, mode="w+", dtype=dtype, shape=x.shape)
        for i, j in row_blocks(rows, cols, 64 * MIB):
            z[i:j] = (x[i:j] - mean) / std if task == "standardize" else x[i:j]
        z.flush()
        del z
    elif task in ("median", "sort"):
        group = max(1, limit // (rows * 8))
        if task == "sort":
            z = np.lib.format.open_memmap(out, mode="w+", dtype=x.dtype, shape=x.shape)
        for j in range(0, cols, group):
            c = np.ascontiguousarray(x[:, j:j + group])
            if task == "median":
                np.median(c, axis=0)
            else:
                z[:, j:j + group] = np.sort(c, axis=0)
        if task == "sort":
            z.flush()
            del z


def dask_task(np, path: str, rows: int, cols: int, task: str, out: str) -> None:
    import dask
    import dask.array as da

    def load(i, j):
        return np.load(path, mmap_mode="r")[i:j]

    blocks = [
        da.from_delayed(dask.delayed(load)(i, j), shape=(j - i, cols), dtype=np.float64)
        for i, j in row_blocks(rows, cols, 128 * MIB)
    ]
    x = da.concatenate(blocks, axis=0)
    with dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
        if task == "colsum":
            x.sum(axis=0).compute()
        elif task == "colstats":
            dask.compute(x.mean(axis=0), x.std(axis=0))
        elif task in ("standardize", "cast"):
            if task == "standardize":
                z = (x - x.mean(axis=0)) / x.std(axis=0)
            else:
                z = x.astype(np.float32)
            target = np.lib.format.open_memmap(out, mode="w+", dtype=z.dtype, shape=z.shape)
            da.store(z, target, lock=False)
            target.flush()
            del target
        elif task == "median":
            da.median(x, axis=0).compute()
        else:
            raise SystemExit("dask.array has no sort along an axis")


# --------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------

def run_child(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    """Runs `cmd`; returns (exit code or -1 on timeout, stdout, stderr)."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        p = subprocess.Popen(cmd, stdout=so, stderr=se)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            code = -1
        so.seek(0)
        se.seek(0)
        return code, so.read().decode(), se.read().decode()


def outcore_cmd(binary: str, task: str, path: str, out: str, limit: int, fsync: bool):
    common = ["--memory-limit", str(limit), "--json"]
    sync = [] if fsync else ["--no-fsync"]
    if task == "colsum":
        return [binary, "stats", path, "--axis", "0", "--ops", "sum", *common]
    if task == "colstats":
        return [binary, "stats", path, "--axis", "0", "--ops", "mean,std", *common]
    if task == "median":
        return [binary, "stats", path, "--axis", "0", "--ops", "median", *common]
    if task == "standardize":
        return [binary, "standardize", path, out, "--force", *sync, *common]
    if task == "cast":
        return [binary, "convert", path, out, "--dtype", "f32", "--force", *sync, *common]
    if task == "sort":
        return [binary, "sort", path, out, "--force", *sync, *common]
    raise AssertionError(task)


def one_run(args, impl: str, task: str, path: str, out: str):
    """Seconds and peak RSS of one run, or (None, reason)."""
    if impl.startswith("outcore"):
        cmd = outcore_cmd(args.outcore, task, path, out, args.memory_limit,
                          fsync=impl == "outcore fsync")
    else:
        cmd = [sys.executable, __file__, "--worker", impl, task, path, out,
               "--memory-limit", str(args.memory_limit)]
    code, stdout, stderr = run_child(cmd, args.timeout)
    if os.path.exists(out):
        os.remove(out)
    if code != 0:
        why = "timeout" if code == -1 else (stderr.strip().splitlines() or [f"exit {code}"])[-1]
        return None, why
    if impl.startswith("outcore"):
        report = json.loads(stdout)
        return (report["seconds"], report["peak_rss_bytes"]), None
    secs, rss = stdout.strip().splitlines()[-1].split()
    return (float(secs), int(rss)), None


def ensure_input(args) -> str:
    rows = max(1, args.size // (COLS * 8))
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"x-f64-{rows}x{COLS}.npy")
    info = subprocess.run([args.outcore, "info", path, "--json"], capture_output=True, text=True)
    ok = False
    if info.returncode == 0:
        meta = json.loads(info.stdout)
        ok = meta.get("dtype") == "float64" and meta.get("shape") == [rows, COLS]
    if not ok:
        print(f"generating {fmt_bytes(rows * COLS * 8)} of float64 ({rows} × {COLS}) at {path}")
        subprocess.run([args.outcore, "gen", path, "--shape", f"{rows},{COLS}", "--dtype", "f64",
                        "--dist", "normal", "--seed", "1", "--no-fsync", "--force"], check=True)
    else:
        print(f"reusing {path}")
    # Bring the input into the page cache before the first measured run.
    with open(path, "rb", buffering=0) as f:
        while f.read(64 * MIB):
            pass
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=4, metavar=("IMPL", "TASK", "PATH", "OUT"))
    ap.add_argument("--outcore", help="the outcore binary")
    ap.add_argument("--size", default=os.environ.get("OUTCORE_BENCH_SIZE", "4GiB"))
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "outcore-bench"))
    ap.add_argument("--memory-limit", default="256MiB")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per task (default 3; median and sort, which take tens of seconds, 1)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--impls", default=",".join(IMPLS + ["outcore fsync"]))
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    args = ap.parse_args()
    args.memory_limit = parse_size(str(args.memory_limit))

    if args.worker:
        impl, task, path, out = args.worker
        secs = worker(impl, task, path, out, args.memory_limit)
        print(secs, peak_rss())
        return
    if not args.outcore:
        ap.error("--outcore is required (run.sh passes it)")
    args.size = parse_size(args.size)
    tasks = [t for t in args.tasks.split(",") if t]
    impls = [i for i in args.impls.split(",") if i]
    for t in tasks:
        if t not in TASKS:
            ap.error(f"unknown task {t} (expected {', '.join(TASKS)})")

    versions = subprocess.run(
        [sys.executable, "-c", "import numpy, dask; print(numpy.__version__, dask.__version__)"],
        capture_output=True, text=True, check=True).stdout.split()
    path = ensure_input(args)
    nbytes = os.path.getsize(path)
    out = os.path.join(args.dir, "compare-out.npy")
    print(f"NumPy {versions[0]}, Dask {versions[1]}, {os.cpu_count()} CPUs, "
          f"outcore memory limit {fmt_bytes(args.memory_limit)}, "
          f"median of {args.runs or '3 runs (median and sort: 1)'}{' runs' if args.runs else ''}")

    rows = []
    for task in tasks:
        results = {}
        for impl in impls:
            if impl == "outcore fsync" and task not in ("standardize", "cast", "sort"):
                continue
            if impl == "dask" and task == "sort":
                results[impl] = (None, "n/a: dask.array has no sort")
                continue
            times, peak, why = [], 0, None
            runs = args.runs or (1 if task in ("median", "sort") else 3)
            for _ in range(runs):
                r, why = one_run(args, impl, task, path, out)
                if r is None:
                    break
                times.append(r[0])
                peak = max(peak, r[1])
            results[impl] = ((statistics.median(times), peak), None) if why is None else (None, why)
            shown = "failed: " + why if why else f"{statistics.median(times):.3f} s"
            print(f"  {task:<12} {impl:<14} {shown}", flush=True)
        base = results.get("outcore", (None, None))[0]
        for impl, (r, why) in results.items():
            if r is None:
                rows.append((task, impl, why, "", "", ""))
                continue
            secs, rss = r
            ratio = f"{secs / base[0]:.2f}" if base else ""
            rows.append((task, impl, f"{secs:.3f}", f"{nbytes / secs / 1e9:.2f}", fmt_bytes(rss), ratio))

    print(f"\ninput: {fmt_bytes(nbytes)} float64 ({nbytes // (COLS * 8)} × {COLS}), page cache\n")
    print("| task | implementation | seconds | GB/s of input | peak RSS | time ÷ outcore's |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
