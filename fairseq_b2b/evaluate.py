"""Validation loss and logits of a fairseq model on a data-bin split (the paper's Table 1)."""
from __future__ import annotations

import math

import torch

from .fairseq_args import option


def _batches(task, split: str, model, cfg=None, max_batches: int | None = None):
    """The batches fairseq-train validates on (mirrors Trainer.get_valid_iterator)."""
    from fairseq import utils

    dataset_cfg = cfg.dataset if cfg is not None else None
    task.load_dataset(split, combine=False, epoch=1)
    itr = task.get_batch_iterator(
        dataset=task.dataset(split),
        max_tokens=option(dataset_cfg, "max_tokens_valid", None) or option(dataset_cfg, "max_tokens", None),
        max_sentences=option(dataset_cfg, "batch_size_valid", None) or option(dataset_cfg, "batch_size", None),
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=option(dataset_cfg, "skip_invalid_size_inputs_valid_test", False),
        required_batch_size_multiple=option(dataset_cfg, "required_batch_size_multiple", 8),
        seed=cfg.common.seed if cfg is not None else 1,
        epoch=1,
    ).next_epoch_itr(shuffle=False)
    for i, sample in enumerate(itr):
        if max_batches is not None and i >= max_batches:
            break
        yield sample


@torch.no_grad()
def split_loss(model, task, criterion, split: str = "valid", cfg=None, max_batches: int | None = None) -> float:
    """Mean loss per scored token in bits (base 2, as fairseq logs it)."""
    model.eval()
    total, weight = 0.0, 0
    for sample in _batches(task, split, model, cfg, max_batches):
        loss, sample_size, _ = criterion(model, sample)
        total += float(loss)
        weight += int(sample_size)
    return total / max(weight, 1) / math.log(2)


@torch.no_grad()
def logits(model, task, split: str = "valid", cfg=None, max_batches: int = 2) -> list:
    """Full output logits (every position) on the first batches of ``split``."""
    model.eval()
    return [model(**sample["net_input"])[0].float() for sample in _batches(task, split, model, cfg, max_batches)]


def max_abs_logit_diff(source: list, grown: list) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(source, grown))
