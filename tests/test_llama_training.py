"""b2b_llama in fairseq: trains with b2b_language_modeling, is scored by fairseq-eval-lm, grows
with b2b-grow (exact mode beside paper FPI, bad head counts refused with nothing written), and
the grown model continues training with two-stage pre-training and the RMSNorm annealing."""
import json
import os

import pytest

from conftest import TINY, b2b_train_main, exit_line

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
    """fairseq-train in this process: the checkpoint and the run's log records."""
    from fairseq_b2b.checkpoints import train_in_process

    save = tmp_path_factory.mktemp("llama_source")
    log = train_in_process([small_bin, "--task", "b2b_language_modeling", *SOURCE, "--max-update", "24",
                            "--save-dir", str(save), *TINY])
    return os.path.join(save, "checkpoint_last.pt"), log


def _grow(argv, capsys):
    """b2b-grow in this process: its stdout."""
    from fairseq_b2b.cli.grow import main

    capsys.readouterr()
    main([str(a) for a in argv])
    return capsys.readouterr().out


def test_a_tiny_llama_trains_and_its_loss_decreases(llama_source):
    _, log = llama_source
    losses = [float(r["loss"]) for r in json_logs(log, "train_inner")]
    assert len(losses) >= 20 and "train_flops" in json_logs(log, "train_inner")[-1]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 1.0, losses


def test_fairseq_eval_lm_scores_it(llama_source, small_bin, capsys, caplog):
    """fairseq-eval-lm's main in this process, with --user-dir $(b2b-user-dir) as documented."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import eval_lm

    from fairseq_b2b.cli.train import print_user_dir

    path, _ = llama_source
    capsys.readouterr()
    print_user_dir()
    user_dir = capsys.readouterr().out.strip()
    args = options.parse_args_and_arch(options.get_eval_lm_parser(), input_args=[
        small_bin, "--path", path, "--user-dir", user_dir, "--cpu", "--tokens-per-sample", "64", "--batch-size", "8",
        "--gen-subset", "valid"])
    with caplog.at_level("INFO"):
        eval_lm.main(convert_namespace_to_omegaconf(args))
    assert any("Loss (base 2):" in r.getMessage() for r in caplog.records)


def test_b2b_grow_exact_keeps_the_logits_beside_paper_fpi(llama_source, small_bin, tmp_path, capsys):
    path, _ = llama_source
    out = tmp_path / "grown.pt"
    stdout = _grow(["--source", path, *TARGET, "--method", "fpi", "--exact", "--data", small_bin, "--output", out,
                    "--report-json"], capsys)
    report = json.loads(stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(f"\n[b2b-grow trained tiny llama 64->96, Hq 8->12, Hkv 2->6] {stdout.strip().splitlines()[-2]}")
    assert report["exact_fpi"]["max_abs_logit_diff"] < 1e-4
    assert report["paper_fpi"]["max_abs_logit_diff"] > 1e-3
    assert "kv_heads=6, head_dim=8" in report["target_shape"] and out.is_file()


@pytest.mark.parametrize("dim,heads,kv_heads,needle", [
    (72, 9, 3, "query heads 8 -> 9 with key/value heads 2 -> 3 allow no group-preserving head mapping"),
    (96, 12, 5, "--decoder-kv-heads 5 does not divide --decoder-attention-heads 12"),
])
def test_b2b_grow_refuses_head_counts_without_a_group_mapping(llama_source, tmp_path, capsys, dim, heads, kv_heads,
                                                             needle):
    from fairseq_b2b.cli.grow import main

    path, _ = llama_source
    out = tmp_path / "bad.pt"
    line = exit_line(main, ["--source", path, "--arch", "b2b_llama", "--decoder-embed-dim", dim,
                            "--decoder-attention-heads", heads, "--decoder-kv-heads", kv_heads, "--output", out],
                     capsys, alone=True)  # exit 1, that one line only, no traceback
    assert needle in line
    assert not any(tmp_path.iterdir())


def test_a_grown_llama_continues_training_with_two_stage_and_annealing(llama_source, small_bin, tmp_path, monkeypatch):
    path, _ = llama_source
    log = b2b_train_main([small_bin, "--task", "b2b_language_modeling", *TARGET, "--init-from-small", path,
                          "--growth-method", "fpi", "--growth-exact", "--growth-anneal-updates", 4, "--submodel-epochs",
                          1, "--submodel-layers", 1, "--max-epoch", 3, "--save-dir", tmp_path, *TINY], monkeypatch)
    records = json_logs(log, "train_inner")
    assert len(records) >= 8
    assert float(records[-1]["ln_blend"]) == 1.0
    losses = [float(r["loss"]) for r in records]
    assert max(losses) < 12 and losses[-1] < losses[0], losses
    assert (tmp_path / "checkpoint_last.pt").is_file()


def test_b2b_grow_refuses_a_llama_checkpoint_into_a_gpt_arch(llama_source, tmp_path, capsys):
    from fairseq_b2b.cli.grow import main

    path, _ = llama_source
    line = exit_line(main, ["--source", path, "--arch", "b2b_gpt_tiny_wide", "--output", tmp_path / "g.pt"], capsys,
                     alone=True)  # exit 1, that one line only, no traceback
    assert "is a LLAMA-family model but --arch b2b_gpt_tiny_wide is GPT-family" in line
    assert not any(tmp_path.iterdir())
