"""The paper's metric from fairseq's json logs: training FLOPs until a method's *full-model
validation loss* first reaches the validation loss that training from scratch ends at, and
the saving (Tables 2-5, Figure 1).

Pure Python (plots need matplotlib).  A run is read from the json lines fairseq writes with
``--log-format json`` (``--log-file`` or captured stderr):

* validation records (``valid_loss``, ``valid_num_updates``, ``valid_train_flops``) are the
  metric: the loss of the model a user could keep, on a fixed valid subset, placed on the FLOPs
  axis by the training FLOPs spent so far (validation FLOPs are not training FLOPs).  The
  record at update 0 (``--validate-at-start``) is the loss right after growth;
* ``train_inner`` records (training loss averaged over ``--log-interval`` updates) are kept for
  the plots only: during bert2BERT's stage 1 they average shallower sub-models, not a model
  anyone keeps.

FLOPs-to-target: the first validation point at or below the target, interpolated linearly
between that point and the one before it.  The target is scratch's *final* validation loss and
scratch's reference FLOPs are those of its last validation point.  A method whose update-0
loss is already at or below the target is "at start": the comparison then measures where runs
start, not how fast they converge, and no percentage is given.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

FLOPS_KEYS = ("train_flops", "flops")
METRIC = "valid_loss"
#: scratch must end at least this much (bits) below the source for a convergence comparison
CLEARLY_BETTER_BITS = 0.1


@dataclass
class Curve:
    """Training and validation loss against cumulative training FLOPs (and updates) of one run."""

    name: str
    flops: list = field(default_factory=list)  # train_inner points
    loss: list = field(default_factory=list)
    updates: list = field(default_factory=list)
    valid: list = field(default_factory=list)  # (updates, flops, loss), sorted by updates
    log_interval: int | None = None

    @property
    def valid_loss(self) -> list:
        """(flops, loss) of every validation point."""
        return [(f, v) for _, f, v in self.valid]

    @property
    def final_loss(self) -> float | None:
        """The last logged training loss (averaged over the log interval)."""
        return self.loss[-1] if self.loss else None

    @property
    def final_valid_loss(self) -> float | None:
        return self.valid[-1][2] if self.valid else None

    @property
    def initial_valid_loss(self) -> float | None:
        """The validation loss at update 0 (right after growth), if the run logged one."""
        return self.valid[0][2] if self.valid and self.valid[0][0] == 0 else None

    @property
    def total_flops(self) -> float:
        last_train = self.flops[-1] if self.flops else 0.0
        last_valid = self.valid[-1][1] if self.valid else 0.0
        return max(last_train, last_valid)

    @property
    def valid_interval(self) -> int | None:
        ups = [u for u, _, _ in self.valid if u > 0]
        gaps = sorted(b - a for a, b in zip(ups, ups[1:]) if b > a)
        return gaps[len(gaps) // 2] if gaps else None


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


def _truncate_from(seq_updates: list, updates: int) -> list:
    return [i for i, u in enumerate(seq_updates) if u < updates]


def read_curve(path: str, name: str | None = None, valid_subset: str = "valid") -> Curve:
    """A Curve from a fairseq json log.  A resumed run logs again from its checkpoint: the later
    records replace the earlier ones from that update on."""
    curve = Curve(name or os.path.basename(os.path.dirname(os.path.abspath(path))))
    last_flops, last_updates = 0.0, 0
    loss_key, updates_key = f"{valid_subset}_loss", f"{valid_subset}_num_updates"
    for record in _records(path):
        flops = _flops(record)
        if loss_key in record:
            updates = int(float(record.get(updates_key, last_updates)))
            point = (updates, flops if flops is not None else last_flops, float(record[loss_key]))
            keep = [p for p in curve.valid if p[0] < updates]
            curve.valid = keep + [point]
        elif "loss" in record and "num_updates" in record and flops is not None:
            updates = int(record["num_updates"])
            if curve.updates and updates <= curve.updates[-1]:
                keep = _truncate_from(curve.updates, updates)
                curve.flops, curve.loss, curve.updates = ([s[i] for i in keep] for s in (curve.flops, curve.loss, curve.updates))
            curve.flops.append(flops)
            curve.loss.append(float(record["loss"]))
            curve.updates.append(updates)
            last_flops, last_updates = flops, updates
    if len(curve.updates) > 1:
        curve.log_interval = curve.updates[1] - curve.updates[0]
    return curve


def first_crossing(points: list, target: float) -> float | None:
    """FLOPs at which a sequence of (flops, loss) points first reaches ``target``, interpolated
    linearly between the crossing point and the one before it; None if it never does."""
    for i, (flops, loss) in enumerate(points):
        if loss <= target:
            if i == 0:
                return flops
            f0, l0 = points[i - 1]
            return f0 + (l0 - target) / (l0 - loss) * (flops - f0)
    return None


def flops_to_reach(curve: Curve, target: float, metric: str = METRIC) -> float | None:
    """FLOPs at which ``curve`` first reaches ``target`` on its validation loss (``metric``
    "valid_loss", the default) or on its logged training loss ("train_loss", plots only)."""
    if metric == METRIC:
        return first_crossing(curve.valid_loss, target)
    return first_crossing(list(zip(curve.flops, curve.loss)), target)


def _method_result(curve: Curve, target: float, reference: float, charged: float, grown: bool) -> dict:
    initial = curve.initial_valid_loss if grown else None
    at_start = initial is not None and initial <= target
    reached = None if at_start else flops_to_reach(curve, target)
    return {
        "flops_to_target": reached,
        "saving": None if reached is None else 1.0 - reached / reference,
        "saving_with_source": None if reached is None else 1.0 - (reached + charged) / reference,
        "reached_at_start": at_start,
        "initial_valid_loss": initial,
        "final_valid_loss": curve.final_valid_loss,
        "final_loss": curve.final_loss,
        "source_flops": charged,
        "total_flops": curve.total_flops,
        "valid_points": len(curve.valid),
        "valid_interval": curve.valid_interval,
        "log_interval": curve.log_interval,
    }


def savings(curves: dict, scratch: str = "scratch", source_flops: dict | None = None,
            grown: set | None = None, source_valid_loss: float | None = None) -> dict:
    """Per method: ``flops_to_target``, ``saving`` = 1 - F/F_scratch and ``saving_with_source``
    (the source model's own training FLOPs charged too), None where never reached or reached at
    start; ``grown`` names the runs that start from a grown model (their update-0 validation is
    ``initial_valid_loss``; default: every run charged a source)."""
    if scratch not in curves or not curves[scratch].valid:
        raise ValueError(f"no '{scratch}' run with validation losses: the target is the scratch run's final "
                         "validation loss (train with --validate-interval-updates N and --log-format json)")
    source_flops = source_flops or {}
    grown = set(source_flops) if grown is None else set(grown)
    ref_curve = curves[scratch]
    target = ref_curve.final_valid_loss
    reference = ref_curve.valid[-1][1]
    if not reference:
        raise ValueError(f"the '{scratch}' run's validation records carry no train_flops: train with a b2b_ task")
    out = {"metric": METRIC, "target_loss": target, "scratch_flops_to_target": reference,
           "source_valid_loss": source_valid_loss, "methods": {}}
    for name, curve in curves.items():
        out["methods"][name] = _method_result(curve, target, reference, source_flops.get(name, 0.0), name in grown)
    out["methods"][scratch]["saving"] = 0.0
    out["methods"][scratch]["saving_with_source"] = 0.0
    out["methods"][scratch]["flops_to_target"] = reference
    out["at_start"] = sorted(n for n, m in out["methods"].items() if m["reached_at_start"])
    out["degenerate"] = degenerate_reason(out)
    return out


def _mean_sd(values: list) -> tuple:
    """Mean and sample sd (None for a single value: one seed has no spread to report)."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, sd


def savings_over_seeds(per_seed: dict, scratch: str = "scratch", source_flops: dict | None = None,
                       grown: set | None = None, source_valid_loss: float | None = None) -> dict:
    """Savings with several seeds: ``per_seed`` maps seed -> {method: Curve}; each seed's methods
    are measured against that seed's scratch run (same data order), then aggregated.  A method's
    ``saving`` is the mean over seeds (``saving_sd`` the sample sd) when every seed reached the
    target; otherwise None, with the count in ``seeds_reached``."""
    results = {seed: savings(curves, scratch, source_flops, grown, source_valid_loss)
               for seed, curves in sorted(per_seed.items())}
    names = list(dict.fromkeys(n for r in results.values() for n in r["methods"]))
    out = {"metric": METRIC, "seeds": sorted(results), "source_valid_loss": source_valid_loss, "methods": {},
           "per_seed": {str(s): r for s, r in results.items()}}
    targets = [r["target_loss"] for r in results.values()]
    out["target_loss"], out["target_loss_sd"] = _mean_sd(targets)
    out["scratch_flops_to_target"] = _mean_sd([r["scratch_flops_to_target"] for r in results.values()])[0]
    for name in names:
        rows = [r["methods"][name] for r in results.values() if name in r["methods"]]
        m = {"seeds": [s for s, r in results.items() if name in r["methods"]], "runs": len(rows)}
        at_start = [row["reached_at_start"] for row in rows]
        m["reached_at_start"] = all(at_start)
        m["seeds_at_start"] = sum(at_start)
        reached = [row for row in rows if row["saving"] is not None]
        m["seeds_reached"] = len(reached)
        for key in ("saving", "saving_with_source", "flops_to_target"):
            if len(reached) == len(rows) and rows:
                m[key], m[f"{key}_sd"] = _mean_sd([row[key] for row in rows])
            else:
                m[key], m[f"{key}_sd"] = None, None
        for key in ("initial_valid_loss", "final_valid_loss", "final_loss", "total_flops"):
            vals = [row[key] for row in rows if row[key] is not None]
            m[key], m[f"{key}_sd"] = _mean_sd(vals) if vals else (None, None)
        m["source_flops"] = rows[0]["source_flops"] if rows else 0.0
        m["valid_interval"] = rows[0]["valid_interval"] if rows else None
        m["valid_points"] = min(row["valid_points"] for row in rows) if rows else 0
        m["log_interval"] = rows[0]["log_interval"] if rows else None
        out["methods"][name] = m
    out["saving_sd"] = {n: m["saving_sd"] for n, m in out["methods"].items()}
    out["at_start"] = sorted(n for n, m in out["methods"].items() if m["seeds_at_start"])
    out["degenerate"] = degenerate_reason(out)
    return out


def degenerate_reason(result: dict) -> str | None:
    """One line when the comparison cannot measure convergence (None when it can)."""
    reasons = []
    if result.get("at_start"):
        reasons.append(f"{', '.join(result['at_start'])} already start at or below scratch's final validation loss")
    src, target = result.get("source_valid_loss"), result.get("target_loss")
    if src is not None and target is not None and target > src - CLEARLY_BETTER_BITS:
        reasons.append(f"scratch ends at {target:.3f} bits, not clearly better than the source's {src:.3f} "
                       f"(needs at least {CLEARLY_BETTER_BITS} bits below)")
    if not reasons:
        return None
    return ("scratch's budget is too small for a convergence comparison: " + "; ".join(reasons) +
            " - scratch must end clearly better than the source (train longer, or a larger target)")


def _pct(x, sd=None) -> str:
    if x is None:
        return "never reached"
    return f"{100 * x:.1f}%" if sd is None else f"{100 * x:.1f} ± {100 * sd:.1f}%"


def _cell(m: dict, key: str) -> str:
    if m.get("reached_at_start"):
        return "at start"
    if m.get("seeds_at_start"):
        return f"at start in {m['seeds_at_start']}/{m['runs']} seeds"
    if m.get(key) is None:
        if "seeds_reached" in m and m["seeds_reached"]:
            return f"reached in {m['seeds_reached']}/{m['runs']} seeds"
        return "never reached"
    return _pct(m[key], m.get(f"{key}_sd"))


def _loss(m: dict, key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    sd = m.get(f"{key}_sd")
    return f"{value:.3f}" if sd is None else f"{value:.3f} ± {sd:.3f}"


def markdown_table(result: dict) -> str:
    seeds = result.get("seeds")
    lines = ["| method | FLOPs to target | saving | saving incl. source | valid loss at start | final valid loss |"
             + (" seeds |" if seeds else ""), "|---|---:|---:|---:|---:|---:|" + ("---:|" if seeds else "")]
    for name, m in result["methods"].items():
        if m.get("reached_at_start") or m.get("seeds_at_start"):
            flops = "at start"
        elif m["flops_to_target"] is None:
            flops = "never reached"
        else:
            flops = f"{m['flops_to_target']:.3e}"
        lines.append(f"| {name} | {flops} | {_cell(m, 'saving')} | {_cell(m, 'saving_with_source')} | "
                     f"{_loss(m, 'initial_valid_loss')} | {_loss(m, 'final_valid_loss')} |"
                     + (f" {m['runs']} |" if seeds else ""))
    intervals = sorted({m["valid_interval"] for m in result["methods"].values() if m.get("valid_interval")})
    points = min((m["valid_points"] for m in result["methods"].values()), default=0)
    lines.append("")
    target = f"{result['target_loss']:.4f}"
    if seeds:
        target += f" ± {result.get('target_loss_sd') or 0:.4f} (mean ± sd over seeds {', '.join(map(str, seeds))}; " \
                  "each seed against its own scratch run)"
    src = result.get("source_valid_loss")
    lines.append(f"metric: full-model validation loss (bits); target = scratch's final validation loss {target}"
                 + (f"; source's final validation loss {src:.4f}" if src is not None else "")
                 + f"; validated every {', '.join(map(str, intervals)) or '?'} updates (>= {points} points per run), "
                 "crossings interpolated linearly between validation points; training FLOPs only")
    if result.get("degenerate"):
        lines.append("")
        lines.append(f"NOTE: {result['degenerate']}")
    return "\n".join(lines)


def plot_curves(curves: dict, path: str, target: float | None = None, title: str = "") -> None:
    """Figure 1: validation loss (markers) and training loss (thin lines) against training FLOPs."""
    import logging
    import textwrap

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i % 10}"
        if curve.loss:
            ax.plot(curve.flops, curve.loss, color=color, linewidth=0.6, alpha=0.35)
        if curve.valid:
            fl, vl = zip(*curve.valid_loss)
            ax.plot(fl, vl, color=color, linewidth=1.4, marker=".", markersize=4, label=name)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="scratch final valid loss")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("loss (bits): valid (markers), train (thin)")
    ax.set_title("\n".join(textwrap.wrap(title or "loss vs FLOPs", 70)), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
