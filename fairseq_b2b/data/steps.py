"""Resumable, atomic pipeline steps.

Each step writes its output (a file or a folder) under a temporary name, renames it into
place when complete, and only then writes a small stamp (``.stamps/<name>.json``) holding a
key: a hash of the step's inputs and options.  A rerun skips a step whose output exists and
whose stamp carries the same key; anything else (no stamp, another key, a leftover temporary)
is redone from scratch.  A run killed at any point therefore leaves nothing a rerun trusts.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from ..errors import B2BError

STAMP_DIR = ".stamps"


class DataError(B2BError):
    """Bad input to the data pipeline; the message is one line and names the fix."""


def log(msg: str) -> None:
    """Progress output: stderr, one line, flushed."""
    print(f"b2b-preprocess: {msg}", file=sys.stderr, flush=True)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_key(**parts) -> str:
    """A stable hash of JSON-serialisable step inputs and options."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def remove(path: Path) -> None:
    """Remove a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def file_sizes(path: Path):
    """{relative path: size} of a file or of every file in a folder; None if it is missing."""
    if path.is_file():
        return {".": path.stat().st_size}
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


def sync(path: Path) -> None:
    """fsync a file or every file in a folder, so a rename never exposes unwritten data."""
    for p in [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file()):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(path: Path) -> Path:
    """The temporary name a step writes before renaming to ``path``."""
    return path.with_name(path.name + ".tmp")


class StepRunner:
    """Runs named steps inside one output folder, skipping those already done."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.stamps = self.root / STAMP_DIR

    def clean_temporaries(self) -> None:
        """Remove ``*.tmp`` left by a killed run (call while holding the lock)."""
        for pattern in ("*.tmp", "*/*.tmp"):
            for path in self.root.glob(pattern):
                remove(path)

    def stamp_path(self, name: str) -> Path:
        return self.stamps / f"{name}.json"

    def done_key(self, name: str, output: Path):
        """The key of a completed step, or None when it must be (re)done."""
        try:
            stamp = json.loads(self.stamp_path(name).read_text())
        except (OSError, ValueError):
            return None
        if stamp.get("output") != str(output.relative_to(self.root)):
            return None
        if stamp.get("files") != file_sizes(output):  # deleted or truncated since
            return None
        return stamp.get("key")

    def run(self, name: str, output: Path, key: str, build: Callable[[Path], None]) -> str:
        """Make ``output`` with ``build(tmp)`` unless a stamp with ``key`` says it is done."""
        if self.done_key(name, output) == key:
            log(f"{name}: done already, skipped")
            return key
        self.invalidate(name, output)
        tmp = temp_name(output)
        remove(tmp)
        output.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        build(tmp)
        sync(tmp)
        remove(output)
        os.replace(tmp, output)
        self.write_stamp(name, output, key)
        log(f"{name}: done in {time.monotonic() - started:.1f}s")
        return key

    def invalidate(self, name: str, output: Path) -> None:
        """Forget a step: its stamp goes first, then its output."""
        remove(self.stamp_path(name))
        remove(output)

    def write_stamp(self, name: str, output: Path, key: str) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        stamp = self.stamp_path(name)
        tmp = temp_name(stamp)
        rel = str(output.relative_to(self.root))
        tmp.write_text(json.dumps({"key": key, "output": rel, "files": file_sizes(output)}) + "\n")
        sync(tmp)
        os.replace(tmp, stamp)


@contextmanager
def locked(root: Path):
    """Hold an exclusive lock on ``root`` (released by the OS if the process dies)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"another b2b-preprocess is writing {root}; wait for it or use another --output")
        yield
    finally:
        os.close(fd)


def check_inputs(paths: Iterable[Path], what: str) -> None:
    """One-line errors for missing, unreadable or empty input files (before anything is written)."""
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DataError(f"{what} file not found: {p}")
        if not os.access(p, os.R_OK):
            raise DataError(f"{what} file is not readable: {p}")
        if not has_text(p):
            raise DataError(f"{what} file is empty (no text): {p}")


def has_text(path: Path) -> bool:
    """Whether a file holds anything besides whitespace."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if block.strip():
                return True
    return False
