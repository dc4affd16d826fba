"""fairseq tasks of fairseq-b2b: two-stage pre-training (bert2BERT, Algorithm 2) and the baselines'
training schedules (StackBERT, MSLT, share-then-unshare)."""
from . import b2b_language_modeling, b2b_masked_lm, squad  # noqa: F401  (registers the tasks)
from .schedules import (MSLTSchedule, ShareThenUnshareSchedule, StackingSchedule, TrainingSchedule,  # noqa: F401
                        TwoStageSchedule)
from .submodel_sampling import Submodel, SubmodelSampler, submodels  # noqa: F401
from .submodel_step import partition_parameters  # noqa: F401
from .two_stage import TwoStageMixin  # noqa: F401
