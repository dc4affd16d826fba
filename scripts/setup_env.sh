#!/usr/bin/env bash
# Create .venv (Python 3.11) with the versions we test (constraints.txt) and install fairseq-b2b
# into it, with the test tools and the optional HuggingFace extra (so that its tests run).
# Idempotent: a second run only checks.  Used by both README commands.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import fairseq, fastBPE, sacremoses, pytest, hypothesis, matplotlib, transformers, safetensors, fairseq_b2b" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt torch "numpy<2" cython setuptools wheel
  # fastBPE and fairseq compile C++/Cython against the installed torch and Cython
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation -c constraints.txt \
      fairseq-fixed fastbpe sacremoses pytest hypothesis matplotlib tensorboardX transformers safetensors
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
fi
