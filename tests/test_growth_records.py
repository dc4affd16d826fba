"""Records of a growth (issue 13, items 3 and 4): ``--seed`` determines the grown checkpoint bit
for bit for every method, and the growth record, the two-stage notes and the schedules' boundary
messages reach fairseq-train's ``--log-file``."""

import pytest
import torch

import fairseq_b2b  # noqa: F401
from fairseq_b2b.checkpoints import train_in_process
from fairseq_b2b.cli import grow as grow_cli


TRAIN = ["--cpu", "--tokens-per-sample", "64", "--batch-size", "8", "--required-batch-size-multiple", "1",
         "--optimizer", "adam", "--lr", "1e-3", "--log-format", "json", "--log-interval", "1", "--num-workers", "0",
         "--no-epoch-checkpoints", "--seed", "1"]


def _tensors(path):
    return torch.load(path, weights_only=False)["model"]


def _grow(tmp_path, source, method, seed, name):
    out = str(tmp_path / name)
    grow_cli.grow_checkpoint(source, "b2b_bert_tiny_wide", method, False, seed, out)
    return _tensors(out)


def _same_bytes(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and a[k].contiguous().view(torch.uint8).numpy().tobytes() == b[k].contiguous().view(torch.uint8).numpy().tobytes()
        for k in a)


@pytest.mark.parametrize("method", ["direct_copy", "fpi", "aki"])
def test_seed_determines_the_grown_checkpoint_bit_for_bit(tmp_path, small_bert, method):
    first = _grow(tmp_path, small_bert, method, 1, "a.pt")
    torch.manual_seed(12345)  # another global RNG state between the runs changes nothing
    torch.rand(1000)
    state = torch.random.get_rng_state()
    second = _grow(tmp_path, small_bert, method, 1, "b.pt")
    assert torch.equal(torch.random.get_rng_state(), state)  # b2b-grow leaves the caller's RNG alone
    assert _same_bytes(first, second)
    other = _grow(tmp_path, small_bert, method, 2, "c.pt")
    assert not _same_bytes(first, other)
    if method == "direct_copy":  # the rest of the target keeps an init that the seed now determines
        key = "encoder.sentence_encoder.layers.0.fc1.weight"
        assert torch.equal(first[key][:256, :64], other[key][:256, :64])
        assert not torch.equal(first[key][256:], other[key][256:])


def test_growth_record_and_two_stage_notes_reach_the_log_file(tmp_path, small_bin, small_bert):
    log_file = tmp_path / "train.log"
    train_in_process([small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_deep", *TRAIN,
                      "--init-from-small", small_bert, "--growth-method", "aki", "--max-update", "2",
                      "--save-dir", str(tmp_path / "grown"), "--log-file", str(log_file)])
    text = log_file.read_text()
    assert "grew (L=2, D=64, FFN=256, heads=2) -> (L=4, D=128, FFN=512, heads=4) with aki from" in text
    assert "a model grown with --init-from-small: stage-1 sub-model training for 5 epochs" in text
    assert "two-stage training (Algorithm 2): epochs 1..5 train sub-models" in text
    assert '"num_updates": "2"' in text  # fairseq's own json records are in the same file


def test_stackbert_boundary_messages_reach_the_log_file(tmp_path, small_bin):
    log_file = tmp_path / "stack.log"
    train_in_process([small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_deep", *TRAIN,
                      "--stacking-schedule", "2:1,4:1", "--max-epoch", "2", "--save-dir", str(tmp_path / "stack"),
                      "--log-file", str(log_file)])
    text = log_file.read_text()
    assert "StackBERT: stacked depth 2 -> 4" in text
    assert "epoch 2: StackBERT phase 2/2: depth 4" in text
    assert text.count("StackBERT: stacked depth 2 -> 4") == 1  # once: one file handler forwards it (was size > 0,
    # which held whenever the lines above were found)
