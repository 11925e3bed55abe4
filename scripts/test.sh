#!/usr/bin/env bash
# The test command: the Rust tests, then the Python package built (release)
# into its own virtual environment and its tests. Works on a fresh machine
# without a terminal; any failing test fails the script.
#
#   scripts/test.sh            # everything
#   OUTCORE_VENV=DIR           # where the venv lives (default: target/python-venv)
#   PYTHON=python3.12          # the interpreter the venv is made from
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace --release --locked"
cargo test --workspace --release --locked

venv="${OUTCORE_VENV:-target/python-venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "== python venv: $venv"
  "$python" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
"$venv/bin/python" -m pip install --quiet "maturin>=1.9,<2" numpy pytest hypothesis mypy

echo "== maturin develop --release (python/)"
venv="$(cd "$venv" && pwd)"
# VIRTUAL_ENV tells maturin which environment to install into.
(cd python && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --release --locked)

echo "== pytest python/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
