"""repr/_repr_html_, explain data, the GIL during a run, and the memory
promise inside a Python process (measured in a subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import outcore as oc

ROWS, COLS = 1 << 22, 8  # 4 Mi rows × 8 float64 = 256 MiB


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 256 MiB float64 `.npy` written through `open_memmap` in chunks."""
    p = tmp_path_factory.mktemp("big") / "big.npy"
    m = np.lib.format.open_memmap(p, mode="w+", dtype="float64", shape=(ROWS, COLS))
    step = 1 << 19
    base = np.arange(step * COLS, dtype="float64").reshape(step, COLS)
    for i in range(0, ROWS, step):
        m[i:i + step] = np.sin(base + i) * (1 + (i // step))
    m.flush()
    del m
    return p


def test_repr_and_html(npy):
    a = np.arange(12, dtype="float32").reshape(4, 3)
    x = npy(a)
    y = np.sqrt(x) + 1
    text = repr(y)
    for part in ["outcore.Array", "shape=(4, 3)", "float32", "sqrt(", "+ 1",
                 "pass", "rows", "peak memory", "limit", "in memory", "reads"]:
        assert part in text, (part, text)
    h = y._repr_html_()
    assert h.startswith("<table>") and "</table>" in h
    for part in ["shape", "(4, 3)", "float32", "sqrt(", "peak memory", "passes"]:
        assert part in h, (part, h)
    s = repr(x.sort())
    assert "operator step" in s and "sort(" in s and "step " in s and "read" in s
    one = repr(npy(np.arange(5)))
    assert "shape=(5,)" in one and "int64" in one


def test_repr_of_an_invalid_expression_does_not_raise(npy):
    x = npy(np.arange(4, dtype="int8") > 1)
    bad = -x  # negating bool: refused by the engine at plan time
    text = repr(bad)
    assert "plan" in text and "Error" in text


def test_explain_to_dict(npy):
    x = npy(np.arange(30, dtype="float64").reshape(10, 3))
    e = oc.explain(x.mean(axis=0), x.std(axis=0))
    d = e.to_dict()
    assert d["text"] == str(e) and d["memory_limit"] == 64 << 20
    assert len(d["passes"]) >= 1
    p = d["passes"][0]
    assert p["rows"] == 10 and p["bytes_read"] == 240 and p["peak_bytes"] > 0


def test_gil_released_during_compute(big):
    """A second thread counts while a long run goes on in the main thread."""
    x = oc.open(big)
    ticks = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        with oc.config(memory_limit="16MiB", threads=1):
            time.sleep(0.01)
            before = ticks[0]
            start = time.perf_counter()
            oc.compute(np.std(np.sqrt(np.abs(x)) + np.log1p(np.abs(x)), axis=0),
                       np.median(x, axis=0))
            took = time.perf_counter() - start
            during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    assert took > 0.05, took
    # With the GIL held for the run, the counter would not move at all.
    assert during > 10_000, (during, took)


MEMORY_CHILD = textwrap.dedent(
    """
    import json, sys, tempfile, os
    import numpy as np
    import outcore as oc

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    after_import = status("VmRSS")
    x = oc.open(sys.argv[1])
    with oc.config(memory_limit="32MiB"), tempfile.TemporaryDirectory() as d:
        mean, std, lo, hi = oc.compute(x.mean(axis=0), x.std(axis=0),
                                       x.min(axis=0), x.max(axis=0))
        oc.save(os.path.join(d, "z.npy"), (x - x.mean(axis=0)) / x.std(axis=0),
                dtype="float32")
        size = os.path.getsize(os.path.join(d, "z.npy"))
        (med,) = oc.compute(x.median(axis=0))
        oc.save(os.path.join(d, "s.npy"), x.sort(axis=0))
        # A memmap is reopened from its file: its pages are never touched.
        m = np.load(sys.argv[1], mmap_mode="r")
        (total,) = oc.compute(oc.asarray(m).sum(axis=0))
    print(json.dumps({"after_import": after_import, "hwm": status("VmHWM"),
                      "size": size, "mean0": float(mean[0]), "med0": float(med[0]),
                      "total0": float(total[0])}))
    """
)


def test_memory_promise_in_a_subprocess(big):
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(big)],
                         capture_output=True, text=True, timeout=120, check=True)
    r = json.loads(out.stdout)
    print(r)
    assert r["size"] >= ROWS * COLS * 4
    col0 = np.load(big, mmap_mode="r")[:, 0]
    assert r["med0"] == float(np.median(col0))
    assert r["total0"] == pytest.approx(float(np.sum(col0)), rel=1e-12)
    allowed = r["after_import"] + (32 << 20) + (16 << 20)
    assert r["hwm"] <= allowed, (
        f"peak RSS {r['hwm'] / 2**20:.1f} MiB > RSS after import "
        f"{r['after_import'] / 2**20:.1f} MiB + 32 MiB + 16 MiB")


def test_ctrl_c_interrupts_a_run_and_leaves_nothing(big, tmp_path):
    """SIGINT during a long run raises KeyboardInterrupt within a fraction
    of a second; no output and no spill file is left."""
    spill = tmp_path / "spill"
    spill.mkdir()
    out = tmp_path / "sorted.npy"
    script = textwrap.dedent(
        f"""
        import sys, time
        import outcore as oc
        with oc.config(memory_limit="16MiB", spill_dir={str(spill)!r}):
            x = oc.open({str(big)!r})
            print("started", flush=True)
            t = time.monotonic()
            try:
                oc.save({str(out)!r}, x.sort())
            except KeyboardInterrupt:
                print("interrupted", time.monotonic() - t, flush=True)
                sys.exit(0)
            print("finished", time.monotonic() - t, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(2)  # SIGINT
    rest, _ = proc.communicate(timeout=120)
    waited = time.monotonic() - sent
    assert proc.returncode == 0, rest
    assert rest.startswith("interrupted"), rest
    # A fraction of a second when the machine is idle; slack for CI load.
    assert waited < 5.0, waited
    assert not out.exists()
    assert list(spill.iterdir()) == []


PROGRESS_CHILD = textwrap.dedent(
    """
    import sys
    import outcore as oc
    kw = {} if sys.argv[2] == "auto" else {"progress": sys.argv[2] == "yes"}
    with oc.config(memory_limit="16MiB", threads=1, **kw):
        x = oc.open(sys.argv[1])
        oc.compute(x.sort(axis=0).sum(axis=0), (x * 2).std(axis=0))
    """
)


@pytest.mark.parametrize("mode", ["yes", "no", "auto"])
def test_progress_bar_only_when_asked_or_on_a_terminal(big, mode):
    """A run longer than half a second draws its steps on stderr when
    asked; by default (stderr a pipe here) and when refused, nothing."""
    out = subprocess.run([sys.executable, "-c", PROGRESS_CHILD, str(big), mode],
                         capture_output=True, text=True, timeout=300, check=True)
    if mode == "yes":
        assert "step 1 of 2: sort" in out.stderr, out.stderr[:500]
        # The sort counts its bytes (runs, merges, rows written back).
        assert re.search(r"step 1 of 2: sort  [█░]{30} ", out.stderr), out.stderr[:500]
        # (text mode reads "\r" as a line end) The line is cleared at the end.
        assert out.stderr.rstrip("\n").split("\n")[-1].strip() == "", out.stderr[-200:]
    else:
        assert out.stderr == ""


def test_progress_line():
    from outcore._progress import line

    assert line("step 2 of 3: pass", 512 << 20, 1 << 30, 1.0) == (
        "step 2 of 3: pass  " + "█" * 15 + "░" * 15 + " 512.0 MiB/1.0 GiB 512.0 MiB/s")
    assert line("step 1 of 1: sort", 0, 0, 12.4) == "step 1 of 1: sort  12 s"


def test_last_report(npy):
    x = npy(np.arange(40.0).reshape(10, 4))
    with oc.config(memory_limit="32MiB"):
        assert oc.last_report() is None
        oc.compute(x.sum(axis=0), x.std(axis=0))
        r = oc.last_report()
        assert r is not None
        assert r.passes == 1 and r.bytes_read == 320 and r.bytes_written == 0
        assert r.bytes_spilled == 0 and r.memory_limit == 32 << 20
        assert 0 < r.peak_reserved <= r.memory_limit and r.seconds > 0
        assert r.peak_rss is None or r.peak_rss > 0
        assert "1 pass" in repr(r) and "32.0 MiB limit" in repr(r)
        assert set(r.to_dict()) >= {"seconds", "passes", "bytes_read", "bytes_written",
                                    "bytes_spilled", "peak_rss", "peak_reserved",
                                    "memory_limit", "reserved_by_consumer"}
        assert set(r.reserved_by_consumer) <= {"reader", "kernel", "state", "writer",
                                                "spill", "other"}
