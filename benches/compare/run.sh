#!/usr/bin/env bash
# Side-by-side benchmark: NumPy (whole array on a memmap), the chunked NumPy
# loop, Dask (one memmap slice per block) and outcore, on the same file in
# one run. Makes its own Python venv with numpy and dask, builds the
# outcore binary, then runs compare.py (arguments are passed through:
# --size 4GiB --memory-limit 256MiB --runs 3 --tasks colsum,... --dir DIR).
#
#   bash benches/compare/run.sh                      # 4 GiB, every task
#   bash benches/compare/run.sh --size 1GiB --tasks colsum,colstats
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${OUTCORE_COMPARE_VENV:-$root/target/compare-venv}"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "== making a Python venv with numpy and dask at $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import numpy, dask.array" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
fi

echo "== building outcore (release)"
(cd "$root" && cargo build --release --locked -p outcore-cli --quiet)
target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
  | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

exec "$venv/bin/python" "$here/compare.py" --outcore "$target_dir/release/outcore" "$@"
