"""BPE codes and dictionary checked as a pair.

A ``dict.txt`` only fits the BPE codes its text was split with.  Other codes cut words into
units the dictionary lacks; they all become ``<unk>``, a frequent and therefore cheap token, so
a perplexity even goes *down*.  ``b2b-preprocess`` therefore writes a small record beside every
``dict.txt`` it makes (``data-bin/`` and the ``--output`` folder)::

    dict.codes.json   {"format": 1, "dict_sha256": ..., "codes_sha256": ...}

and ``b2b-eval-lm`` / ``b2b-preprocess corpus --srcdict`` refuse codes whose sha256 is not the
recorded one.  A dictionary without a record (imported from HuggingFace, a data-bin made before
the record existed, or a record about another ``dict.txt``) can only be judged by its effect: the
share of the data's BPE units it lacks, warned about above :data:`UNKNOWN_WARN_RATE`.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Set, Tuple

from .steps import DataError, file_digest, sync, temp_name

RECORD_NAME = "dict.codes.json"
RECORD_FORMAT = 1
# Warn above 5% unknown BPE units.  Measured with b2b-eval-lm's preprocessing (PTB / WikiText-2
# valid, their <unk> words aside): a dictionary with its own codes lacks 0.63% / 1.20% (built-in
# corpus, 8000 merges) or 0.69% / 5.93% (the 6000-line test corpus, 2000 merges: no digits, no '@');
# the test dictionary with the built-in corpus's codes lacks 22.2% / 27.4%, with the codes of
# another 15,000 lines 12.2% / 17.0% (issue 13 saw 17.7% and 30.8%).  5% is above every pair of a
# real-size vocabulary and below every gross mismatch.  A small rate proves nothing (a large
# dictionary with a smaller vocabulary's codes lacked only 1.3-2.4%): the record is the real check.
UNKNOWN_WARN_RATE = 0.05


class CodesMismatch(DataError):
    """The BPE codes given are not the ones recorded for the dictionary."""


def record_path(dict_path) -> Path:
    """Where the record of ``dict_path`` lives: beside it."""
    return Path(dict_path).with_name(RECORD_NAME)


def make_record(dict_path, codes_path) -> dict:
    return {"format": RECORD_FORMAT, "dict_sha256": file_digest(Path(dict_path)),
            "codes_sha256": file_digest(Path(codes_path))}


def write_record(dict_path, codes_path) -> Path:
    """Record ``codes_path`` as the codes of ``dict_path`` (written to a temporary name, then renamed)."""
    path = record_path(dict_path)
    tmp = temp_name(path)
    tmp.write_text(json.dumps(make_record(dict_path, codes_path), sort_keys=True) + "\n", encoding="utf-8")
    sync(tmp)
    os.replace(tmp, path)
    return path


def read_record(dict_path) -> Optional[dict]:
    """The record beside ``dict_path`` if there is one about this very dictionary, else None."""
    try:
        record = json.loads(record_path(dict_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or not record.get("codes_sha256"):
        return None
    if record.get("dict_sha256") != file_digest(Path(dict_path)):
        return None  # a record left beside a replaced dict.txt says nothing about this one
    return record


@dataclass(frozen=True)
class PairCheck:
    """The outcome of :func:`check_pair`: ``kind`` is ``"recorded"`` (the codes' digest equals
    the recorded one) or ``"unknown-rate"`` (no record: only the unknown rate can tell)."""

    kind: str
    dict_path: str
    codes_path: str
    codes_sha256: str
    record: Optional[str] = None


def check_pair(dict_path, codes_path, dict_flag: str, codes_flag: str, fix: str) -> PairCheck:
    """Refuse ``codes_path`` when ``dict_path`` records other codes (:class:`CodesMismatch`, one
    line naming both files and ``fix``); otherwise say which check applies."""
    codes_sha = file_digest(Path(codes_path))
    record = read_record(dict_path)
    if record is None:
        return PairCheck("unknown-rate", str(dict_path), str(codes_path), codes_sha)
    where = record_path(dict_path)
    if record["codes_sha256"] != codes_sha:
        raise CodesMismatch(
            f"{codes_flag} {codes_path} is not the BPE codes of {dict_flag} dictionary {dict_path}: {where} records "
            f"codes with sha256 {record['codes_sha256'][:12]}, {codes_path} has {codes_sha[:12]} (with other codes "
            f"the text becomes <unk>s); {fix}")
    return PairCheck("recorded", str(dict_path), str(codes_path), codes_sha, str(where))


def known_symbols(dict_path) -> Set[str]:
    """The symbols of a fairseq dictionary, specials included."""
    from fairseq.data import Dictionary

    return set(Dictionary.load(str(dict_path)).indices)


def count_unknown(lines: Iterable[str], known: Set[str]) -> Tuple[int, int]:
    """(BPE units in ``lines``, how many of them are not in ``known``)."""
    units = unknown = 0
    for line in lines:
        for unit in line.split():
            units += 1
            unknown += unit not in known
    return units, unknown


def unknown_warning(check: PairCheck, rates: Dict[str, float], what: str, fix: str) -> Optional[str]:
    """The one-line warning for a dictionary without record whose unknown rate on some of
    ``rates`` (name -> share of unknown BPE units) is above the threshold; None otherwise."""
    if check.kind != "unknown-rate" or not rates:
        return None
    name, worst = max(rates.items(), key=lambda kv: kv[1])
    if worst <= UNKNOWN_WARN_RATE:
        return None
    return (f"{check.dict_path} has no record of its BPE codes ({RECORD_NAME}) and lacks {100 * worst:.1f}% of the "
            f"BPE units of {name} (split with {check.codes_path}; {what}; warned above "
            f"{100 * UNKNOWN_WARN_RATE:g}%): {fix}")


def summary(check: PairCheck, rates: Dict[str, float]) -> dict:
    """Which check ran and what it saw, for a command's report."""
    worst = max(rates.values()) if rates else None
    if check.kind == "recorded":
        text = f"codes sha256 {check.codes_sha256[:12]} = the one recorded in {check.record}"
    else:
        text = (f"no {RECORD_NAME} beside {check.dict_path}: unknown BPE units measured, "
                + ("none to measure" if worst is None else f"at most {100 * worst:.2f}%")
                + f" (warning above {100 * UNKNOWN_WARN_RATE:g}%)")
    return {"check": check.kind, "dict": check.dict_path, "codes": check.codes_path,
            "codes_sha256": check.codes_sha256, "record": check.record, "warn_above": UNKNOWN_WARN_RATE,
            "max_unknown_rate": worst,
            "warned": check.kind == "unknown-rate" and worst is not None and worst > UNKNOWN_WARN_RATE,
            "summary": text}


# ---------------------------------------------------------------- the two commands' use

EVAL_FIX = "pass --codes the bpe.codes of the b2b-preprocess run that made --data (the file beside its data-bin/)"
NO_RECORD_HINT = "; if they are the right codes, the text has characters the dictionary's corpus never had"
PREPROCESS_FIX = ("pass the bpe.codes of the b2b-preprocess run that wrote --srcdict (beside it), or drop --srcdict "
                  "and --codes to learn a vocabulary for this corpus")


def check_eval_pair(dict_path, codes_path) -> Optional[PairCheck]:
    """b2b-eval-lm's check of ``--data``'s dict.txt against ``--codes``; None when either file
    is missing (the command's own checks name it)."""
    if not Path(dict_path).is_file() or not Path(codes_path).is_file():
        return None
    return check_pair(dict_path, codes_path, "--data", "--codes", EVAL_FIX)


def eval_check_report(check: Optional[PairCheck], rates: Dict[str, float], prog: str) -> Optional[dict]:
    """After scoring: warn (one line, stderr) about a dictionary without record whose unknown
    rate is above the threshold, and return the check's summary for the report."""
    if check is None:
        return None
    warning = unknown_warning(check, rates, "scored as <unk>, which makes the perplexity look better",
                              "check the codes: " + EVAL_FIX + NO_RECORD_HINT)
    if warning:
        print(f"{prog}: warning: {warning}", file=sys.stderr, flush=True)
    return summary(check, rates)
