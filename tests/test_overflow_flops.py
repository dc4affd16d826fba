"""An update whose fp16 gradients overflowed still ran its forward and backward: its FLOPs are
in ``train_flops`` (issue 17, 2; tasks/two_stage.py), through fairseq's own Trainer on CPU."""
import itertools
import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")

import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import build_trainer  # noqa: E402


COMMON = ["--optimizer", "adam", "--lr", "1e-3", "--tokens-per-sample", "32", "--batch-size", "4",
          "--required-batch-size-multiple", "1", "--cpu", "--num-workers", "0", "--seed", "3"]


def _attempt_flops(task, samples, update_num):
    """FLOPs of one attempt at update ``update_num`` (flops.py's formula on the batches' counts)."""
    sub = task.submodel_for(update_num)
    shape = (task._flops.depth, 0, False) if sub is None else (sub.depth, sub.trainable_from, sub.frozen_input)
    pad = task.source_dictionary.pad()
    total = 0
    for s in samples:
        n = s["net_input"]["src_tokens"].ne(pad).sum(1)
        total += task._flops.update_flops(int(n.sum()), int((n * n).sum()), int(s["target"].ne(pad).sum()), *shape)
    return total


@pytest.mark.parametrize("mode", ["fp16", "forced"])
def test_overflowed_updates_count_in_train_flops(small_bin, monkeypatch, mode):
    """``fp16``: real fp16 training from a loss scale of 2^20, which overflows (and halves) until the
    gradients fit; ``forced``: fp32, the trainer's gradient clipping raises fairseq's OverflowError
    at the 2nd and 3rd attempts.  Two micro-batches per attempt (--update-freq 2), stage 1."""
    extra = ["--fp16", "--fp16-init-scale", str(2 ** 20)] if mode == "fp16" else []
    cfg, task, trainer = build_trainer([small_bin, "--task", "b2b_language_modeling", "--arch", "b2b_gpt_mini",
                                        "--submodel-epochs", "1", "--submodel-layers", "1", "--max-epoch", "2",
                                        "--update-freq", "2"] + COMMON + extra)
    # fairseq's OverflowError handler builds ``torch.tensor(0.0).cuda()``: a CPU stand-in
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    if mode == "forced":
        clip, calls = trainer.clip_grad_norm, itertools.count()

        def overflowing_clip(max_norm):
            if next(calls) in (1, 2):
                raise OverflowError("test: gradient overflow")
            return clip(max_norm)

        monkeypatch.setattr(trainer, "clip_grad_norm", overflowing_clip)
    itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)
    trainer.begin_epoch(1)
    batches = [trainer._prepare_sample(b)[0] for b in itertools.islice(itr, 2)]
    expected, attempts = 0, 0
    while trainer.get_num_updates() < 3:
        assert attempts < 40
        expected += _attempt_flops(task, batches, trainer.get_num_updates())
        trainer.train_step(batches)
        attempts += 1
    assert attempts >= 5  # at least two attempts overflowed
    assert task.train_flops == expected
