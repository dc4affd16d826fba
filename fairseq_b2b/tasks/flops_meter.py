"""FLOPs metering of the two-stage tasks (:mod:`fairseq_b2b.flops`): every update's token counts travel
in the logging outputs, are summed over micro-batches and ranks by fairseq, and become the
cumulative ``train_flops`` in ``reduce_metrics`` (kept in the checkpoint).
"""
from typing import Optional, Tuple

import torch

from fairseq.logging import metrics

from .submodel_sampling import Submodel

_STAT_KEYS = ("b2b_ntok", "b2b_sqtok", "b2b_scored", "b2b_depth", "b2b_depth_sq", "b2b_count", "b2b_missed_hi",
              "b2b_missed_lo")
_MISSED_SPLIT = 2 ** 32  # FLOPs of never-reduced attempts travel as (hi, lo): exact in a float64 sum


class FlopsMeter:
    """``train_flops``: the FLOPs of every update, the never-reduced (overflowed) ones included."""

    #: whether the criterion projects every position when nothing is masked (masked LM)
    scores_masked_positions = False

    def scored_positions(self, sample, n_tokens):
        target = sample["target"]
        scored = target.ne(self.target_dictionary.pad()).sum()
        if self.scores_masked_positions:  # fairseq projects every position when nothing is masked
            scored = torch.where(scored > 0, scored, n_tokens)
        return scored

    def _shape(self, sub: Optional[Submodel]) -> Tuple[int, int, bool]:
        """(depth, trainable_from, frozen_input) of the sub-model an update ran (None: the full model)."""
        if sub is None:
            return self._flops.depth, 0, False
        return sub.depth, sub.trainable_from, sub.frozen_input

    def _add_flop_stats(self, logging_output, sample, sub: Optional[Submodel]) -> None:
        """This micro-batch's counts (summed over micro-batches and ranks by fairseq, turned into
        FLOPs by ``reduce_metrics``), and the FLOPs of earlier attempts that fairseq never reduced.

        fairseq's ``Trainer.train_step`` skips ``reduce_metrics`` (and, but for AMP,
        ``optimizer_step``) for an update whose fp16/AMP gradients overflowed, yet its forward and
        backward ran.  An attempt starts with no gradient (the trainer zeroes them first, also
        before the retry), so a micro-batch that finds none while ``_attempt`` holds micro-batches
        starts a new attempt after one that was never reduced; that works for every optimizer
        wrapper, whereas ``DynamicLossScaler._iter`` exists for fp16 only.  Its FLOPs go in
        ``_missed`` until a reduced logging output carries them: every rank adds its own, every
        micro-batch has the keys (fairseq's fast stat sync sums the keys of the first), split in
        two so that the float64 sum stays exact."""
        if self._flops is None:
            return
        src = sample["net_input"]["src_tokens"]
        lengths = src.ne(self.source_dictionary.pad()).sum(dim=1)
        n_tokens = lengths.sum()
        depth = sub.depth if sub is not None else self._flops.depth
        logging_output["b2b_ntok"] = n_tokens
        logging_output["b2b_sqtok"] = (lengths * lengths).sum()
        logging_output["b2b_scored"] = self.scored_positions(sample, n_tokens)
        logging_output["b2b_depth"] = depth
        logging_output["b2b_depth_sq"] = depth * depth
        logging_output["b2b_count"] = 1
        missed = self._missed if not self._attempt else 0  # on the attempt's first micro-batch
        logging_output["b2b_missed_hi"], logging_output["b2b_missed_lo"] = divmod(missed, _MISSED_SPLIT)
        self._attempt.append(((logging_output["b2b_ntok"], logging_output["b2b_sqtok"],
                               logging_output["b2b_scored"]), sub))

    def _attempt_flops(self) -> int:
        return sum(self._flops.update_flops(*(int(c) for c in counts), *self._shape(sub))
                   for counts, sub in self._attempt)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not logging_outputs or not any("b2b_ntok" in log for log in logging_outputs):
            if logging_outputs and self._flops is not None:  # validation: where it sits on the FLOPs axis
                metrics.log_scalar("train_flops", torch.tensor(float(self.train_flops), dtype=torch.float64),
                                   weight=0, priority=860)
            return
        sums = {k: float(sum(log.get(k, 0) for log in logging_outputs)) for k in _STAT_KEYS}
        missed = _MISSED_SPLIT * int(round(sums["b2b_missed_hi"])) + int(round(sums["b2b_missed_lo"]))
        self._attempt, self._missed = [], 0
        if sums["b2b_count"] == 0 or self._last is None:
            return
        update_num, sub = self._last
        mean = sums["b2b_depth"] / sums["b2b_count"]
        local, trainable_from, frozen = self._shape(sub)
        if abs(mean - local) > 1e-6 or abs(sums["b2b_depth_sq"] / sums["b2b_count"] - mean * mean) > 1e-6:
            raise RuntimeError(f"fairseq-b2b: data-parallel ranks ran different sub-models at update {update_num} "
                               f"(mean depth {mean}, this rank {local})")
        n_tok, sq_tok, scored = (int(round(sums[k])) for k in ("b2b_ntok", "b2b_sqtok", "b2b_scored"))
        flops = self._flops.update_flops(n_tok, sq_tok, scored, local, trainable_from, frozen)
        self.train_flops += flops + missed
        metrics.log_scalar("subdepth", local, weight=1, priority=850, round=2)
        # A float64 tensor: fairseq's json log prints tensors with full precision ("{:g}" otherwise).
        metrics.log_scalar("train_flops", torch.tensor(float(self.train_flops), dtype=torch.float64),
                           weight=0, priority=860)
        if self.b2b_cfg.submodel_trace:
            self._trace(logging_outputs, update_num, sub, flops, (n_tok, sq_tok, scored), missed)
