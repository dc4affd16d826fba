"""The package's log records in fairseq-train's ``--log-file``.

fairseq-train writes ``--log-file`` through a ``logging.FileHandler`` that it attaches to its own
``fairseq_cli.train`` logger only, so records of other loggers (the growth record, the two-stage
notes, the schedules' boundary messages) reach the console but not the file. A handler on the
``fairseq_b2b`` logger hands each record to those file handlers as well, formatted as fairseq
formats its own lines there.
"""
from __future__ import annotations

import logging

PACKAGE_LOGGER = "fairseq_b2b"
FAIRSEQ_FILE_LOGGERS = ("fairseq_cli.train",)  # where fairseq-train attaches its --log-file handler


class FairseqLogFile(logging.Handler):
    """Forwards a record to every ``FileHandler`` fairseq-train attached for ``--log-file``."""

    def emit(self, record: logging.LogRecord) -> None:
        seen = set()
        for name in FAIRSEQ_FILE_LOGGERS:
            for handler in logging.getLogger(name).handlers:
                path = getattr(handler, "baseFilename", None)
                if isinstance(handler, logging.FileHandler) and path not in seen and record.levelno >= handler.level:
                    seen.add(path)
                    handler.handle(record)


def forward_to_fairseq_log_file() -> None:
    """Install the forwarding handler on the package logger (once)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if not any(isinstance(h, FairseqLogFile) for h in logger.handlers):
        logger.addHandler(FairseqLogFile())


def one_file_handler_per_log_file() -> None:
    """fairseq's ``progress_bar.progress_bar`` adds a new ``FileHandler`` for ``--log-file`` to its
    logger every time it is called - once per epoch and per validation - so every later line is
    written to the file once more per epoch (an 8-epoch run repeats its last records 8 times).
    Wrap it so that each log file keeps exactly one handler (installed once, on import)."""
    from fairseq.logging import progress_bar as bars

    original = bars.progress_bar
    if getattr(original, "_b2b_one_handler", False):
        return

    def progress_bar(*args, **kwargs):
        bar = original(*args, **kwargs)
        seen = set()
        for handler in list(bars.logger.handlers):
            if isinstance(handler, logging.FileHandler):
                if handler.baseFilename in seen:
                    bars.logger.removeHandler(handler)
                    handler.close()
                seen.add(handler.baseFilename)
        return bar

    progress_bar._b2b_one_handler = True
    progress_bar.__doc__ = original.__doc__
    bars.progress_bar = progress_bar
