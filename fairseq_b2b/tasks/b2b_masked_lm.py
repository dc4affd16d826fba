"""``--task b2b_masked_lm``: fairseq's ``masked_lm`` with two-stage pre-training (Algorithm 2).

The criterion defaults to ``masked_lm`` (fairseq's default ``cross_entropy`` divides the loss by
all tokens instead of the masked ones and reports ~15% of it); an explicit
``--criterion cross_entropy`` is refused. See :mod:`fairseq_b2b.tasks.two_stage`.
"""
from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from .evaluation import EvaluationConfig, EvaluationMixin
from .two_stage import TwoStageMixin
from .two_stage_options import TwoStageConfig, fail


@dataclass
class B2BMaskedLMConfig(MaskedLMConfig, TwoStageConfig, EvaluationConfig):
    pass


@register_task("b2b_masked_lm", dataclass=B2BMaskedLMConfig)
class B2BMaskedLMTask(EvaluationMixin, TwoStageMixin, MaskedLMTask):
    """Masked LM (BERT) with stage-1 sub-model training for ``--submodel-epochs`` epochs."""

    scores_masked_positions = True

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.set_defaults(criterion="masked_lm")

    def build_criterion(self, cfg, from_checkpoint=False):
        if getattr(cfg, "_name", None) == "cross_entropy":
            fail("--task b2b_masked_lm needs --criterion masked_lm (cross_entropy divides the loss by all tokens "
                 "instead of the masked ones): drop --criterion or pass --criterion masked_lm")
        return super().build_criterion(cfg, from_checkpoint)
