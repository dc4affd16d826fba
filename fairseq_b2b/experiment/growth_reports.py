"""Table 1 of an experiment: the trained source grown with every width method, evaluated before
any training (``growth/<family>_<method>.json``)."""
from __future__ import annotations

import json
import os

from ..growth_eval import evaluate_fpi_variants, evaluate_growth
from ..grow_checkpoint import grow_checkpoint
from .presets import GROWTH_METHODS, Preset, for_family
from .training_run import say


def grow_reports(root: str, data_bin: str, preset: Preset, family: str) -> None:
    """Table 1: the source grown with every width method, evaluated before any training."""
    preset = for_family(preset, family)
    source = os.path.join(root, "runs", f"{family}_source", "checkpoint_last.pt")
    arch, *over = getattr(preset, f"{family}_target")
    os.makedirs(os.path.join(root, "growth"), exist_ok=True)
    for label, method in GROWTH_METHODS.items():
        out = os.path.join(root, "growth", f"{family}_{method}.pt")
        report_path = out[:-3] + ".json"
        if os.path.exists(report_path):
            continue
        report = grow_checkpoint(source, arch, method, False, preset.seeds[0], out, data_bin, over)
        report.update(evaluate_growth(source, out, data_bin))
        report.update(evaluate_fpi_variants(report, source, arch, preset.seeds[0], data_bin, over))
        with open(report_path + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(report_path + ".tmp", report_path)
        say(f"[{family}/Table 1] {label}: source loss {report['source_loss']:.3f} -> "
             f"{report['grown_loss']:.3f} right after growth")
