"""The Python examples run as written (small sizes), and the package's
type stubs match the extension module (`stubtest`) and type-check the
examples under `mypy --strict` (when mypy is installed, as the test
command does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "python").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example):
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def _mypy(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_stubs_match_the_extension_module():
    out = _mypy("mypy.stubtest", "outcore._outcore")
    assert out.returncode == 0, out.stdout + out.stderr


def test_examples_and_package_type_check_strictly():
    out = _mypy("mypy", "--strict", "--no-incremental", "examples/python", "python/outcore")
    assert out.returncode == 0, out.stdout + out.stderr
