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
if ! .venv/bin/python -c "import fairseq, fastBPE, sacremoses, pytest, xdist, hypothesis, matplotlib, transformers, safetensors, gguf, fairseq_b2b" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt torch "numpy<2" cython setuptools wheel
  # fastBPE and fairseq compile C++/Cython against the installed torch and Cython
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation -c constraints.txt \
      fairseq-fixed fastbpe sacremoses pytest pytest-xdist hypothesis matplotlib tensorboardX transformers safetensors gguf
  .venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
fi
# fairseq-fixed declares torchaudio, and pip brings the newest (2.11.1), whose C extension does
# not load beside torch 2.13; transformers imports torchaudio whenever it is installed, so
# `from transformers import BertModel` would fail.  fairseq imports torchaudio only inside its
# speech code (lazily), never for masked_lm / language_modeling / eval-lm / preprocess, so the
# tested stack has no torchaudio.  This also removes one left over from an older .venv or
# brought back by a later `pip install`.
if .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchaudio') is None)"; then
  echo "setup_env: removing torchaudio (not needed for text tasks; the available one does not load beside torch 2.13)"
  .venv/bin/pip uninstall -q -y --disable-pip-version-check torchaudio
fi
if ! .venv/bin/python -c "from transformers import BertModel, GPT2LMHeadModel" 2>/dev/null; then
  echo "setup_env: error: .venv/bin/python cannot import transformers' BertModel/GPT2LMHeadModel; remove .venv and rerun" >&2
  exit 1
fi
