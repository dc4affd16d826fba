"""b2b_llama in fairseq: trains with b2b_language_modeling, is scored by fairseq-eval-lm, grows
with b2b-grow (exact mode beside paper FPI, bad head counts refused with nothing written), and
the grown model continues training with two-stage pre-training and the RMSNorm annealing."""
import json
import os

import pytest

from conftest import TINY, run_cli

# 8 query heads sharing 2 key/value heads of 8 dims: group size 4, so that some targets allow no mapping
SOURCE = ["--arch", "b2b_llama_tiny", "--decoder-attention-heads", "8", "--decoder-kv-heads", "2"]
TARGET = ["--arch", "b2b_llama", "--decoder-layers", "2", "--decoder-embed-dim", "96", "--decoder-attention-heads",
          "12", "--decoder-kv-heads", "6", "--decoder-ffn-embed-dim", "256", "--share-decoder-input-output-embed"]


def json_logs(text, tag):
    """fairseq's --log-format json records of ``tag`` (train_inner, valid, ...)."""
    marker = f"INFO:{tag}:"
    return [json.loads(line[len(marker):]) for line in text.splitlines() if line.startswith(marker + "{")]


@pytest.fixture(scope="module")
def llama_source(small_bin, tmp_path_factory):
    save = tmp_path_factory.mktemp("llama_source")
    proc = run_cli("b2b-train", small_bin, "--task", "b2b_language_modeling", *SOURCE, "--max-update", 24,
                   "--save-dir", save, *TINY)
    return os.path.join(save, "checkpoint_last.pt"), proc.stdout + proc.stderr


def test_a_tiny_llama_trains_and_its_loss_decreases(llama_source):
    _, log = llama_source
    losses = [float(r["loss"]) for r in json_logs(log, "train_inner")]
    assert len(losses) >= 20 and "train_flops" in json_logs(log, "train_inner")[-1]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 1.0, losses


def test_fairseq_eval_lm_scores_it(llama_source, small_bin):
    path, _ = llama_source
    proc = run_cli("fairseq-eval-lm", small_bin, "--path", path, "--user-dir", run_cli("b2b-user-dir").stdout.strip(),
                   "--cpu", "--tokens-per-sample", 64, "--batch-size", 8, "--gen-subset", "valid")
    assert "Loss (base 2):" in proc.stdout + proc.stderr


def test_b2b_grow_exact_keeps_the_logits_beside_paper_fpi(llama_source, small_bin, tmp_path, capsys):
    path, _ = llama_source
    out = tmp_path / "grown.pt"
    proc = run_cli("b2b-grow", "--source", path, *TARGET, "--method", "fpi", "--exact", "--data", small_bin,
                   "--output", out, "--report-json")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(f"\n[b2b-grow trained tiny llama 64->96, Hq 8->12, Hkv 2->6] {proc.stdout.strip().splitlines()[-2]}")
    assert report["exact_fpi"]["max_abs_logit_diff"] < 1e-4
    assert report["paper_fpi"]["max_abs_logit_diff"] > 1e-3
    assert "kv_heads=6, head_dim=8" in report["target_shape"] and out.is_file()


@pytest.mark.parametrize("dim,heads,kv_heads,needle", [
    (72, 9, 3, "query heads 8 -> 9 with key/value heads 2 -> 3 allow no group-preserving head mapping"),
    (96, 12, 5, "--decoder-kv-heads 5 does not divide --decoder-attention-heads 12"),
])
def test_b2b_grow_refuses_head_counts_without_a_group_mapping(llama_source, tmp_path, dim, heads, kv_heads, needle):
    path, _ = llama_source
    out = tmp_path / "bad.pt"
    proc = run_cli("b2b-grow", "--source", path, "--arch", "b2b_llama", "--decoder-embed-dim", dim,
                   "--decoder-attention-heads", heads, "--decoder-kv-heads", kv_heads, "--output", out, check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_grown_llama_continues_training_with_two_stage_and_annealing(llama_source, small_bin, tmp_path):
    path, _ = llama_source
    proc = run_cli("b2b-train", small_bin, "--task", "b2b_language_modeling", *TARGET, "--init-from-small", path,
                   "--growth-method", "fpi", "--growth-exact", "--growth-anneal-updates", 4, "--submodel-epochs", 1,
                   "--submodel-layers", 1, "--max-epoch", 3, "--save-dir", tmp_path, *TINY)
    records = json_logs(proc.stdout + proc.stderr, "train_inner")
    assert len(records) >= 8
    assert float(records[-1]["ln_blend"]) == 1.0
    losses = [float(r["loss"]) for r in records]
    assert max(losses) < 12 and losses[-1] < losses[0], losses
    assert (tmp_path / "checkpoint_last.pt").is_file()


def test_b2b_grow_refuses_a_llama_checkpoint_into_a_gpt_arch(llama_source, tmp_path):
    path, _ = llama_source
    proc = run_cli("b2b-grow", "--source", path, "--arch", "b2b_gpt_tiny_wide", "--output", tmp_path / "g.pt",
                   check=False)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "is a LLAMA-family model but --arch b2b_gpt_tiny_wide is GPT-family" in proc.stderr
    assert not any(tmp_path.iterdir())
