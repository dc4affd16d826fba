"""The GLUE results table (``OUT/results.md``, ``results.json``): the best grid point per task,
selected on dev, and the full grid, from the finished runs of the one checkpoint an output
folder is bound to (``OUT/checkpoint.json``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional

from ..data.steps import file_digest
from .common import EvalError, atomic_write
from .glue_metric import METRIC_NAMES
from .glue_tasks import TASKS


CLAIM = "checkpoint.json"  # OUT/checkpoint.json: the one checkpoint whose runs OUT holds


def claim_output(out: Path, ckpt: str, write: bool = True) -> Dict:
    """Bind ``out`` to the checkpoint (its sha256): runs of two checkpoints never mix in one
    results table.  A folder used for another checkpoint is refused."""
    digest = file_digest(Path(ckpt))
    claim_path = Path(out) / CLAIM
    if claim_path.is_file():
        claim = json.loads(claim_path.read_text())
        if claim.get("sha256") != digest:
            raise EvalError(f"{out} holds the GLUE runs of {claim.get('checkpoint')} (sha256 {str(claim.get('sha256'))[:12]}), "
                            f"not of {ckpt} ({digest[:12]}): pass another --output, so that results never mix")
        return claim
    others = {r.get("checkpoint_sha256") for r in collect(out)}
    if others - {digest}:
        raise EvalError(f"{out}/runs holds GLUE runs of another (or an unrecorded) checkpoint: pass another --output")
    claim = {"checkpoint": os.path.abspath(ckpt), "sha256": digest}
    if write:
        atomic_write(claim_path, json.dumps(claim, indent=2) + "\n")
    return claim


def collect(out: Path, sha256: Optional[str] = None) -> List[Dict]:
    """The finished runs under ``out/runs`` (of the checkpoint with ``sha256``, if given)."""
    results = []
    for path in sorted((Path(out) / "runs").glob("*/*/result.json")):
        try:
            result = json.loads(path.read_text())
        except ValueError:
            continue
        if sha256 is None or result.get("checkpoint_sha256") == sha256:
            results.append(result)
    return results


def best_per_task(results: List[Dict]) -> Dict[str, Dict]:
    best: Dict[str, Dict] = {}
    for r in results:
        score = r["score"] if r["score"] == r["score"] else -math.inf  # nan loses
        current = best.get(r["task"])
        if current is None or score > (current["score"] if current["score"] == current["score"] else -math.inf):
            best[r["task"]] = r
    order = list(TASKS)
    return dict(sorted(best.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}"


def _details(r: Dict) -> str:
    parts = []
    for stem, m in r["dev"].items():
        shown = {k: v for k, v in m.items() if k not in ("examples", "majority_acc", r["metric"])}
        text = ", ".join(f"{k} {pct(v)}" for k, v in shown.items())
        if "majority_acc" in m:
            text += f"{', ' if text else ''}majority {pct(m['majority_acc'])}"
        parts.append((f"{stem}: " if len(r["dev"]) > 1 else "") + f"{text} ({m['examples']} ex.)")
    return "; ".join(parts)


def write_table(out: Path, checkpoint: Optional[str] = None) -> Dict:
    """``out/results.md`` and ``out/results.json`` from the finished runs under ``out/runs`` of
    the checkpoint recorded in ``out/checkpoint.json``."""
    claim_path = Path(out) / CLAIM
    claim = json.loads(claim_path.read_text()) if claim_path.is_file() else {}
    checkpoint = checkpoint or claim.get("checkpoint")
    results = collect(out, claim.get("sha256"))
    best = best_per_task(results)
    md = [f"# GLUE dev results{': ' + checkpoint if checkpoint else ''}", "",
          "Best grid point per task (selected on dev, as in the paper; scores x100):", "",
          "| task | metric | dev | lr | epochs | batch | other metrics |", "|---|---|---:|---:|---:|---:|---|"]
    for task, r in best.items():
        score = pct(r["score"])
        if len(r["dev"]) > 1:  # MNLI: matched/mismatched
            score = "/".join(pct(m[r["metric"]]) for m in r["dev"].values())
        md.append(f"| {task} | {METRIC_NAMES.get(r['metric'], r['metric'])} | {score} | {r['lr']:g} | "
                  f"{r['epochs']} | {r['batch_size']} | {_details(r)} |")
    md += ["", "Full grid:", "", "| task | lr | epochs | batch | dev score | seconds |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (list(TASKS).index(r["task"]) if r["task"] in TASKS else 99,
                                            r["lr"], r["epochs"])):
        md.append(f"| {r['task']} | {r['lr']:g} | {r['epochs']} | {r['batch_size']} | {pct(r['score'])} | "
                  f"{r['seconds']} |")
    report = {"checkpoint": checkpoint, "checkpoint_sha256": claim.get("sha256"), "best": best, "runs": results}
    atomic_write(Path(out) / "results.md", "\n".join(md) + "\n")
    atomic_write(Path(out) / "results.json", json.dumps(report, indent=2) + "\n")
    return report
