"""The fine-tuning sweep of ``b2b-glue sweep``: the grid (``paper``: the bert2BERT appendix's, or
``small``), one fairseq-train run per task and grid point with the paper's recipe, scored on dev
and kept in ``OUT/runs/<TASK>/<setting>/result.json`` (a rerun skips finished settings).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List

from ..data.steps import file_digest
from ..fairseq_args import option
from .common import EvalError, atomic_write, finetune_argv, fmt_cmd
from .finetune import run_flags, run_training
from .glue_metric import dev_metrics, fairseq_best, predict
from .glue_tasks import TaskSpec


GRIDS = {
    "paper": {"lrs": [5e-6, 1e-5, 2e-5, 3e-5], "epochs": [4, 5, 10], "batch_size": 32},
    "small": {"lrs": [1e-4, 3e-4], "epochs": [3], "batch_size": 32},
}
WARMUP_FRACTION = 0.06


def parse_list(text: str, flag: str, kind) -> list:
    """``--lrs 1e-5,2e-5`` / ``--epochs 3,5``: positive finite numbers, one-line errors."""
    values = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        try:
            value = kind(item)
        except ValueError:
            raise EvalError(f"{flag} '{item}' is not {'a number' if kind is float else 'a whole number'}: "
                            f"pass comma-separated values, e.g. {flag} {'1e-5,2e-5' if kind is float else '3,5'}") from None
        if not math.isfinite(value) or value <= 0:
            raise EvalError(f"{flag} {item} must be positive")
        values.append(value)
    if not values:
        raise EvalError(f"{flag} is empty: pass comma-separated values")
    return values


def grid_settings(args) -> List[Dict]:
    grid = dict(GRIDS[args.grid])
    if args.lrs is not None:
        grid["lrs"] = parse_list(args.lrs, "--lrs", float)
    if args.epochs is not None:
        grid["epochs"] = parse_list(args.epochs, "--epochs", int)
    if args.batch_size:
        grid["batch_size"] = args.batch_size
    if not grid["lrs"] or not grid["epochs"] or min(grid["epochs"]) < 1 or grid["batch_size"] < 1:
        raise EvalError("the grid needs at least one learning rate, epochs >= 1 and batch size >= 1")
    return [{"lr": lr, "epochs": ep, "batch_size": grid["batch_size"]} for lr in grid["lrs"] for ep in grid["epochs"]]


def setting_name(s: Dict) -> str:
    return f"lr{s['lr']:g}_ep{s['epochs']}_bs{s['batch_size']}"


def train_args(spec: TaskSpec, meta: Dict, data_bin: Path, ckpt: str, summary: Dict, setting: Dict,
               save_dir: Path, args) -> List[str]:
    """The fairseq-train arguments (after the program name) of one grid point."""
    from fairseq.data import Dictionary

    d = Dictionary.load(str(data_bin / "input0" / "dict.txt"))
    updates_per_epoch = math.ceil(meta["counts"]["train"] / setting["batch_size"])
    total = updates_per_epoch * setting["epochs"]
    positions = int(option(summary["model_args"], "max_positions", 512))
    cmd = finetune_argv(data_bin, "sentence_prediction", "sentence_prediction", ckpt, summary)
    cmd += ["--max-positions", str(positions), "--shorten-method", "truncate",
            "--init-token", str(d.bos()), "--separator-token", str(d.eos()), "--num-classes", str(spec.num_classes)]
    if spec.regression:
        cmd += ["--regression-target"]
    if spec.report_flag:
        cmd += [spec.report_flag]
    cmd += ["--best-checkpoint-metric", spec.fairseq_metric, "--maximize-best-checkpoint-metric",
            "--batch-size", str(setting["batch_size"]), "--required-batch-size-multiple", "1",
            "--max-epoch", str(setting["epochs"]),
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.1",
            "--clip-norm", "0.0", "--lr-scheduler", "polynomial_decay", "--lr", f"{setting['lr']:g}",
            "--total-num-update", str(total), "--warmup-updates", str(int(WARMUP_FRACTION * total)),
            "--dropout", "0.1", "--attention-dropout", "0.1",
            "--valid-subset", ",".join(meta["valid_subsets"]),
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--no-last-checkpoints"]
    return cmd + run_flags(args)


def run_setting(spec: TaskSpec, meta: Dict, data_bin: Path, ckpt: str, summary: Dict, setting: Dict,
                run_dir: Path, args) -> Dict:
    """Train one grid point (unless its result exists) and score its best checkpoint on dev."""
    argv = train_args(spec, meta, data_bin, ckpt, summary, setting, run_dir, args)
    digest = getattr(args, "checkpoint_sha256", None) or file_digest(Path(ckpt))
    key = hashlib.sha256(json.dumps([meta["key"], digest, argv[1:]], default=str).encode()).hexdigest()
    result_path = run_dir / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("key") == key:
            return result
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    started = time.monotonic()
    run_training(argv, run_dir / "train.log", args.verbose)
    best = run_dir / "checkpoint_best.pt"
    if not best.is_file():
        raise EvalError(f"fairseq-train wrote no {best}: see {run_dir / 'train.log'}")
    dev = {}
    for split, stem in zip(meta["valid_subsets"], spec.dev_names()):
        try:
            preds, targets = predict(best, data_bin, split, cpu=bool(args.cpu) or not _cuda())
        except Exception as e:  # fairseq/torch errors: one line, the log keeps the details
            raise EvalError(f"scoring {best} on {stem} failed: {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        dev[stem] = dev_metrics(spec, preds, targets)
        dev[stem]["examples"] = int(len(targets))
    result = {"task": spec.name, **setting, "key": key, "checkpoint": os.path.abspath(ckpt), "checkpoint_sha256": digest,
              "metric": spec.metric,
              "score": dev[spec.dev[0]][spec.metric], "dev": dev, "seconds": round(time.monotonic() - started, 1),
              "fairseq_best": fairseq_best(run_dir / "train.log", spec.fairseq_metric),
              "train_command": fmt_cmd(["fairseq-train", *argv, "--user-dir", "$(b2b-user-dir)"])}
    if not args.keep_checkpoints:
        best.unlink()
    atomic_write(result_path, json.dumps(result, indent=2) + "\n")
    return result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
