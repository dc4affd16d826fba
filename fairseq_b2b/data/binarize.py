"""``fairseq-preprocess --only-source``, run in this process: fairseq's own ``fairseq_cli.preprocess``
``main`` on its own argument parser, so the data-bin is byte for byte the stock command's, without
a second Python that imports torch and fairseq again (3-4 s of CPU per call).

Its log lines come back to the caller; the handlers it adds (stdout on a bare root logger at
import, ``DESTDIR/preprocess.log``) are taken off again; the worker processes it forks for
``--workers N`` die with this process, as a child started with ``outputs.die_with_parent`` does.
"""
from __future__ import annotations

import logging
import multiprocessing.util
from pathlib import Path
from typing import Callable, List, Optional

from ..outputs import die_with_parent

LOGGER = "fairseq_cli.preprocess"


class BinarizeError(Exception):
    """fairseq-preprocess stopped: its last words, one line."""


def only_source_argv(destdir, srcdict=None, workers: int = 1, trainpref=None, validpref=None,
                     testpref=None) -> List[str]:
    """The argument list of ``fairseq-preprocess --only-source`` for these files."""
    argv = ["--only-source", "--destdir", str(destdir), "--workers", str(max(1, int(workers)))]
    for flag, pref in (("--trainpref", trainpref), ("--validpref", validpref), ("--testpref", testpref)):
        if pref:
            argv += [flag, str(pref)]
    if srcdict:
        argv += ["--srcdict", str(srcdict)]
    return argv


def _import_preprocess():
    """fairseq_cli.preprocess, imported without the stdout handler its import puts on a bare root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from fairseq_cli import preprocess

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return preprocess


class _Lines(logging.Handler):
    def __init__(self, on_line: Optional[Callable[[str], None]]):
        super().__init__(logging.INFO)
        self.lines: List[str] = []
        self.on_line = on_line

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        if self.on_line:
            self.on_line(line)


class _DieWithParent:
    """Registered with multiprocessing: every process it forks meanwhile runs ``die_with_parent``."""

    def __init__(self):
        multiprocessing.util.register_after_fork(self, lambda _: die_with_parent())


def fairseq_preprocess(argv: List[str], on_line: Optional[Callable[[str], None]] = None) -> List[str]:
    """Run ``fairseq-preprocess ARGV`` here; returns its log messages (each also to ``on_line``).
    ``DESTDIR/preprocess.log`` is left as fairseq writes it.  Raises :class:`BinarizeError`."""
    preprocess = _import_preprocess()
    from fairseq import options

    try:
        args = options.get_preprocessing_parser().parse_args(argv)
    except SystemExit:
        raise BinarizeError(f"fairseq-preprocess refused its arguments: {' '.join(argv)}") from None
    logger = logging.getLogger(LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    lines = _Lines(on_line)
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    guard = _DieWithParent()  # noqa: F841 (kept alive while fairseq's pool forks)
    try:
        preprocess.main(args)
    except Exception as e:  # fairseq's own exceptions: one line with its words
        words = str(e).strip().splitlines()
        raise BinarizeError(f"{type(e).__name__}: {words[-1] if words else 'no message'}"[:300]) from None
    finally:
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(level)
        logger.propagate = propagate
        del guard
    return lines.lines


def move_log(destdir, log_dir: Optional[Path]) -> None:
    """Take fairseq's ``preprocess.log`` (it holds timestamps) out of the data-bin: into ``log_dir``,
    or away when ``log_dir`` is None, so that the data-bin is reproducible."""
    log = Path(destdir) / "preprocess.log"
    if not log.exists():
        return
    if log_dir is None:
        log.unlink()
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    log.replace(log_dir / "preprocess.log")
