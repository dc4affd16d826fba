"""Validation that scores the same examples in every run, whatever its ``--seed``.

Two behaviours of stock fairseq make a validation loss depend on the training seed, so that two
runs of one model disagree by ~0.01 bits (measured on the built-in corpus):

* ``data_utils.batch_by_size`` drops the last batch when its size is not a multiple of
  ``--required-batch-size-multiple`` (default 8), and which examples land in that batch depends
  on the seeded shuffle: with 180 valid blocks and ``--batch-size 32``, 20 blocks (11%) were never
  scored, a different 20 for every seed.
* ``masked_lm`` masks the validation blocks with ``--seed``: each seed is scored on other positions.

The b2b tasks therefore batch evaluation splits with a multiple of 1 (nothing is dropped) and
mask and order them with ``--valid-seed`` (default 1), fixed across runs.  Training batches
are untouched.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class EvaluationConfig:
    valid_seed: int = field(
        default=1,
        metadata={"help": "seed of the masks and order of the validation/test splits (not --seed, so that runs "
                          "with different seeds are scored on the same examples and masked positions)"},
    )


def is_training_split(name: str) -> bool:
    """fairseq's training subsets are ``train``, ``train1``, ... (``--train-subset``)."""
    return name.startswith("train")


class EvaluationMixin:
    """Put before the fairseq task in the bases; needs ``self.cfg`` and ``self.datasets``."""

    def _scores_dataset(self, dataset) -> bool:
        """Whether ``dataset`` is a loaded evaluation split (a dataset the task did not load is left alone)."""
        names = [name for name, d in getattr(self, "datasets", {}).items() if d is dataset]
        return bool(names) and not any(is_training_split(name) for name in names)

    @contextmanager
    def _evaluation_seed(self, split: str):
        """Load an evaluation split under ``--valid-seed`` instead of ``--seed`` (a config saved
        before the option existed has none: its split loads under ``--seed``, as it did)."""
        cfg = self.cfg
        if is_training_split(split) or getattr(cfg, "valid_seed", None) is None:
            yield
            return
        seed = cfg.seed
        cfg.seed = int(cfg.valid_seed)
        try:
            yield
        finally:
            cfg.seed = seed

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        with self._evaluation_seed(split):
            return super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, **kwargs):
        if self._scores_dataset(dataset):
            required_batch_size_multiple = 1  # keep the last batch: every example is scored
        return super().get_batch_iterator(dataset, max_tokens=max_tokens, max_sentences=max_sentences,
                                          max_positions=max_positions, ignore_invalid_inputs=ignore_invalid_inputs,
                                          required_batch_size_multiple=required_batch_size_multiple, **kwargs)


def fairseq_valid_batches(task, cfg, subset: str, model, num_shards: int = 1, shard_id: int = 0):
    """The batches fairseq-train's ``validate`` scores on ``subset`` (fairseq_cli/train.py): the
    iterator of ``Trainer.get_valid_iterator`` (its ``get_batch_iterator`` arguments, epoch 1,
    unshuffled, the dataset's epoch left alone) and its stopping rule, batch ``i`` while
    ``i <= --max-valid-steps`` (``--max-valid-steps N`` scores N + 1 batches per shard).  ``cfg``
    is the whole fairseq config; data are loaded in this process (workers change no batch).
    A shard's padding comes through as fairseq's empty batch."""
    from fairseq import utils

    data = cfg.dataset
    itr = task.get_batch_iterator(
        dataset=task.dataset(subset), max_tokens=data.max_tokens_valid, max_sentences=data.batch_size_valid,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=data.skip_invalid_size_inputs_valid_test,
        required_batch_size_multiple=data.required_batch_size_multiple, seed=cfg.common.seed,
        num_shards=num_shards, shard_id=shard_id, num_workers=0, epoch=1, data_buffer_size=data.data_buffer_size,
        disable_iterator_cache=True, skip_remainder_batch=False,
    ).next_epoch_itr(shuffle=False, set_dataset_epoch=False)
    for i, batch in enumerate(itr):
        if data.max_valid_steps is not None and i > data.max_valid_steps:
            break
        yield batch
