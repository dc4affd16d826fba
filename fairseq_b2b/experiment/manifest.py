"""``experiment.json``: which run is which method, seed and report group, for ``b2b-report``."""
from __future__ import annotations

import os

from .plan import shape_source_run
from .presets import GROWTH_METHODS, Preset, for_family


def manifest(preset: Preset, runs: list, data_bin: str) -> dict:
    """experiment.json: which run is which method (and seed), for b2b-report."""
    groups = []
    everything = preset
    for family in dict.fromkeys(r.family for r in runs):
        preset = for_family(everything, family)
        for group_name in dict.fromkeys(r.group for r in runs if r.family == family):
            mine = [r for r in runs if r.family == family and r.group == group_name and not r.label.startswith("source")]
            src, tgt = getattr(preset, f"{family}_source"), getattr(preset, f"{family}_target")
            source_run = f"{family}_source"
            for shape_ab in preset.shape_ablations.get(family, []):
                if group_name == f"shape:{shape_ab.name}":
                    src, tgt = list(shape_ab.source), list(shape_ab.target)
                    source_run = shape_source_run(family, shape_ab, preset)
            runs_by_label: dict = {}
            for r in mine:
                label = "scratch" if r.label.startswith("scratch") else r.label
                runs_by_label.setdefault(label, {})[str(r.seed)] = os.path.join("runs", r.name)
            budget = "" if group_name == "main" else (f", {group_name.split(':')[1]}" if group_name.startswith("shape:")
                                                       else f", target budget {group_name.split(':')[1]} epochs")
            group = {
                "family": family, "name": group_name,
                "title": f"{family.upper()}: S{shape_label(src, family)} -> T{shape_label(tgt, family)} "
                         f"({preset.name} preset{budget})",
                "scratch": "scratch", "runs": runs_by_label, "seeds": [str(s) for s in preset.seeds],
                "source_run": os.path.join("runs", source_run),
                "sources": {r.label: os.path.join("runs", r.source) for r in mine if r.source},
                "charged_source": sorted({r.label for r in mine if r.source}),
                "growth_reports": {label: os.path.join("growth", f"{family}_{m}.json")
                                   for label, m in GROWTH_METHODS.items()} if group_name == "main" else {},
                "title_suffix": f" ({preset.name} preset{budget})",
            }
            if group_name == "main":
                group["attention"] = {"data": data_bin, "sentence": preset.sentence,
                                      "codes": os.path.join(os.path.dirname(data_bin), "bpe.codes"),
                                      "models": attention_models(family, mine)}
                ablation = {"0": "AKI", str(preset.submodel_epochs): "bert2BERT"}
                ablation.update({str(eb): f"bert2BERT (Eb={eb})" for eb in preset.ablation_eb if eb > 0
                                 and eb != preset.submodel_epochs})
                if any(r.label == "bert2BERT" for r in mine):
                    group["ablation_eb"] = ablation
            groups.append(group)
    return {"preset": everything.name, "description": everything.description, "data": data_bin, "groups": groups}


def attention_models(family: str, runs: list) -> dict:
    """The paper's Figure 2 in miniature: the trained source, AKI right after growth, and the
    *trained* targets of scratch and the growth methods (first seed), as checkpoint paths."""
    models = {"source (trained)": os.path.join("runs", f"{family}_source", "checkpoint_last.pt"),
              "AKI at growth": os.path.join("growth", f"{family}_aki.pt")}
    for label in ("scratch", "FPI", "AKI", "bert2BERT"):
        run = next((r for r in runs if r.label == label and r.group == "main"), None)
        if run is not None:
            models[f"{label} (trained)"] = os.path.join("runs", run.name, "checkpoint_last.pt")
    return models


def shape_label(shape: list, family: str) -> str:
    """``(L=4, D=128, FFN=512, heads=4)`` from an arch and its overrides (the arch's name when it
    sets them itself)."""
    side = "encoder" if family == "bert" else "decoder"
    keys = (("L", "layers"), ("D", "embed-dim"), ("FFN", "ffn-embed-dim"), ("heads", "attention-heads"))
    if not all(f"--{side}-{opt}" in shape for _, opt in keys):
        return f"({' '.join(shape)})"
    if f"--{side}-kv-heads" in shape:  # grouped-query attention (LLaMA)
        keys += (("kv-heads", "kv-heads"),)
    return "(" + ", ".join(f"{k}={shape[shape.index(f'--{side}-{opt}') + 1]}" for k, opt in keys) + ")"
