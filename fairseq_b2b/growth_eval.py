"""The paper's Table 1 for one grown checkpoint: the source's and the grown model's valid loss
and their largest logit difference (function preservation), and at a non-integer width ratio
paper FPI beside exact FPI."""
from __future__ import annotations

import os
import tempfile

from .grow_checkpoint import grow_checkpoint


def evaluate_growth(source: str, output: str, data: str, split: str = "valid") -> dict:
    """Table 1: valid loss of source and grown model, and their largest logit difference."""
    from .checkpoints import load_model
    from .evaluate import logits, max_abs_logit_diff, split_loss

    src_model, src_task, src_cfg = load_model(source, data)
    big_model, big_task, big_cfg = load_model(output, data)
    crit_src, crit_big = src_task.build_criterion(src_cfg.criterion), big_task.build_criterion(big_cfg.criterion)
    return {
        "source_loss": split_loss(src_model, src_task, crit_src, split, src_cfg),
        "grown_loss": split_loss(big_model, big_task, crit_big, split, big_cfg),
        "max_abs_logit_diff": max_abs_logit_diff(logits(src_model, src_task, split, src_cfg),
                                                 logits(big_model, big_task, split, big_cfg)),
    }


def evaluate_fpi_variants(report: dict, source: str, arch: str, seed: int, data: str, overrides: list = (),
                          split: str = "valid") -> dict:
    """Table 1 at a non-integer width ratio: paper FPI next to exact FPI (weighted-statistics
    LayerNorm).  ``report`` is the grown checkpoint's (with ``evaluate_growth``'s numbers); the
    other variant is grown into a temporary file and evaluated the same way.  Returns
    ``{"paper_fpi": {...}, "exact_fpi": {...}}`` (loss and max |logit diff| each), or ``{}`` for
    another method or an integer ratio (where paper FPI is exact already)."""
    src_dim, tgt_dim = report.get("embed_dims", (1, 1))
    if report.get("method") != "fpi" or tgt_dim % src_dim == 0:
        return {}
    keys = ("grown_loss", "max_abs_logit_diff")
    own = {k: report[k] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "other.pt")
        grow_checkpoint(source, arch, "fpi", not report["exact"], seed, other, data, overrides)
        other_eval = evaluate_growth(source, other, data, split)
    other = {k: other_eval[k] for k in keys}
    exact, paper = (own, other) if report["exact"] else (other, own)
    return {"paper_fpi": paper, "exact_fpi": exact}
