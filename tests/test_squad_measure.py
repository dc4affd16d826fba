"""The issue-18 measurement: a tiny grown BERT fine-tuned on the built-in QA set should beat the
first-name baseline's F1 clearly.  Too slow for the default suite on a 2-core CPU (pre-training,
growth and fine-tuning); run it with

    B2B_SQUAD_MEASURE=1 OMP_NUM_THREADS=1 python -m pytest -q -s tests/test_squad_measure.py

Status (measured 2026-12-06, see fairseq_b2b/eval/squad.md): NOT reached with models
pre-trained on the test data-bin.  The set now has three speeches by three different speakers
per passage (first-name baseline F1 34.1 on dev), short enough for 32 positions; the models
pre-trained here stay near the masked-LM plateau (7.6 bits after 1,500 updates on the 63k-token
test data-bin), and fine-tuning teaches them to answer a name of the passage, but not to find
the question's line: the names they choose are right about one time in three (chance).  The
test is marked xfail until a pre-training recipe that fits a test budget leaves the plateau.

Steps:
1. b2b_bert_tiny (2 x 64) pre-trained with masked LM on the test data-bin: blocks of 32 tokens,
   batch 32, lr 2e-3 (the cpu preset's BERT recipe), 1,500 updates;
2. grown with AKI to b2b_bert_tiny_wide (2 x 128);
3. b2b-squad fine-tune on the built-in set (1,500 train questions, 600 dev questions), 32
   positions, stride 8, batch 16, 2 epochs, lr 1e-3, dropout 0 (the paper's 3e-5 x 4 epochs is
   for BERT-base).
"""
import json
import os

import pytest

from conftest import run_cli

pytestmark = pytest.mark.skipif(os.environ.get("B2B_SQUAD_MEASURE") != "1",
                                reason="slow measurement: set B2B_SQUAD_MEASURE=1 to run it")


@pytest.mark.xfail(reason="measured below the first-name baseline so far (F1 27.9 vs 34.6); see the docstring",
                   strict=False)
def test_tiny_grown_bert_beats_the_first_name_baseline(data_bin, tmp_path):
    pre = tmp_path / "pre"
    run_cli("b2b-train", data_bin, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert_tiny",
            "--tokens-per-sample", "32", "--batch-size", "32", "--optimizer", "adam", "--adam-betas", "(0.9,0.98)",
            "--adam-eps", "1e-6", "--lr", "2e-3", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "100",
            "--total-num-update", "1500", "--max-update", "1500", "--clip-norm", "1.0", "--weight-decay", "0.01",
            "--dropout", "0", "--attention-dropout", "0", "--cpu", "--no-epoch-checkpoints", "--log-format", "json",
            "--seed", "1", "--save-dir", pre, "--num-workers", "0", timeout=3600)
    grown = tmp_path / "grown.pt"
    run_cli("b2b-grow", "--source", pre / "checkpoint_last.pt", "--arch", "b2b_bert_tiny_wide", "--output", grown)
    run_cli("b2b-squad", "builtin-set", "--output", tmp_path / "qa", "--train-questions", "1500",
            "--dev-questions", "600")
    run_cli("b2b-squad", "fine-tune", "--checkpoint", grown, "--train", tmp_path / "qa" / "train.json", "--dev",
            tmp_path / "qa" / "dev.json", "--output", tmp_path / "ft", "--max-positions", "32", "--doc-stride", "8",
            "--lr", "1e-3", "--epochs", "2", "--dropout", "0", "--cpu", timeout=7200)
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    base = results["first_name_baseline"]
    print(f"fine-tuned EM {results['exact_match']:.1f} F1 {results['f1']:.1f}; "
          f"first-name baseline EM {base['exact_match']:.1f} F1 {base['f1']:.1f}")
    assert results["f1"] > base["f1"] + 10
