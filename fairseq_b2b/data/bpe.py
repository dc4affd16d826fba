"""BPE: learning codes in plain Python, applying them with the ``fastBPE`` module.

The ``fastBPE`` PyPI package can only *apply* codes (its ``learnbpe`` lives in the ``fast``
binary, which pip does not install), so :func:`learn_bpe` re-implements fastBPE's learner:
words are split into characters, ``</w>`` is appended to the last one, and the most frequent
adjacent pair is merged, ``num_merges`` times.  The codes file has fastBPE's format, one
``left right count`` line per merge in merge order.  It is deterministic: ties go to the
lexicographically smallest pair.  Merges that would produce a string an earlier merge already
produced are skipped (fastBPE's applier aborts on such files), and learning stops early when
no pair occurs twice.
"""
from __future__ import annotations

import heapq
import os
import sys
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .steps import DataError

END_OF_WORD = "</w>"
Merge = Tuple[str, str, int]


def count_words(lines: Iterable[str]) -> Counter:
    """Word frequencies of whitespace-tokenized lines."""
    counts: Counter = Counter()
    for line in lines:
        counts.update(line.split())
    return counts


def initial_symbols(word: str) -> List[str]:
    """A word as fastBPE starts it: its characters, ``</w>`` glued to the last one."""
    symbols = list(word)
    symbols[-1] += END_OF_WORD
    return symbols


def merge_pair(symbols: List[str], left: str, right: str) -> List[str]:
    """Merge every non-overlapping (left, right) occurrence, scanning left to right."""
    out: List[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


class _PairStats:
    """Pair counts with a lazy max-heap and an index of the words holding each pair."""

    def __init__(self, words: List[List[str]], freqs: List[int]):
        self.counts: Dict[Tuple[str, str], int] = defaultdict(int)
        self.where: Dict[Tuple[str, str], set] = defaultdict(set)
        for i, (symbols, freq) in enumerate(zip(words, freqs)):
            for pair in zip(symbols, symbols[1:]):
                self.counts[pair] += freq
                self.where[pair].add(i)
        self.heap = [(-c, pair) for pair, c in self.counts.items()]
        heapq.heapify(self.heap)

    def pop_best(self) -> Optional[Tuple[Tuple[str, str], int]]:
        """The most frequent pair (smallest pair on ties) and its count, or None."""
        while self.heap:
            neg, pair = heapq.heappop(self.heap)
            if self.counts.get(pair, 0) == -neg:
                return pair, -neg
        return None

    def update(self, deltas: Dict[Tuple[str, str], int]) -> None:
        for pair, delta in deltas.items():
            if delta:
                self.counts[pair] += delta
                if self.counts[pair] > 0:
                    heapq.heappush(self.heap, (-self.counts[pair], pair))
                else:
                    del self.counts[pair]


def learn_bpe(word_counts: Dict[str, int], num_merges: int, min_count: int = 2,
              progress: Optional[Callable[[int], None]] = None) -> List[Merge]:
    """Learn up to ``num_merges`` merges from word frequencies; returns (left, right, count)."""
    vocab = sorted(w for w in word_counts if w)
    words = [initial_symbols(w) for w in vocab]
    freqs = [word_counts[w] for w in vocab]
    stats = _PairStats(words, freqs)
    produced = {s for symbols in words for s in symbols}
    merges: List[Merge] = []
    while len(merges) < num_merges:
        best = stats.pop_best()
        if best is None or best[1] < min_count:
            break
        (left, right), count = best
        if left + right in produced:  # fastBPE's applier needs each merge result to be new
            continue  # popped from the heap: it comes back only if its count changes
        produced.add(left + right)
        merges.append((left, right, count))
        _apply_merge(words, freqs, stats, left, right)
        if progress and len(merges) % 1000 == 0:
            progress(len(merges))
    return merges


def _apply_merge(words, freqs, stats: _PairStats, left: str, right: str) -> None:
    deltas: Dict[Tuple[str, str], int] = defaultdict(int)
    for i in stats.where.pop((left, right), ()):
        old = words[i]
        new = merge_pair(old, left, right)
        if len(new) == len(old):  # stale index entry
            continue
        for pair in zip(old, old[1:]):
            deltas[pair] -= freqs[i]
        for pair in zip(new, new[1:]):
            deltas[pair] += freqs[i]
            stats.where[pair].add(i)
        words[i] = new
    stats.update(deltas)


def segment(word: str, ranks: Dict[Tuple[str, str], int]) -> List[str]:
    """Reference BPE of one word (lowest-rank pair first), as fastBPE applies it."""
    symbols = initial_symbols(word)
    while len(symbols) > 1:
        pairs = [(ranks.get(p, len(ranks)), p) for p in zip(symbols, symbols[1:])]
        rank, pair = min(pairs)
        if rank == len(ranks):
            break
        symbols = merge_pair(symbols, *pair)
    return symbols


def write_codes(merges: List[Merge], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for left, right, count in merges:
            f.write(f"{left} {right} {count}\n")


def read_codes(path: Path) -> List[Merge]:
    """Parse and validate a codes file, so that fastBPE (which aborts the process) never sees a bad one."""
    merges: List[Merge] = []
    pairs, results = set(), set()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read BPE codes {path}: {e.__class__.__name__}")
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
            raise DataError(f"{path}:{n} is not a fastBPE codes line `left right count`")
        left, right = parts[0], parts[1]
        if (left, right) in pairs or left + right in results:
            raise DataError(f"{path}:{n} repeats a merge; fastBPE would reject these codes")
        pairs.add((left, right))
        results.add(left + right)
        merges.append((left, right, int(parts[2])))
    if not merges:
        raise DataError(f"BPE codes file is empty: {path}")
    return merges


class BpeApplier:
    """fastBPE's applier over a validated codes file: ``apply(lines) -> lines``."""

    def __init__(self, codes: Path):
        read_codes(codes)
        import fastBPE

        with _quiet_stderr():  # fastBPE prints "Loading codes ..." from C++
            self._bpe = fastBPE.fastBPE(str(codes))

    def apply(self, lines: List[str]) -> List[str]:
        return self._bpe.apply(lines)


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C/C++ output) for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
