#!/usr/bin/env bash
# The README's second command: install what the tests need (.venv, see setup_env.sh), run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
# three worker processes (pytest-xdist), each test file in one of them (its module fixtures built
# once); B2B_TEST_WORKERS=0 runs in this process.  Single-threaded tests; on 2 cores a third worker
# fills the time the others wait on their child processes (docs/testing.md).
exec .venv/bin/python -m pytest -q -n "${B2B_TEST_WORKERS:-3}" --dist loadfile "$@"
