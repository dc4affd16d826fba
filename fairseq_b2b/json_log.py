"""Reading fairseq's ``--log-format json`` lines: the one reader of their records, for the
experiment's progress lines, ``b2b-report``'s curves and ``b2b-glue``'s cross-check.

fairseq logs a record as ``<prefix> | {"epoch": 1, "loss": "7.95", ...}`` in a log file, or as
``INFO:train_inner:{...}`` in captured records: the JSON object starts at the line's first ``{``.
"""
from __future__ import annotations

import json


def json_record(line: str, *keys: str) -> dict | None:
    """The JSON record of one fairseq log line, or None: the line has no ``{``, does not parse as
    a JSON object, or (with ``keys``) contains none of ``keys`` (checked before parsing, so a
    reader skips the other lines cheaply)."""
    if keys and not any(key in line for key in keys):
        return None
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
