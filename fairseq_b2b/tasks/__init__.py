"""fairseq tasks of fairseq-b2b: two-stage pre-training (bert2BERT, Algorithm 2)."""
from . import b2b_language_modeling, b2b_masked_lm  # noqa: F401  (registers the tasks)
from .two_stage import Submodel, SubmodelSampler, TwoStageMixin, partition_parameters, submodels  # noqa: F401
