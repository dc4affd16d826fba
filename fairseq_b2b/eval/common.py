"""Pieces shared by ``b2b-eval-lm`` and ``b2b-glue``.

Evaluation text must go through exactly the pre-training preprocessing (the data package's
Moses tokenization and fastBPE codes, :func:`fairseq_b2b.data.apply_to_file`) and be
binarized with the pre-training dictionary (``fairseq-preprocess --srcdict``), so that the
model sees the same units it was trained on.  BPE units the dictionary lacks become ``<unk>``;
they are counted here, not silently absorbed.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import B2BError
from ..fairseq_args import option


class EvalError(B2BError):
    """Bad input to an evaluation command; the message is one line and names the fix."""


# ------------------------------------------------------------------------------ text files

def read_lines(path) -> List[str]:
    """The lines of a UTF-8 text file (universal newlines, undecodable bytes replaced).

    A final newline does not start another line; every other line counts, blank ones too.
    """
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def is_blank(line: str) -> bool:
    """Blank as the data pipeline sees it: nothing but whitespace and byte-order marks."""
    return not line.replace("\ufeff", "").strip()


def check_text_file(path, what: str) -> None:
    """One-line errors for a missing, unreadable or empty (no text) input file."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"{what} not found: {p}")
    if not os.access(p, os.R_OK):
        raise EvalError(f"{what} is not readable: {p}")
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if block.replace(b"\xef\xbb\xbf", b"").strip():
                return
    raise EvalError(f"{what} is empty (no text): {p}")


# ------------------------------------------------------------------------------ tokenize + BPE

def bpe_lines(lines: Sequence[str], codes, workdir, workers: int = 1, pretokenized: bool = False,
              verbose: bool = False) -> List[str]:
    """Each line Moses-tokenized and BPE-split as the pre-training corpus was, through the data
    package's line-aligned :func:`~fairseq_b2b.data.apply_to_file`: line ``i`` of the result is
    line ``i`` of the input, blank lines (and lines with nothing to tokenize) stay blank."""
    from ..data import DataError, apply_to_file

    if not any(not is_blank(line) for line in lines):
        return [""] * len(lines)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    raw, bpe = workdir / "raw.txt", workdir / "bpe.txt"
    with open(raw, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line.replace("\n", " ") + "\n")
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(sys.stderr if verbose else log):
            apply_to_file(Path(codes), raw, bpe, workers=workers, pretokenized=pretokenized)
    except DataError as e:
        raise EvalError(str(e)) from None
    done = read_lines(bpe)
    if len(done) != len(lines):  # the data package promises alignment; never score misaligned text
        raise EvalError(f"tokenization gave {len(done)} lines for the {len(lines)} of {raw}")
    for p in (raw, bpe):
        p.unlink()
    return done


def count_unknowns(lines: Iterable[str], dictionary) -> Tuple[int, Counter]:
    """(BPE units in all lines, Counter of the units the dictionary lacks -> ``<unk>``)."""
    total, unknown = 0, Counter()
    indices = dictionary.indices
    for line in lines:
        for unit in line.split():
            total += 1
            if unit not in indices:
                unknown[unit] += 1
    return total, unknown


def unknown_summary(unknown: Counter, limit: int = 8) -> str:
    """``'日@@' x3, '本' x2, ...`` for the most frequent unknown units."""
    parts = [f"{unit!r} x{n}" for unit, n in unknown.most_common(limit)]
    more = len(unknown) - limit
    return ", ".join(parts) + (f", ... ({more} more types)" if more > 0 else "")


# ------------------------------------------------------------------------------ binarize

def fairseq_preprocess(destdir, srcdict=None, workers: int = 1, **prefs) -> List[str]:
    """``fairseq-preprocess --only-source`` (prefs: trainpref=, validpref=, testpref=) into
    ``destdir``, in this process (:mod:`fairseq_b2b.data.binarize`); returns its command line.
    One-line error with fairseq's last words on failure."""
    from ..data.binarize import BinarizeError, fairseq_preprocess as run_preprocess, move_log, only_source_argv

    argv = only_source_argv(destdir, srcdict, workers, **prefs)
    try:
        run_preprocess(argv)
    except BinarizeError as e:
        raise EvalError(f"fairseq-preprocess failed: {e}") from None
    move_log(destdir, None)
    return ["fairseq-preprocess"] + argv


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# ------------------------------------------------------------------------------ checkpoints

def checkpoint_summary(path) -> Dict:
    """What the evaluation commands need from a checkpoint, without building the model:
    ``{"family", "model_args", "task_args", "vocab", "checksum"}``.  One-line errors."""
    import fairseq_b2b  # noqa: F401  (safe globals for the Namespace in the checkpoint)

    from ..growth.layout import detect_family
    from ..growth_hook import checkpoint_model_args, load_checkpoint

    state = load_checkpoint(str(path))
    try:
        layout = detect_family(state["model"])
    except ValueError as e:
        raise EvalError(f"checkpoint '{path}': {e}") from None
    cfg = state.get("cfg") or {}
    task_args = cfg.get("task") if cfg else None
    model_args = checkpoint_model_args(state)
    return {
        "family": layout.family,
        "model_args": model_args,
        "task_args": task_args if task_args is not None else state.get("args"),
        "vocab": int(state["model"][layout.embed_tokens].shape[0]),
        "checksum": option(model_args, "b2b_dictionary_checksum"),
        "heads": sorted({k.split(".")[1] for k in state["model"] if k.startswith("classification_heads.")}),
    }


def check_dictionary(summary: Dict, dict_path, ckpt, prog_hint: str, add_mask: bool = False):
    """The fairseq Dictionary at ``dict_path``; a one-line error when it is not the one the
    checkpoint was trained with (symbol count and, for b2b models, the symbols' checksum)."""
    from fairseq.data import Dictionary

    from ..models.common import dictionary_checksum

    if not os.path.isfile(dict_path):
        raise EvalError(f"dictionary not found: {dict_path} ({prog_hint})")
    try:
        dictionary = Dictionary.load(str(dict_path))
    except Exception as e:  # fairseq raises ValueError/RuntimeError on malformed lines
        raise EvalError(f"{dict_path} is not a fairseq dictionary: {str(e).splitlines()[0][:200]}") from None
    model_view = Dictionary.load(str(dict_path))
    if add_mask:
        model_view.add_symbol("<mask>")
    checksum = dictionary_checksum(model_view)
    if len(model_view) != summary["vocab"] or (summary["checksum"] and summary["checksum"] != checksum):
        raise EvalError(f"{dict_path} ({len(model_view)} symbols, checksum {checksum}) is not the dictionary "
                        f"{ckpt} was trained with ({summary['vocab']} symbols"
                        f"{', checksum ' + summary['checksum'] if summary['checksum'] else ''}): {prog_hint}")
    return dictionary


def atomic_write(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def fmt_cmd(cmd: Sequence[str]) -> str:
    import shlex

    return " ".join(shlex.quote(str(c)) for c in cmd)


# model options passed explicitly, so a checkpoint grown or trained with overrides keeps its shape
MODEL_KEYS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
              "activation_fn", "encoder_normalize_before", "layernorm_eps", "untie_weights_roberta")


def finetune_argv(data: Path, task: str, criterion: str, ckpt, summary: Dict) -> List[str]:
    """fairseq-train's first arguments for fine-tuning ``ckpt``: its data, task and criterion, the
    checkpoint restored with fresh optimizer, data loader and meters, and its arch and shape."""
    cmd = [str(data), "--task", task, "--criterion", criterion,
           "--restore-file", str(ckpt), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
           "--arch", summary["arch"]]
    for key in MODEL_KEYS:
        value = option(summary["model_args"], key)
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        cmd += ([flag] if value else []) if isinstance(value, bool) else [flag, str(value)]
    return cmd


def device_flags(cpu: Optional[bool]) -> List[str]:
    """``--cpu`` when asked for, or when no CUDA device exists."""
    import torch

    return ["--cpu"] if cpu or not torch.cuda.is_available() else []
