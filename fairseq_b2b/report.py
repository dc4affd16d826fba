"""The paper's metric from fairseq's json logs: FLOPs to reach scratch's final full-model
validation loss (the *target*), and the saving 1 - F_method / F_scratch (Tables 2-5, Figure 1).

Pure Python (plots need matplotlib).  A run is read from the json lines fairseq writes with
``--log-format json`` (``--log-file`` or captured stderr):

* validation records (``valid_loss``, ``valid_num_updates``, ``valid_train_flops``) are the
  metric: the loss of the model a user could keep, on a fixed valid subset, placed on the FLOPs
  axis by the training FLOPs spent so far (validation FLOPs are not training FLOPs).  The
  record at update 0 (``--validate-at-start``) is the loss right after growth;
* ``train_inner`` records (training loss averaged over ``--log-interval`` updates) are kept for
  the plots only: during bert2BERT's stage 1 they average shallower sub-models, not a model
  anyone keeps;
* fairseq's last line ``done training in X seconds`` marks a finished run (no record after it).

Rules:

* FLOPs to reach scratch's final full-model validation loss: the first validation point at or
  below the target, interpolated linearly from the point before it.  Scratch is measured by the
  same rule on its own curve (a scratch curve that dips below its final loss earlier reaches
  its target there), so an exact copy of scratch saves exactly 0.
* "At start", never a percentage: a grown run whose update-0 loss is at or below the target, or
  that has no update-0 validation and whose first validation point is already at or below it
  (``at_start_reason`` says which).
* Noise floor (two or more scratch seeds): for every ordered pair of scratch seeds (i, j), the
  saving seed i shows by the same rule against seed j's target and FLOPs; the floor is the
  largest positive one (0 if none).  A method's saving is *above noise* only when every one of
  its seeds has a saving and it exceeds the floor; with one scratch seed the floor is unknown.
* Partial: any run without ``done training`` (or the runner's ``DONE``) is listed in
  ``unfinished``; an unfinished scratch has not reached its final loss, which inflates every saving.
* Conditions for a convergence comparison: scratch ends at least ``CLEARLY_BETTER_BITS`` below
  the source, and nobody is at start.  When every run and the source end within ``PLATEAU_BITS``
  (so scratch is not clearly better than the source), the runs sit on a plateau (a note says so;
  none without a source loss).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .json_log import json_record

FLOPS_KEYS = ("train_flops", "flops")
METRIC = "valid_loss"
TARGET = "FLOPs to reach scratch's final full-model validation loss"
#: scratch must end at least this much (bits) below the source for a convergence comparison
CLEARLY_BETTER_BITS = 0.1
#: every run ending within this spread (bits), scratch not clearly better than the source: a plateau
PLATEAU_BITS = 0.1
#: fairseq_cli/train.py's last line
DONE_LINE = "done training in"
NO_UPDATE_0 = "no update-0 validation"
UPDATE_0_BELOW = "update-0 loss at or below target"


@dataclass
class Curve:
    """Training and validation loss against cumulative training FLOPs (and updates) of one run."""

    name: str
    flops: list = field(default_factory=list)  # train_inner points
    loss: list = field(default_factory=list)
    updates: list = field(default_factory=list)
    valid: list = field(default_factory=list)  # (updates, flops, loss), sorted by updates
    log_interval: int | None = None
    run: str = ""  # the run's folder name
    finished: bool | None = None  # the log ends with fairseq's "done training" (None: not read from a log)

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


def _lines(path: str):
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from f


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
    records replace the earlier ones from that update on.  ``finished``: fairseq's "done
    training" line comes after the last record."""
    run = os.path.basename(os.path.dirname(os.path.abspath(path)))
    curve = Curve(name or run, run=run, finished=False)
    last_flops, last_updates = 0.0, 0
    loss_key, updates_key = f"{valid_subset}_loss", f"{valid_subset}_num_updates"
    for line in _lines(path):
        record = json_record(line, '"loss"', "_loss")
        if record is None:
            curve.finished = curve.finished or DONE_LINE in line
            continue
        curve.finished = False  # a record after "done training": the run was resumed
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


def at_start_reason(curve: Curve, target: float) -> str | None:
    """Why a grown run counts as "at start" (None when it does not): its update-0 loss is at or
    below ``target``, or it has no update-0 validation and its first point already is."""
    if not curve.valid:
        return None
    if curve.initial_valid_loss is None:
        return NO_UPDATE_0 if curve.valid[0][2] <= target else None
    return UPDATE_0_BELOW if curve.initial_valid_loss <= target else None


def _method_result(curve: Curve, target: float, reference: float, charged: float, grown: bool) -> dict:
    reason = at_start_reason(curve, target) if grown else None
    reached = None if reason else flops_to_reach(curve, target)
    return {
        "flops_to_target": reached,
        "saving": None if reached is None else 1.0 - reached / reference,
        "saving_with_source": None if reached is None else 1.0 - (reached + charged) / reference,
        "reached_at_start": reason is not None,
        "at_start_reason": reason,
        "initial_valid_loss": curve.initial_valid_loss if grown else None,
        "first_valid_loss": curve.valid[0][2] if curve.valid else None,
        "final_valid_loss": curve.final_valid_loss,
        "final_loss": curve.final_loss,
        "source_flops": charged,
        "total_flops": curve.total_flops,
        "valid_points": len(curve.valid),
        "valid_interval": curve.valid_interval,
        "log_interval": curve.log_interval,
        "above_noise": None,
        "above_noise_with_source": None,
    }


def scratch_reference(curve: Curve, name: str = "scratch") -> tuple:
    """(target, FLOPs): a scratch run's final validation loss and the FLOPs at which its own
    curve first reaches it (the rule every method is measured by)."""
    if not curve.valid:
        raise ValueError(f"no '{name}' run with validation losses: the target is scratch's final full-model "
                         "validation loss (train with --validate-interval-updates N and --log-format json)")
    if not curve.valid[-1][1]:
        raise ValueError(f"the '{name}' run's validation records carry no train_flops: train with a b2b_ task")
    target = curve.final_valid_loss
    reference = flops_to_reach(curve, target)
    if not reference:
        raise ValueError(f"the '{name}' run never went below its first validation loss: no {TARGET} to compare")
    return target, reference


def noise_floor(scratches: dict) -> tuple:
    """(floor, pairs) from scratch runs of different seeds (seed -> Curve): for every ordered pair
    (i, j), i != j, the saving of seed i against seed j's target and FLOPs; the floor is the
    largest positive one (0 if none), None with fewer than two seeds."""
    refs = {seed: scratch_reference(c, f"scratch (seed {seed})") for seed, c in scratches.items()}
    pairs = []
    for i, curve in scratches.items():
        for j, (target, reference) in refs.items():
            if i != j:
                reached = flops_to_reach(curve, target)
                pairs.append({"seed": i, "against": j, "target_loss": target, "flops_to_target": reached,
                              "saving": None if reached is None else 1.0 - reached / reference})
    if len(scratches) < 2:
        return None, pairs
    return max([p["saving"] for p in pairs if p["saving"] is not None] + [0.0]), pairs


def _above(savings_of_seeds: list, floor: float | None) -> bool | None:
    """Every seed's saving exists and exceeds the noise floor (None: floor unknown)."""
    if floor is None:
        return None
    return bool(savings_of_seeds) and all(s is not None and s > floor for s in savings_of_seeds)


def savings(curves: dict, scratch: str = "scratch", source_flops: dict | None = None,
            grown: set | None = None, source_valid_loss: float | None = None, family: str = "") -> dict:
    """Per method: ``flops_to_target`` (FLOPs to reach scratch's final full-model validation
    loss), ``saving`` = 1 - F/F_scratch and ``saving_with_source`` (the source model's own training
    FLOPs charged too), None where never reached or reached at start; ``grown`` names the runs that
    start from a grown model (default: every run charged a source).  ``scratch_flops_to_target``:
    scratch's first crossing of its own final loss.  One scratch seed: the noise floor is unknown."""
    target, reference = scratch_reference(curves.get(scratch) or Curve(scratch), scratch)
    source_flops = source_flops or {}
    grown = set(source_flops) if grown is None else set(grown)
    out = {"metric": METRIC, "target": TARGET, "target_loss": target, "scratch_flops_to_target": reference,
           "scratch_final_flops": curves[scratch].valid[-1][1], "source_valid_loss": source_valid_loss,
           "methods": {}}
    for name, curve in curves.items():
        out["methods"][name] = _method_result(curve, target, reference, source_flops.get(name, 0.0), name in grown)
    out["methods"][scratch].update(flops_to_target=reference, saving=0.0, saving_with_source=0.0)
    out["noise_floor"], out["noise_pairs"] = None, []
    return _finish(out, [(curves, scratch)], family)


def _mean_sd(values: list) -> tuple:
    """Mean and sample sd (None for a single value: one seed has no spread to report)."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, sd


def savings_over_seeds(per_seed: dict, scratch: str = "scratch", source_flops: dict | None = None,
                       grown: set | None = None, source_valid_loss: float | None = None, family: str = "") -> dict:
    """Savings with several seeds: ``per_seed`` maps seed -> {method: Curve}; each seed's methods
    are measured against that seed's scratch run (same data order), then aggregated.  A method's
    ``saving`` is the mean over seeds (``saving_sd`` the sample sd) when every seed reached the
    target; otherwise None, with the count in ``seeds_reached``.  ``noise_floor`` comes from the
    scratch seeds; ``above_noise``: every seed's saving exceeds it."""
    results = {seed: savings(curves, scratch, source_flops, grown, source_valid_loss)
               for seed, curves in sorted(per_seed.items())}
    names = list(dict.fromkeys(n for r in results.values() for n in r["methods"]))
    out = {"metric": METRIC, "target": TARGET, "seeds": sorted(results), "source_valid_loss": source_valid_loss,
           "methods": {}, "per_seed": {str(s): r for s, r in results.items()}}
    targets = [r["target_loss"] for r in results.values()]
    out["target_loss"], out["target_loss_sd"] = _mean_sd(targets)
    out["scratch_flops_to_target"] = _mean_sd([r["scratch_flops_to_target"] for r in results.values()])[0]
    out["noise_floor"], out["noise_pairs"] = noise_floor({s: per_seed[s][scratch] for s in sorted(per_seed)})
    for name in names:
        rows = [r["methods"][name] for r in results.values() if name in r["methods"]]
        m = {"seeds": [s for s, r in results.items() if name in r["methods"]], "runs": len(rows)}
        at_start = [row["reached_at_start"] for row in rows]
        m["reached_at_start"] = all(at_start)
        m["seeds_at_start"] = sum(at_start)
        reasons = sorted({row["at_start_reason"] for row in rows if row["at_start_reason"]})
        m["at_start_reason"] = "; ".join(reasons) or None
        reached = [row for row in rows if row["saving"] is not None]
        m["seeds_reached"] = len(reached)
        for key in ("saving", "saving_with_source", "flops_to_target"):
            if len(reached) == len(rows) and rows:
                m[key], m[f"{key}_sd"] = _mean_sd([row[key] for row in rows])
            else:
                m[key], m[f"{key}_sd"] = None, None
        for key in ("initial_valid_loss", "first_valid_loss", "final_valid_loss", "final_loss", "total_flops"):
            vals = [row[key] for row in rows if row[key] is not None]
            m[key], m[f"{key}_sd"] = _mean_sd(vals) if vals else (None, None)
        m["source_flops"] = rows[0]["source_flops"] if rows else 0.0
        m["valid_interval"] = rows[0]["valid_interval"] if rows else None
        m["valid_points"] = min(row["valid_points"] for row in rows) if rows else 0
        m["log_interval"] = rows[0]["log_interval"] if rows else None
        for key, flag in (("saving", "above_noise"), ("saving_with_source", "above_noise_with_source")):
            m[flag] = None if name == scratch else _above([row[key] for row in rows], out["noise_floor"])
        out["methods"][name] = m
    out["saving_sd"] = {n: m["saving_sd"] for n, m in out["methods"].items()}
    return _finish(out, [(per_seed[s], scratch) for s in sorted(per_seed)], family)


def _finish(out: dict, groups: list, family: str) -> dict:
    """at_start, unfinished runs, conditions, degenerate reason and computed notes of a result;
    ``groups``: ({name: Curve}, scratch name) per seed."""
    out["at_start"] = sorted(n for n, m in out["methods"].items() if m["reached_at_start"] or m.get("seeds_at_start"))
    late = [(c.run or c.name, name == scratch) for curves, scratch in groups for name, c in curves.items()
            if c.finished is False]
    out["unfinished"] = sorted({run for run, _ in late})
    out["unfinished_scratch"] = sorted({run for run, is_scratch in late if is_scratch})
    out["partial"] = bool(late)
    out["conditions"] = conditions(out)
    out["degenerate"] = degenerate_reason(out)
    finals = [c.final_valid_loss for curves, _ in groups for c in curves.values() if c.valid]
    note = plateau_note(out, finals, family)
    out["plateau"] = note is not None
    out["notes"] = [note] if note else []
    return out


def conditions(result: dict) -> dict:
    """The two conditions for a convergence comparison: scratch ends clearly (at least
    CLEARLY_BETTER_BITS) below the source (None: no source loss), and nobody is at start."""
    src, target = result.get("source_valid_loss"), result.get("target_loss")
    below = None if src is None or target is None else src - target
    return {"scratch_below_source_bits": below,
            "scratch_clearly_better": None if below is None else below >= CLEARLY_BETTER_BITS - 1e-12,
            "nobody_at_start": not result.get("at_start")}


def _vs_source(result: dict) -> str:
    below = result["conditions"]["scratch_below_source_bits"]
    side = f"{below:.3f} bits below" if below >= 0 else f"{-below:.3f} bits above"
    return f"scratch ends {side} the source ({result['target_loss']:.3f} vs {result['source_valid_loss']:.3f})"


def _at_start_list(result: dict) -> str:
    return ", ".join(f"{n} ({result['methods'][n].get('at_start_reason') or 'at start'})" for n in result["at_start"])


def degenerate_reason(result: dict) -> str | None:
    """One line when the comparison cannot measure convergence (None when it can)."""
    reasons = []
    cond = result.get("conditions") or conditions(result)
    if result.get("at_start"):
        reasons.append(f"{_at_start_list(result)} already start at or below scratch's final full-model validation "
                       f"loss {result['target_loss']:.3f}")
    if cond["scratch_clearly_better"] is False:
        src, target, below = result["source_valid_loss"], result["target_loss"], cond["scratch_below_source_bits"]
        side = f"{below:.3f} below" if below >= 0 else f"{-below:.3f} above"
        reasons.append(f"scratch ends at {target:.3f} bits, {side} the source: not clearly better than the source's "
                       f"{src:.3f} (needs at least {CLEARLY_BETTER_BITS} bits below)")
    if not reasons:
        return None
    return ("scratch's budget is too small for a convergence comparison: " + "; ".join(reasons) +
            " - scratch must end clearly better than the source (train longer, or a larger target)")


def plateau_note(result: dict, finals: list, family: str = "") -> str | None:
    """A note when every run (``finals``: final validation losses; the source's is added) ends within
    PLATEAU_BITS and scratch is not clearly better than the source (None otherwise, or without a
    source loss)."""
    src = result.get("source_valid_loss")
    if src is None or result["conditions"]["scratch_clearly_better"] is not False:
        return None
    lo, hi = min(finals + [src]), max(finals + [src])
    if hi - lo >= PLATEAU_BITS:
        return None
    who = f"every {family.upper()} run" if family else "every run"
    what = "the masked-LM plateau" if family == "bert" else "a loss plateau"
    return (f"{who} ended within {hi - lo:.2f} bits ({lo:.2f}-{hi:.2f}, source included) and {_vs_source(result)}: "
            f"this is {what}, the table compares models on the plateau, not convergence")


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
    flag = m.get("above_noise" if key == "saving" else "above_noise_with_source")
    return _pct(m[key], m.get(f"{key}_sd")) + (" (within noise)" if flag is False else "")


def _loss(m: dict, key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    sd = m.get(f"{key}_sd")
    return f"{value:.3f}" if sd is None else f"{value:.3f} ± {sd:.3f}"


def noise_line(result: dict) -> str:
    floor = result.get("noise_floor")
    if floor is None:
        return "noise floor: unknown (one scratch seed)"
    return (f"noise floor: {100 * floor:.1f}% = the largest saving one scratch seed shows against another's target "
            f"({len(result['noise_pairs'])} ordered pairs, same rule); a saving counts only when every seed's saving "
            "exceeds it, else it is marked (within noise)")


def conditions_line(result: dict) -> str:
    cond = result["conditions"]
    if cond["scratch_clearly_better"] is None:
        first = "scratch vs source: unknown (no source validation loss)"
    else:
        first = (f"{_vs_source(result)}, needs at least {CLEARLY_BETTER_BITS} below: "
                 f"{'met' if cond['scratch_clearly_better'] else 'NOT met'}")
    second = "met" if cond["nobody_at_start"] else f"NOT met ({_at_start_list(result)})"
    return f"conditions for a convergence comparison: {first}; nobody at start: {second}"


def partial_line(unfinished: list, unfinished_scratch: list) -> str:
    """The first line of a report over runs still training."""
    line = "PARTIAL REPORT: runs still training, every number may change"
    if unfinished_scratch:
        line += (f"; scratch unfinished ({', '.join(unfinished_scratch)}): the target is its last loss so far, "
                 "not its final one, which inflates every saving")
    return line + f"; unfinished: {', '.join(unfinished)}"


def markdown_table(result: dict) -> str:
    seeds = result.get("seeds")
    lines = ["| method | FLOPs to target | saving | saving incl. source | valid loss at start | final valid loss |"
             + (" seeds |" if seeds else ""), "|---|---:|---:|---:|---:|---:|" + ("---:|" if seeds else "")]
    for name, m in result["methods"].items():
        if m.get("reached_at_start") or m.get("seeds_at_start"):
            flops = "at start" + (f" ({NO_UPDATE_0})" if NO_UPDATE_0 in (m.get("at_start_reason") or "") else "")
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
    lines.append(f"metric: {TARGET} (the target: {target} bits; scratch too is measured by its first crossing)"
                 + (f"; source's final validation loss {src:.4f}" if src is not None else "")
                 + f"; validated every {', '.join(map(str, intervals)) or '?'} updates (>= {points} points per run), "
                 "crossings interpolated linearly between validation points; training FLOPs only")
    lines.append(noise_line(result))
    if "conditions" in result:
        lines.append(conditions_line(result))
    if result.get("degenerate"):
        lines.append("")
        lines.append(f"NOTE: {result['degenerate']}")
    for note in result.get("notes", []):
        lines.append("")
        lines.append(f"NOTE: {note}")
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
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label="target: scratch's final valid loss")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("loss (bits): valid (markers), train (thin)")
    ax.set_title("\n".join(textwrap.wrap(title or "loss vs FLOPs", 70)), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
