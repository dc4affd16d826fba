#!/usr/bin/env bash
# The README's second command: install what the tests need (.venv, see setup_env.sh), run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest -q "$@"
