"""``--task b2b_language_modeling``: fairseq's ``language_modeling`` (GPT) with two-stage
pre-training (Algorithm 2); criterion ``cross_entropy``. See :mod:`fairseq_b2b.tasks.two_stage`.
"""
from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from .evaluation import EvaluationConfig, EvaluationMixin
from .two_stage import TwoStageMixin
from .two_stage_options import TwoStageConfig


@dataclass
class B2BLanguageModelingConfig(LanguageModelingConfig, TwoStageConfig, EvaluationConfig):
    pass


@register_task("b2b_language_modeling", dataclass=B2BLanguageModelingConfig)
class B2BLanguageModelingTask(EvaluationMixin, TwoStageMixin, LanguageModelingTask):
    """Causal LM (GPT) with stage-1 sub-model training for ``--submodel-epochs`` epochs."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.set_defaults(criterion="cross_entropy")
