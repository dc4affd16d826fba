"""Exact growth's weighted-statistics LayerNorms during training (:mod:`fairseq_b2b.models.weighted_layernorm`):
blended to standard ones over ``--growth-anneal-updates`` (a function of the update number, so
resume-safe), and a warning when training stops before they are standard.
"""
import logging
from typing import Optional

from torch import nn

from fairseq.logging import metrics

from ..fairseq_args import option
from .two_stage_options import root_config

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks


class LayerNormAnnealing:
    """The annealing of the weighted LayerNorms, update by update."""

    def _anneal_layernorms(self, model, update_num: int) -> None:
        """Exact growth: blend the weighted LayerNorms towards standard ones for this update; they
        become standard modules at update N (resume-safe: a function of the update number)."""
        from ..models.weighted_layernorm import anneal, weighted_layernorms

        if self._annealed or not weighted_layernorms(model):
            self._annealed = True
            if self._anneal_checked:  # annealed in this run: the blend stays in the log, at 1
                metrics.log_scalar("ln_blend", 1.0, weight=0, priority=870, round=4)
            return
        n = int(option(self.b2b_cfg, "growth_anneal_updates", 0))
        if not self._anneal_checked:
            self._anneal_checked = True
            self._check_anneal_config(self.b2b_cfg, root_config(self.b2b_cfg), weighted_now=True)
            logger.info(f"update {update_num + 1}: weighted-statistics LayerNorms (exact growth) anneal to standard "
                        f"over --growth-anneal-updates {n}")
        t, replaced = anneal(model, update_num, n)
        metrics.log_scalar("ln_blend", t, weight=0, priority=870, round=4)
        if replaced:
            self._annealed = True
            logger.info(f"update {update_num + 1}: the {replaced} LayerNorms are standard from here on "
                        f"(--growth-anneal-updates {n} done)")

    def _weighted_blend(self) -> Optional[float]:
        """The blend of the model's weighted-statistics LayerNorms (None: it has none)."""
        from ..models.weighted_layernorm import weighted_layernorms

        found = weighted_layernorms(self._model) if isinstance(self._model, nn.Module) else []
        return found[0][1].blend if found else None

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """fairseq-train asks for the training iterator of epoch ``--max-epoch`` + 1 right before it
        stops (its last task hook): say so if the LayerNorms are still weighted then."""
        from .evaluation import is_training_split

        root = root_config(self.b2b_cfg)
        max_epoch = int(root.optimization.max_epoch or 0) if root is not None else 0
        if 0 < max_epoch < int(kwargs.get("epoch", 1)) and any(
                d is dataset and is_training_split(n) for n, d in self.datasets.items()):
            self._warn_if_weighted()
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def _warn_if_weighted(self) -> None:
        blend = self._weighted_blend()
        if blend is None:
            return
        n = int(option(self.b2b_cfg, "growth_anneal_updates", 0))
        logger.warning(f"training stopped before the exact growth's LayerNorms finished annealing: they are still "
                       f"weighted (blend t = {blend:.4g} < 1, --growth-anneal-updates {n}), and so is the last "
                       "checkpoint (its layernorm_weighted_at_end, anneal_progress); train until update "
                       f"{n} for standard LayerNorms")
