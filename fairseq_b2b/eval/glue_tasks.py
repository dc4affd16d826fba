"""The GLUE tasks ``b2b-glue`` knows: each one's TSV layout (columns, header, labels) and which
metric scores it (:class:`TaskSpec`: ``metric`` picks the best grid point, ``fairseq_metric`` is
fairseq's ``--best-checkpoint-metric``), the MILTON built-in task included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .common import EvalError


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
