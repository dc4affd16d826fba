#!/usr/bin/env bash
# English Wikipedia + BookCorpus, the paper's pre-training data, for users who have the dumps.
#
#   preprocess/prepare_wikibooks.sh WIKI_DIR BOOKS OUTPUT_DIR [b2b-preprocess corpus options]
#
# WIKI_DIR: WikiExtractor output (AA/wiki_00 ..., plain, .bz2, or --json), e.g. from
#   python -m wikiextractor.WikiExtractor enwiki-latest-pages-articles.xml.bz2 -o WIKI_DIR
# BOOKS: a BookCorpus folder (one .txt per book) or file (books_large_p1.txt); "-" for none.
# Steps, each resumable (rerun the same command after an interruption):
#   1. OUTPUT_DIR/text/{train,valid,test}.txt: one sentence per line, a blank line between
#      documents; every ${HELDOUT_EVERY:-200}th document held out for valid, the next one for test.
#   2. OUTPUT_DIR/data-bin, bpe.codes, dict.txt: Moses tokens, BPE (30000 merges unless
#      --num-merges is given), fairseq-preprocess.
# Reuse a vocabulary with --srcdict OTHER/dict.txt --codes OTHER/bpe.codes.
set -euo pipefail

usage="usage: $0 WIKI_DIR BOOKS|- OUTPUT_DIR [--num-merges N] [--workers N] [--srcdict D --codes C]"
if [ $# -lt 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ] || [ "${3#-}" != "$3" ]; then
  echo "$usage" >&2; exit 2
fi
wiki=$1 books=$2 out=$3
shift 3

run() {
  if command -v b2b-preprocess >/dev/null 2>&1; then b2b-preprocess "$@"
  else "${PYTHON:-python3}" -m fairseq_b2b.data "$@"; fi
}

books_args=()
if [ "$books" != "-" ]; then books_args=(--books "$books"); fi
run wikibooks --wiki "$wiki" ${books_args[@]+"${books_args[@]}"} --output "$out" \
  --heldout-every "${HELDOUT_EVERY:-200}"
run corpus --train "$out/text/train.txt" --valid "$out/text/valid.txt" --test "$out/text/test.txt" \
  --output "$out" --num-merges 30000 "$@"
