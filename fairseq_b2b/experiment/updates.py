"""How many optimizer updates an epoch has (fairseq's count), and the --update-freq and world
size that keep a preset's effective batch: the schedules count updates, not epochs."""
from __future__ import annotations

from .presets import ExperimentError, Preset, for_family


def update_freq(preset: Preset, world_size: int = 1) -> int:
    """--update-freq that keeps the preset's effective batch at any world size."""
    per_step = preset.batch_size * world_size
    if preset.effective_batch % per_step:
        raise ExperimentError(f"the {preset.name} preset's effective batch {preset.effective_batch} is not a multiple "
                              f"of --batch-size {preset.batch_size} x {world_size} processes: use a world size that "
                              f"divides {preset.effective_batch // preset.batch_size}")
    return preset.effective_batch // per_step


def updates_per_epoch_from_tokens(train_tokens: int, family: str, tokens_per_sample: int, batch_size: int,
                                  update_freq_: int = 1, world_size: int = 1) -> int:
    """Optimizer updates in one epoch, as fairseq counts them: the token stream cut into blocks
    (masked LM: ``tokens_per_sample - 1`` tokens plus <s>; causal LM: ``tokens_per_sample``),
    ``batch_size`` blocks a batch, batches sharded over ``world_size`` ranks, ``update_freq``
    batches an update.  Exact with ``--required-batch-size-multiple 1`` (every preset passes it:
    fairseq otherwise drops a last batch whose size is not a multiple of 8)."""
    block = tokens_per_sample - 1 if family == "bert" else tokens_per_sample
    blocks = -(-train_tokens // block)
    batches = -(-blocks // batch_size)
    per_rank = -(-batches // world_size)
    return -(-per_rank // update_freq_)


def count_train_tokens(data_bin: str) -> int:
    """Tokens in the train split of ``data_bin``."""
    from pathlib import Path

    from ..data.pipeline import token_counts

    counts = token_counts(Path(data_bin))
    if "train" not in counts:
        raise ExperimentError(f"{data_bin} has no train split (train.idx/train.bin): pass a fairseq data-bin")
    return counts["train"]


def updates_per_epoch(data_bin: str, preset: Preset, world_size: int = 1, families=("bert", "gpt")) -> dict:
    """Optimizer updates in one epoch of the train split, per family (after --update-freq)."""
    tokens = count_train_tokens(data_bin)
    uf = update_freq(preset, world_size)
    return {fam: updates_per_epoch_from_tokens(tokens, fam, for_family(preset, fam).tokens_per_sample,
                                               for_family(preset, fam).batch_size, uf, world_size) for fam in families}


def world_size_of(preset: Preset, passthrough: list) -> int:
    """Processes each run uses: --distributed-world-size when passed through, else every visible
    GPU for a GPU preset (fairseq's default), else 1."""
    if "--distributed-world-size" in passthrough:
        i = passthrough.index("--distributed-world-size")
        try:
            return int(passthrough[i + 1])
        except (IndexError, ValueError):
            raise ExperimentError("--distributed-world-size needs a number after it") from None
    if preset.cpu or "--cpu" in passthrough:
        return 1
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:
        return 1
