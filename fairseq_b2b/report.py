"""The paper's metric from fairseq's json logs: training FLOPs until a method's loss first
reaches the loss that training from scratch ends at, and the saving (Tables 2-5, Figure 1).

Pure Python (plots need matplotlib).  A run is read from the json lines fairseq writes with
``--log-format json`` (``--log-file`` or captured stderr): ``train_inner`` records carry the
loss averaged over the last ``--log-interval`` updates and the cumulative ``train_flops``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

FLOPS_KEYS = ("train_flops", "flops")


@dataclass
class Curve:
    """Loss against cumulative training FLOPs (and updates) of one run."""

    name: str
    flops: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    updates: list = field(default_factory=list)
    valid_loss: list = field(default_factory=list)  # (flops, loss) at each validation
    log_interval: int | None = None

    @property
    def final_loss(self) -> float | None:
        return self.loss[-1] if self.loss else None

    @property
    def total_flops(self) -> float:
        return self.flops[-1] if self.flops else 0.0


def _records(path: str):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            start = line.find("{")
            if start < 0 or '"loss"' not in line and "_loss" not in line:
                continue
            try:
                record = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def _flops(record: dict):
    for key in FLOPS_KEYS:
        for prefix in ("", "train_", "valid_"):
            if prefix + key in record:
                return float(record[prefix + key])
    return None


def read_curve(path: str, name: str | None = None) -> Curve:
    """A Curve from a fairseq json log; training points are ``train_inner`` records."""
    curve = Curve(name or os.path.basename(os.path.dirname(os.path.abspath(path))))
    last_flops = 0.0
    for record in _records(path):
        flops = _flops(record)
        if "valid_loss" in record:
            curve.valid_loss.append((flops if flops is not None else last_flops, float(record["valid_loss"])))
        elif "loss" in record and "num_updates" in record and flops is not None:
            updates = int(record["num_updates"])
            if curve.updates and updates <= curve.updates[-1]:
                # a resumed run logs again from its checkpoint: keep the later records
                keep = [i for i, u in enumerate(curve.updates) if u < updates]
                curve.flops, curve.loss, curve.updates = ([s[i] for i in keep] for s in (curve.flops, curve.loss, curve.updates))
            curve.flops.append(flops)
            curve.loss.append(float(record["loss"]))
            curve.updates.append(updates)
            last_flops = flops
    if len(curve.updates) > 1:
        curve.log_interval = curve.updates[1] - curve.updates[0]
    return curve


def flops_to_reach(curve: Curve, target: float) -> float | None:
    """FLOPs at which ``curve`` first reaches ``target`` (linear interpolation between the
    two logged points around the crossing); None if it never does."""
    for i, loss in enumerate(curve.loss):
        if loss <= target:
            if i == 0:
                return curve.flops[0]
            f0, f1, l0 = curve.flops[i - 1], curve.flops[i], curve.loss[i - 1]
            return f0 + (l0 - target) / (l0 - loss) * (f1 - f0)
    return None


def savings(curves: dict, scratch: str = "scratch", source_flops: dict | None = None) -> dict:
    """Per method: ``flops_to_target``, ``saving`` = 1 - F/F_scratch and ``saving_with_source``
    (the source model's own training FLOPs charged too); None where never reached."""
    if scratch not in curves or not curves[scratch].loss:
        raise ValueError(f"no '{scratch}' run with logged losses: the target loss is the scratch run's final loss")
    target = curves[scratch].final_loss
    reference = flops_to_reach(curves[scratch], target)
    source_flops = source_flops or {}
    out = {"target_loss": target, "scratch_flops_to_target": reference, "methods": {}}
    for name, curve in curves.items():
        reached = flops_to_reach(curve, target)
        charged = source_flops.get(name, 0.0)
        out["methods"][name] = {
            "flops_to_target": reached,
            "saving": None if reached is None else 1.0 - reached / reference,
            "saving_with_source": None if reached is None else 1.0 - (reached + charged) / reference,
            "source_flops": charged,
            "final_loss": curve.final_loss,
            "total_flops": curve.total_flops,
            "log_interval": curve.log_interval,
        }
    return out


def _pct(x) -> str:
    return "never reached" if x is None else f"{100 * x:.1f}%"


def markdown_table(result: dict) -> str:
    lines = ["| method | FLOPs to target | saving | saving incl. source | final loss |", "|---|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        flops = "never reached" if m["flops_to_target"] is None else f"{m['flops_to_target']:.3e}"
        final = "-" if m["final_loss"] is None else f"{m['final_loss']:.3f}"
        lines.append(f"| {name} | {flops} | {_pct(m['saving'])} | {_pct(m['saving_with_source'])} | {final} |")
    intervals = sorted({m["log_interval"] for m in result["methods"].values() if m["log_interval"]})
    lines.append("")
    lines.append(f"target loss (scratch's final training loss, bits): {result['target_loss']:.4f}; "
                 f"losses logged every {', '.join(map(str, intervals)) or '?'} updates (fairseq --log-interval), "
                 "crossings interpolated linearly between logged points")
    return "\n".join(lines)


def plot_curves(curves: dict, path: str, target: float | None = None, title: str = "") -> None:
    """Figure 1: training loss against training FLOPs for every method."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        if curve.loss:
            ax.plot(curve.flops, curve.loss, label=name, linewidth=1.2)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="scratch final loss")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("training loss (bits)")
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(title or "loss vs FLOPs", 70)), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
