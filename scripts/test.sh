#!/usr/bin/env bash
# The README's second command: install what the tests need (.venv, see setup_env.sh), run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
# two worker processes (pytest-xdist), each test file in one of them (its module fixtures built
# once); B2B_TEST_WORKERS=0 runs in this process.  Single-threaded tests: 2 workers use 2 cores.
exec .venv/bin/python -m pytest -q -n "${B2B_TEST_WORKERS:-2}" --dist loadfile "$@"
