"""Paths recorded in checkpoints, found again from any working directory.

fairseq stores the data directory exactly as it was typed (``data/data-bin``), relative to the
folder training ran in.  A later command (``b2b-grow``, ``b2b-export-hf``, ``b2b-glue prepare
--checkpoint``) may run elsewhere: the recorded path is tried as it is, then relative to the
checkpoint's folder and each folder above it (a run saved under ``runs/x/`` of the training
folder finds ``data/data-bin`` two levels up)."""
from __future__ import annotations

import os


def _candidates(recorded: str, checkpoint: str | None):
    yield recorded
    if os.path.isabs(recorded) or not checkpoint:
        return
    folder = os.path.dirname(os.path.abspath(checkpoint))
    while True:
        yield os.path.join(folder, recorded)
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def resolve_data_dir(recorded, checkpoint: str | None = None, needs: str = "dict.txt") -> str | None:
    """The absolute data directory (``os.pathsep``-separated shards resolved alike) whose first
    shard holds ``needs``, or None when no candidate does."""
    if not recorded:
        return None
    shards = str(recorded).split(os.pathsep)
    for first in _candidates(shards[0], checkpoint):
        if os.path.isfile(os.path.join(first, needs)):
            base = first[: len(first) - len(shards[0])]  # the prefix that made the first shard exist
            return os.pathsep.join(os.path.abspath(base + s if not os.path.isabs(s) else s) for s in shards)
    return None


def resolve_file(recorded, checkpoint: str | None = None) -> str | None:
    """An existing file recorded in a checkpoint (e.g. the ``--init-from-small`` source), as an
    absolute path, or None."""
    if not recorded:
        return None
    for path in _candidates(str(recorded), checkpoint):
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None
