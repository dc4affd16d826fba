"""GLUE metrics in plain numpy (no scikit-learn / scipy needed).

- accuracy;
- F1 of the positive class (MRPC, QQP: label ``1``);
- Matthews correlation coefficient (CoLA), multi-class form (Gorodkin 2004), which is the
  usual ``(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))`` for two classes; 0 when a
  denominator term is 0 (sklearn's convention);
- Pearson and Spearman correlation (STS-B); Spearman is Pearson of the ranks, ties get the
  average of the ranks they span (scipy's default); a constant input gives ``nan``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def accuracy(preds: Sequence, labels: Sequence) -> float:
    p, y = np.asarray(preds), np.asarray(labels)
    _check(p, y)
    return float((p == y).mean())


def f1(preds: Sequence, labels: Sequence, positive=1) -> float:
    """F1 of ``positive``; 0 when it is never predicted nor present."""
    p, y = np.asarray(preds), np.asarray(labels)
    _check(p, y)
    tp = float(np.sum((p == positive) & (y == positive)))
    fp = float(np.sum((p == positive) & (y != positive)))
    fn = float(np.sum((p != positive) & (y == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews(preds: Sequence, labels: Sequence) -> float:
    p, y = np.asarray(preds), np.asarray(labels)
    _check(p, y)
    classes = np.unique(np.concatenate([p, y]))
    index = {c: i for i, c in enumerate(classes.tolist())}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for a, b in zip(y.tolist(), p.tolist()):
        confusion[index[a], index[b]] += 1
    t_k = confusion.sum(axis=1)  # true occurrences of each class
    p_k = confusion.sum(axis=0)  # predictions of each class
    c, s = np.trace(confusion), confusion.sum()
    cov_yp = c * s - np.dot(t_k, p_k)
    cov_pp = s * s - np.dot(p_k, p_k)
    cov_yy = s * s - np.dot(t_k, t_k)
    if cov_pp == 0 or cov_yy == 0:
        return 0.0
    return float(cov_yp / np.sqrt(cov_pp * cov_yy))


def pearson(x: Sequence, y: Sequence) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _check(a, b)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def rankdata(x: Sequence) -> np.ndarray:
    """Ranks 1..n, ties averaged."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(len(a), dtype=np.float64)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: Sequence, y: Sequence) -> float:
    return pearson(rankdata(x), rankdata(y))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-d of the same length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no predictions to score")


def classification_metrics(preds: Sequence, labels: Sequence, positive=None) -> Dict[str, float]:
    """acc, plus f1 / acc_and_f1 / mcc when a positive class is given (binary tasks)."""
    out = {"acc": accuracy(preds, labels)}
    if positive is not None:
        out["f1"] = f1(preds, labels, positive)
        out["acc_and_f1"] = (out["acc"] + out["f1"]) / 2
        out["mcc"] = matthews(preds, labels)
    return out


def regression_metrics(preds: Sequence, labels: Sequence) -> Dict[str, float]:
    out = {"pearson": pearson(preds, labels), "spearman": spearman(preds, labels)}
    out["pearson_and_spearman"] = (out["pearson"] + out["spearman"]) / 2
    return out
