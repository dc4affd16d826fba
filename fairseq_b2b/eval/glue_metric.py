"""Which metric a GLUE run is scored with, and its score: the fine-tuned checkpoint's predictions
on each dev set (:func:`predict`), the task's metrics on them (:func:`dev_metrics`, numbers from
:mod:`fairseq_b2b.eval.metrics`), and fairseq's own best value from the run's log as a cross-check.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Optional

from ..json_log import json_record
from .glue_tasks import TaskSpec


METRIC_NAMES = {"acc": "acc", "mcc": "Matthews corr.", "acc_and_f1": "(acc+F1)/2",
                "pearson_and_spearman": "(Pearson+Spearman)/2"}


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
