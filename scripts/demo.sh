#!/usr/bin/env bash
# The README's first command: install (.venv, see setup_env.sh), then run the paper's comparison
# in miniature on the built-in corpus with the CPU preset.  Extra arguments go to b2b-experiment
# (e.g. --preset gpu --output runs/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ $# -eq 0 ]; then
  set -- --preset cpu --output runs/cpu
fi
exec .venv/bin/b2b-experiment "$@"
