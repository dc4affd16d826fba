"""The issue-18 measurement: a tiny grown BERT fine-tuned on the built-in QA set beats the
first-name baseline's F1 clearly.  Slow (the `cpu` preset's BERT source and AKI runs, then 4
epochs of fine-tuning: about 7 minutes on a 2-core CPU) and opt-in, CI included:

    B2B_SQUAD_MEASURE=1 bash scripts/test.sh -m slow -s tests/test_squad_measure.py

Opt-in because its outcome is a threshold, not a grade: this fine-tune learned the task (F1 58.9),
but with the same recipe 22 of cpu-full's 24 models stayed within 2 F1 of the baseline
(docs/results.md), so another machine's floating-point path may land on the other side.

Measured 2026-12-06 (fairseq_b2b/eval/squad.md): step 3 on the `cpu` preset's AKI model of the
demo run (S(2,128) -> T(2,192), 32 positions) scored dev EM 57.3 / F1 58.9 against the
baseline's EM 33.6 / F1 34.6 (602 questions).  Models pre-trained on the small test data-bin
stay near the masked-LM plateau and do not beat the baseline (F1 27.9), which is why this test
pre-trains with the preset.

Steps:
1. ``b2b-experiment --preset cpu --families bert --only AKI``: the BERT source S(2,128) and its
   AKI growth to T(2,192), trained as the preset trains them (32-token blocks);
2. ``b2b-squad builtin-set``: 3,000 train questions, 600 dev questions;
3. ``b2b-squad fine-tune``: 32 positions, stride 12, answers of at most 16 pieces, batch 16,
   4 epochs, lr 1e-3, dropout 0 (the paper's 3e-5 x 4 epochs is for BERT-base).
"""
import json
import os

import pytest

from conftest import run_cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("B2B_SQUAD_MEASURE") != "1",
                                 reason="opt-in measurement: set B2B_SQUAD_MEASURE=1 (docs/testing.md)")]


def test_tiny_grown_bert_beats_the_first_name_baseline(tmp_path):
    exp = tmp_path / "exp"
    run_cli("b2b-experiment", "--preset", "cpu", "--families", "bert", "--only", "AKI", "--output", exp,
            "--jobs", "1", timeout=7200)
    grown = exp / "runs" / "bert_aki" / "checkpoint_last.pt"
    run_cli("b2b-squad", "builtin-set", "--output", tmp_path / "qa", "--train-questions", "3000",
            "--dev-questions", "600")
    run_cli("b2b-squad", "fine-tune", "--checkpoint", grown, "--train", tmp_path / "qa" / "train.json", "--dev",
            tmp_path / "qa" / "dev.json", "--output", tmp_path / "ft", "--max-positions", "32", "--doc-stride", "12",
            "--max-answer-length", "16", "--lr", "1e-3", "--epochs", "4", "--dropout", "0", "--cpu", timeout=7200)
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    base = results["first_name_baseline"]
    print(f"fine-tuned EM {results['exact_match']:.1f} F1 {results['f1']:.1f}; "
          f"first-name baseline EM {base['exact_match']:.1f} F1 {base['f1']:.1f}")
    assert results["f1"] > base["f1"] + 5
