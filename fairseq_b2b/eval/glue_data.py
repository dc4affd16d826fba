"""GLUE data preparation (``b2b-glue prepare``, the first step of ``sweep``): the task TSVs read
(malformed rows skipped and counted), tokenized and BPE'd with the *pre-training* codes and
binarized with the *pre-training* dictionary into fairseq's RoBERTa GLUE layout
``OUT/data/<TASK>-bin/{input0,input1,label}``; a preparation is reused while its inputs are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

from ..data.steps import file_digest
from .common import EvalError, atomic_write, bpe_lines, fairseq_preprocess, fmt_cmd
from .glue_tasks import TaskSpec


PREP_VERSION = 1


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
