"""The issue-18 measurement: a tiny grown BERT fine-tuned on the built-in QA set beats the
first-name baseline's F1 clearly.  Too slow for the default suite (pre-training, growth and 4
epochs of fine-tuning: about 10 CPU-minutes on an idle core); run it with

    B2B_SQUAD_MEASURE=1 OMP_NUM_THREADS=1 python -m pytest -q -s tests/test_squad_measure.py

Status (measured 2026-12-06, see fairseq_b2b/eval/squad.md): NOT reached yet.  With these
steps the fine-tuned model scores dev EM 31.3 / F1 32.8 (lr 1e-3; EM 27.3 / F1 28.8 at lr 5e-4)
against the first-name baseline's EM 41.3 / F1 41.9: it learns to answer a speaker name of the
passage, mostly one name for all of a passage's questions, not yet to find the question's
line.  The test is marked xfail until a model and recipe beat the baseline.

Steps:
1. b2b_bert_tiny (2 x 64) pre-trained with masked LM for 1,500 updates on the test data-bin
   (6,000 lines of the built-in corpus, BPE 2,000 merges), 128 positions;
2. grown with AKI to b2b_bert_tiny_wide (2 x 128);
3. b2b-squad fine-tune on the built-in set (6,001 train questions, the 1,000 dev questions),
   128 positions, stride 64, answers of at most 8 pieces, batch 16, 4 epochs, lr 1e-3 (the
   paper's 3e-5 is for BERT-base).
"""
import json
import os

import pytest

from conftest import run_cli

pytestmark = pytest.mark.skipif(os.environ.get("B2B_SQUAD_MEASURE") != "1",
                                reason="slow measurement: set B2B_SQUAD_MEASURE=1 to run it")


@pytest.mark.xfail(reason="measured below the first-name baseline so far (F1 32.8 vs 41.9); see the docstring",
                   strict=False)
def test_tiny_grown_bert_beats_the_first_name_baseline(data_bin, tmp_path):
    pre = tmp_path / "pre"
    run_cli("b2b-train", data_bin, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert_tiny",
            "--tokens-per-sample", "128", "--max-positions", "128", "--batch-size", "16", "--optimizer", "adam",
            "--adam-betas", "(0.9,0.98)", "--lr", "1e-3", "--lr-scheduler", "polynomial_decay",
            "--warmup-updates", "100", "--total-num-update", "1500", "--max-update", "1500", "--dropout", "0",
            "--attention-dropout", "0", "--cpu", "--no-epoch-checkpoints", "--log-format", "json", "--seed", "1",
            "--save-dir", pre, "--num-workers", "0", timeout=3600)
    grown = tmp_path / "grown.pt"
    run_cli("b2b-grow", "--source", pre / "checkpoint_last.pt", "--arch", "b2b_bert_tiny_wide", "--output", grown)
    run_cli("b2b-squad", "builtin-set", "--output", tmp_path / "qa")
    run_cli("b2b-squad", "fine-tune", "--checkpoint", grown, "--train", tmp_path / "qa" / "train.json", "--dev",
            tmp_path / "qa" / "dev.json", "--output", tmp_path / "ft", "--max-positions", "128", "--doc-stride", "64",
            "--max-answer-length", "8", "--lr", "1e-3", "--epochs", "4", "--cpu", timeout=7200)
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    base = results["first_name_baseline"]
    print(f"fine-tuned EM {results['exact_match']:.1f} F1 {results['f1']:.1f}; "
          f"first-name baseline EM {base['exact_match']:.1f} F1 {base['f1']:.1f}")
    assert results["f1"] > base["f1"] + 10
