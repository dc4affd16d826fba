"""English Wikipedia (WikiExtractor output) + BookCorpus -> sentence-per-line documents.

WikiExtractor writes files (``AA/wiki_00``, optionally ``.bz2``) holding documents as::

    <doc id="12" url="https://en.wikipedia.org/wiki?curid=12" title="Anarchism">
    Anarchism

    Anarchism is a political philosophy ...
    </doc>

or, with ``--json``, one ``{"id", "url", "title", "text"}`` object per line.  Each article
becomes one document: the title line is dropped, every paragraph is split into sentences, and
articles under ``min_words`` words (stubs, lists) are skipped.  BookCorpus comes either as one
``.txt`` file per book or as the ``books_large_p*.txt`` dumps (a sentence per line); each file
is one document and each line is split into sentences.

:func:`prepare_wikibooks` writes ``OUT/text/{train,valid,test}.txt``: every ``heldout_every``
-th document goes to valid and the one after it to test (0.5% each by default), the rest to
train.  The step is atomic and resumable like the rest of the pipeline.
"""
from __future__ import annotations

import bz2
import gzip
import html
import itertools
import json
import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .steps import DataError, StepRunner, file_digest, locked, log, make_key
from .text import split_sentences

DOC_START = re.compile(r"^<doc\b[^>]*>\s*$")
DOC_TITLE = re.compile(r'\btitle="([^"]*)"')
DOC_END = "</doc>"
MIN_WORDS = 20
PROGRESS_DOCS = 100_000
SPLITS = ("train", "valid", "test")


def open_text(path: Path):
    """Open plain, .bz2 or .gz text for reading as UTF-8."""
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8", errors="replace")


def input_files(paths: Iterable[Path]) -> List[Path]:
    """Files under the given folders/files, sorted, hidden files skipped."""
    files: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and not any(
                part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input not found: {p}")
    return files


def parse_wikiextractor(lines: Iterable[str]) -> Iterator[Tuple[str, List[str]]]:
    """(title, body lines) of each article in a WikiExtractor file (XML-ish or --json)."""
    title: Optional[str] = None
    body: List[str] = []
    for line in lines:
        line = line.rstrip("\n")
        if title is None and line.startswith("{"):
            doc = json.loads(line)
            yield doc.get("title", ""), doc.get("text", "").split("\n")
            continue
        if DOC_START.match(line):
            m = DOC_TITLE.search(line)
            title, body = html.unescape(m.group(1) if m else ""), []
        elif line.strip() == DOC_END and title is not None:
            yield title, body
            title = None
        elif title is not None:
            body.append(line)


def article_lines(title: str, body: List[str], min_words: int = MIN_WORDS) -> List[str]:
    """An article as sentence lines; [] when it is too short to keep."""
    paras = [" ".join(line.split()) for line in body]
    paras = [p for p in paras if p]
    if paras and paras[0] == title.strip():
        paras = paras[1:]
    lines = [s for p in paras for s in split_sentences(p)]
    return lines if sum(len(s.split()) for s in lines) >= min_words else []


def wiki_documents(paths: Iterable[Path], min_words: int = MIN_WORDS) -> Iterator[List[str]]:
    for path in input_files(paths):
        with open_text(path) as f:
            for title, body in parse_wikiextractor(f):
                lines = article_lines(title, body, min_words)
                if lines:
                    yield lines


def book_documents(paths: Iterable[Path]) -> Iterator[Iterator[str]]:
    """One document per BookCorpus file (streamed: the dumps are GBs); lines split into sentences."""
    for path in input_files(paths):
        yield _book_lines(path)


def _book_lines(path: Path) -> Iterator[str]:
    with open_text(path) as f:
        for line in f:
            yield from split_sentences(" ".join(line.split()))


def split_of(index: int, heldout_every: int) -> str:
    position = index % heldout_every
    return "valid" if position == heldout_every - 2 else "test" if position == heldout_every - 1 else "train"


def write_split_documents(docs: Iterable[Iterable[str]], folder: Path, heldout_every: int) -> Dict[str, int]:
    """Stream documents into folder/{train,valid,test}.txt, blank lines between documents."""
    folder.mkdir(parents=True)
    outs = {s: open(folder / f"{s}.txt", "w", encoding="utf-8") for s in SPLITS}
    counts = {s: 0 for s in SPLITS}
    try:
        for i, doc in enumerate(docs):
            split = split_of(i, heldout_every)
            if write_document(doc, outs[split], separate=counts[split] > 0):
                counts[split] += 1
            if (i + 1) % PROGRESS_DOCS == 0:
                log(f"wikibooks: {i + 1:,} documents")
    finally:
        for f in outs.values():
            f.close()
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        raise DataError(f"only {sum(counts.values())} documents: {', '.join(empty)} would be empty; "
                        f"lower --heldout-every")
    return counts


def write_document(lines: Iterable[str], out, separate: bool) -> bool:
    """Write one document's lines, preceded by a blank line if ``separate``; False if it had none."""
    wrote = False
    for line in lines:
        if not wrote and separate:
            out.write("\n")
        out.write(line + "\n")
        wrote = True
    return wrote


def prepare_wikibooks(wiki: List[Path], books: List[Path], output: Path, heldout_every: int = 200,
                      min_words: int = MIN_WORDS) -> Dict[str, Path]:
    """Write ``output/text/{train,valid,test}.txt`` from WikiExtractor output and BookCorpus."""
    if not wiki and not books:
        raise DataError("give --wiki and/or --books")
    if heldout_every < 3:
        raise DataError(f"--heldout-every must be at least 3, got {heldout_every}")
    wiki_files, book_files = input_files(wiki), input_files(books)
    if not wiki_files + book_files:
        raise DataError("no input files found under --wiki/--books")
    output = Path(output)
    key = make_key(step="wikibooks", version=1, wiki=[file_digest(p) for p in wiki_files],
                   books=[file_digest(p) for p in book_files], heldout=heldout_every, min_words=min_words)

    def build(tmp: Path) -> None:
        docs = itertools.chain(wiki_documents(wiki_files, min_words), book_documents(book_files))
        counts = write_split_documents(docs, tmp, heldout_every)
        log("wikibooks: documents " + ", ".join(f"{s} {n:,}" for s, n in counts.items()))

    with locked(output):
        runner = StepRunner(output)
        runner.clean_temporaries()
        runner.run("wikibooks", output / "text", key, build)
    return {s: output / "text" / f"{s}.txt" for s in SPLITS}
