"""Validation in the two-stage tasks: fairseq-train validates the depth being trained, and
``--validate-at-start`` scores the full model before update 1 (for a grown model: the loss right
after growth, the paper's Table 1), logged as a validation record at update 0.
"""
import json
import logging
import math
from typing import Optional

import torch

from .submodel_step import unwrap_model
from .two_stage_options import root_config
from .update_trace import rank_and_world

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks


class TwoStageValidation:
    """``valid_step`` at the trained depth; ``--validate-at-start``."""

    def valid_step(self, sample, model, criterion):
        """Validation in fairseq-train runs the model being trained: the active depth of the
        phase whose weights the model holds (StackBERT, MSLT), all layers otherwise."""
        depth = self._schedule.eval_depth(self._applied) if self._applied >= 0 else None
        inner = unwrap_model(model)
        if depth is None or depth == getattr(inner, "depth", depth):
            return super().valid_step(sample, model, criterion)
        with inner.submodel(depth, 0):
            return super().valid_step(sample, model, criterion)

    def validate_at_start(self, model, criterion, sample) -> Optional[float]:
        """``--validate-at-start``: the full model's loss (bits) on every ``--valid-subset`` before
        update 1, logged as a fairseq-style json validation record at update 0 (for a grown model
        this is the loss right after growth, the paper's Table 1).  It scores the batches fairseq's
        own validation scores (:func:`~fairseq_b2b.tasks.evaluation.fairseq_valid_batches`, also
        under ``--max-valid-steps``).  Validation FLOPs are not training FLOPs.  Ranks validate
        disjoint shards and sum."""
        from fairseq import utils

        from .evaluation import fairseq_valid_batches

        root = root_config(self.b2b_cfg)
        if root is None:
            return None
        device = sample["net_input"]["src_tokens"].device if isinstance(sample, dict) and sample else None
        rank, world = rank_and_world()
        was_training = model.training
        model.eval()
        result = None
        for subset in str(root.dataset.valid_subset).split(","):
            subset = subset.strip()
            try:
                self.dataset(subset)
            except KeyError:
                continue
            totals = torch.zeros(2, dtype=torch.float64)
            with torch.no_grad():
                for batch in fairseq_valid_batches(self, root, subset, unwrap_model(model), world, rank):
                    if not batch:
                        continue
                    if device is not None and device.type == "cuda":
                        batch = utils.move_to_cuda(batch, device=device)
                    _, sample_size, log = self.valid_step(batch, model, criterion)
                    totals[0] += float(log.get("loss", 0.0))
                    totals[1] += float(sample_size)
            if world > 1:
                reduced = totals.to(device) if device is not None and device.type == "cuda" else totals
                torch.distributed.all_reduce(reduced)
                totals = reduced.cpu()
            if totals[1] <= 0:
                continue
            loss = float(totals[0] / totals[1] / math.log(2))
            result = loss if result is None else result
            record = {"epoch": self._epoch, f"{subset}_loss": f"{loss:.6f}", f"{subset}_ppl": f"{2 ** loss:.2f}",
                      f"{subset}_num_updates": "0", f"{subset}_train_flops": str(int(self.train_flops)),
                      f"{subset}_at_start": True}
            if rank == 0:
                logger.info(f"validation at update 0 (--validate-at-start) on '{subset}' subset | "
                            + json.dumps(record))
        if was_training:
            model.train()
        return result
