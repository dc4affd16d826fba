"""Garbage input named as garbage: text that is not UTF-8 (it decodes to U+FFFD replacement
characters) and splits the dictionary cannot cover (mostly ``<unk>``).

Above ``*_WARN`` a command prints one warning line with the rate; above ``*_REFUSE`` it stops
with one line, which ``--force`` overrides (the warning is still printed)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import B2BError

REPLACEMENT_WARN = 0.01    # 1% of the non-space characters are U+FFFD: warned
REPLACEMENT_REFUSE = 0.10  # 10%: refused without --force (text is not UTF-8, or binary)
UNK_WARN = 0.25            # a quarter of a split's tokens become <unk>: warned (below, vocab_check's notes)
UNK_REFUSE = 0.50          # 50% (mostly <unk>): refused without --force (the dictionary does not fit the text)
SAMPLE_BYTES = 16 << 20    # the rate of the first 16 MiB of a file


def replacement_rate(path, sample_bytes: int = SAMPLE_BYTES) -> float:
    """U+FFFD characters per non-whitespace character in the first ``sample_bytes`` of ``path``,
    decoded as the commands decode it (UTF-8, undecodable bytes replaced)."""
    with open(path, "rb") as f:
        data = f.read(sample_bytes)
    text = data.decode("utf-8", errors="replace")
    if len(data) == sample_bytes:  # a multi-byte character cut at the end of the sample
        text = text[:-2]
    chars = len("".join(text.split()))
    return text.count("\ufffd") / chars if chars else 0.0


def _judge(rate: float, warn: float, refuse: float, force: bool, prog: str, what: str, fix: str,
           error=B2BError) -> None:
    if rate <= warn:
        return
    if rate > refuse and not force:
        raise error(f"{what} (above {refuse:.0%}): {fix}, or pass --force to go on anyway")
    print(f"{prog}: warning: {what}", file=sys.stderr, flush=True)


def check_decoding(paths, what: str, force: bool, prog: str, error=B2BError) -> None:
    """Warn about (or refuse) files that are mostly not UTF-8 text."""
    for path in paths:
        rate = replacement_rate(path)
        _judge(rate, REPLACEMENT_WARN, REPLACEMENT_REFUSE, force, prog,
               f"{what} {Path(path)}: {rate:.1%} of its characters are not UTF-8 (decoded as U+FFFD)",
               "pass UTF-8 text (convert it with iconv)", error)


def check_unknown_rate(rate: float, what: str, force: bool, prog: str, fix: str, error=B2BError) -> None:
    """Warn about (or refuse) a split whose tokens are mostly ``<unk>``."""
    _judge(rate, UNK_WARN, UNK_REFUSE, force, prog, f"{what}: {rate:.1%} of its tokens are <unk>", fix, error)
