"""The official SQuAD v1.1 metrics (``evaluate-v1.1.py`` of the SQuAD authors), unchanged in
substance: answers are normalized (lower case, punctuation removed, the articles a/an/the
removed, whitespace collapsed); exact match is 1 when the normalized strings are equal; F1 is
the bag-of-tokens F1 of the normalized answers; each question takes the maximum over its
gold answers; the set scores are the means, x100.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Dict, Iterable, List

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction: str, ground_truths: Iterable[str]) -> float:
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def evaluate(gold: Dict[str, List[str]], predictions: Dict[str, str]) -> Dict[str, float]:
    """``{"exact_match", "f1"}`` (x100) of ``predictions`` ({qid: text}) against ``gold``
    ({qid: [answer texts]}).  Like the official script, a question without a prediction
    scores 0 and is counted in ``"unanswered"``."""
    em = f1 = 0.0
    unanswered = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            unanswered += 1
            continue
        em += metric_max_over_ground_truths(exact_match_score, predictions[qid], answers)
        f1 += metric_max_over_ground_truths(f1_score, predictions[qid], answers)
    total = max(1, len(gold))
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total, "questions": len(gold),
            "unanswered": unanswered}
