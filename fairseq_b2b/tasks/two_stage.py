"""Two-stage pre-training (bert2BERT, Algorithm 2) for fairseq tasks.

Stage 1 (epochs 1..Eb, lines 3-9): the sub-models are the bottom lb, 2*lb, ... layers of the
target plus the one shared LM head (line 2). Each update samples one sub-model (line 5), runs
it forward (line 6) and updates only its top lb layers and the head (line 7):

* layers below the top lb run under ``torch.no_grad`` (``model.submodel``): no activations are
  kept and no backward runs through them, so the saving is real;
* the head is the paper's "shared classification head": BERT's LM head (dense, LayerNorm,
  output bias), GPT's final LayerNorm, and the tied token-embedding matrix *as the head's output
  projection*. The embedding block (token lookup, positions, embedding LayerNorm) runs without
  gradient in stage 1 - the bottom sub-model's input is detached - so the tied matrix is
  trained only through the output projection, and positional embeddings and the embedding
  LayerNorm stay fixed until stage 2;
* ``Lt`` not divisible by ``lb``: the sub-models are lb, 2*lb, ..., k*lb and finally the full
  ``Lt`` layers, whose top lb layers are trained (so those layers overlap the previous block);
* the sub-model of update u is a pure function of (``--seed``, u) (:class:`SubmodelSampler`):
  every data-parallel rank draws the same one, and a resumed run draws the same sequence;
* the optimizer step is restricted to the active parameters
  (:class:`fairseq_b2b.optim.RestrictedStep`): everything else, and its Adam state, stays
  bit-identical.

Stage 2 (epochs Eb+1..E, lines 10-15) is the parent task's own ``train_step``/``optimizer_step``.
Both stages meter FLOPs (:mod:`fairseq_b2b.flops`) and log a cumulative ``train_flops`` that
is kept in the checkpoint.

The baselines of the paper's comparison run through the same machinery as other
:mod:`training schedules <fairseq_b2b.tasks.schedules>` (one at a time, with
``--submodel-epochs 0``): StackBERT (``--stacking-schedule 3:5,6:7,12:28``), MSLT
(``--mslt-layers 3 --mslt-stage-epochs 8``) and share-then-unshare (``--share-layers-until
N|epoch:N``). The model always has the target depth; per update the schedule names the
:class:`Submodel` that runs (depth, trained layers, embeddings trained or detached, layers
shared), and at a phase boundary the weight copies and optimizer-state resets it asks for are
applied once - "last boundary applied" is kept in the checkpoint beside ``train_flops``, so a
resumed run neither repeats nor skips one. Validation runs the depth being trained.

The jobs live in one file each: the options and their checks (:mod:`.two_stage_options`), the
sub-models and how one is sampled (:mod:`.submodel_sampling`), how one runs an update
(:mod:`.submodel_step`), the phase boundaries (:mod:`.boundaries`), FLOPs (:mod:`.flops_meter`),
validation and ``--validate-at-start`` (:mod:`.validation`), exact growth's LayerNorm annealing
(:mod:`.layernorm_anneal`), the checkpoint state (:mod:`.checkpoint_state`) and the debug trace
(:mod:`.update_trace`); :class:`TwoStageMixin` puts them together.
"""

import logging
from typing import List, Optional, Tuple

from ..fairseq_args import option
from ..flops import FlopsModel
from ..optim.restrict import OptimizerSurgery, RestrictedStep
from .boundaries import ScheduleBoundaries
from .checkpoint_state import CheckpointState
from .flops_meter import FlopsMeter
from .layernorm_anneal import LayerNormAnnealing
from .schedules import (Boundary, MSLTSchedule, ShareThenUnshareSchedule, StackingSchedule, TrainingSchedule,
                        TwoStageSchedule, parse_share_until, parse_stacking_schedule)
from .submodel_sampling import Submodel, SubmodelSampler, submodels
from .submodel_step import SubmodelStep, active_submodel, partition_parameters, stage1_submodel, unwrap_model
from .two_stage_options import TwoStageConfig, TwoStageOptions, root_config, fail
from .update_trace import UpdateTrace, layer_digests, trace_path_for_rank
from .validation import TwoStageValidation

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks


class TwoStageMixin(TwoStageOptions, ScheduleBoundaries, SubmodelStep, TwoStageValidation, FlopsMeter, UpdateTrace,
                    LayerNormAnnealing, CheckpointState):
    """Algorithm 2 and the training schedules on top of a fairseq task (put it first in the bases)."""

    # -- set-up: fairseq's task hooks ----------------------------------------------------------

    def __init__(self, cfg, *args, **kwargs):
        super().__init__(cfg, *args, **kwargs)
        self.init_two_stage(cfg)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        cls.check_two_stage_config(cfg, bool(kwargs.get("from_checkpoint", False)))
        return super().setup_task(cfg, **kwargs)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.setup_two_stage(model, from_checkpoint)
        return model

    def init_two_stage(self, cfg) -> None:
        self.b2b_cfg = cfg
        self.submodel_epochs = int(option(cfg, "submodel_epochs", 0))
        self.submodel_layers = int(cfg.submodel_layers)
        self.train_flops = 0
        self._epoch = 1
        self._schedule: TrainingSchedule = TrainingSchedule(0)
        self._sampler: Optional[SubmodelSampler] = None
        self._flops: Optional[FlopsModel] = None
        self._active: dict = {}
        self._active_model = None
        self._restricted: Optional[RestrictedStep] = None
        self._surgery: Optional[OptimizerSurgery] = None
        self._last: Optional[Tuple[int, Optional[Submodel]]] = None
        self._applied = -1  # index of the last schedule boundary applied (kept in the checkpoint)
        self._logged_phase: Optional[int] = None
        self._events: Tuple[int, list] = (-1, [])  # boundaries applied at an update (for the trace)
        self._digests: Tuple[int, Optional[List[str]]] = (-1, None)
        self._validated_at_start = False
        self._annealed = False  # no weighted LayerNorm left to anneal
        self._anneal_checked = False
        self._model = None  # the model trained (for the checkpoint's LayerNorm record)
        self._attempt: list = []  # (counts, sub-model) of this update attempt's micro-batches, not yet reduced
        self._missed = 0  # FLOPs of earlier attempts never reduced (overflow), carried by the next logging output

    def setup_two_stage(self, model, from_checkpoint: bool = False) -> None:
        """After the model is built: check the schedule against its depth, build it and the
        FLOPs meter (Algorithm 2, line 2)."""
        from ..models.common import SubmodelMixin

        self._model = model
        try:
            self._flops = FlopsModel.from_model(model)
        except ValueError as e:
            self._flops = None
            logger.warning(f"fairseq-b2b: train_flops not metered: {e}")
        cfg = self.b2b_cfg
        given = self._schedule_options(cfg)
        if self.submodel_epochs == 0 and not given:
            self._schedule = TrainingSchedule(getattr(model, "depth", 0))
            logger.info("two-stage training off (--submodel-epochs 0): full-model training, FLOPs metered")
            return
        what = given[0] if given else "stage-1 sub-model training"
        if not isinstance(model, SubmodelMixin):
            fail(f"{what} needs a b2b_ architecture ({type(model).__name__} has no sub-models): "
                 "use --arch b2b_bert_*/b2b_gpt_*" + ("" if given else " or pass --submodel-epochs 0"))
        depth = model.depth
        root = None if from_checkpoint else root_config(cfg)
        max_epoch = int(root.optimization.max_epoch or 0) if root is not None else 0
        if self.submodel_epochs > 0:
            if not 1 <= self.submodel_layers <= depth:
                fail(f"--submodel-layers {self.submodel_layers} exceeds the model's {depth} layers: "
                     f"pass 1 <= --submodel-layers <= {depth}, or --submodel-epochs 0")
            self._schedule = TwoStageSchedule(depth, self.submodel_layers, self.submodel_epochs, int(cfg.seed),
                                              bool(option(cfg, "submodel_train_embeddings", False)))
            self._sampler = self._schedule.sampler
        elif option(cfg, "stacking_schedule") is not None:
            stages = parse_stacking_schedule(cfg.stacking_schedule)
            if stages[-1][0] != depth:
                fail(f"--stacking-schedule {cfg.stacking_schedule} ends at depth {stages[-1][0]} but the target model "
                     f"has {depth} layers: the last depth must be the model's ({depth})")
            self._schedule = StackingSchedule(depth, stages)
        elif int(option(cfg, "mslt_layers", 0) or 0) > 0:
            k = int(cfg.mslt_layers)
            stage_epochs = int(cfg.mslt_stage_epochs) if option(cfg, "mslt_stage_epochs") is not None else 8
            if k > depth or depth % k:
                fail(f"--mslt-layers {k} does not divide the target model's {depth} layers: each MSLT stage adds "
                     f"--mslt-layers layers until the model's depth")
            needed = depth // k * stage_epochs
            if max_epoch > 0 and needed > max_epoch:
                fail(f"--mslt-layers {k} --mslt-stage-epochs {stage_epochs} needs {depth // k} stages = {needed} "
                     f"epochs but --max-epoch is {max_epoch}: pass --max-epoch >= {needed} (the rest trains the full "
                     f"model)")
            self._schedule = MSLTSchedule(depth, k, stage_epochs, max_epoch)
        else:
            unit, n = parse_share_until(cfg.share_layers_until)
            self._schedule = ShareThenUnshareSchedule(depth, unit, n)
        logger.info(self._schedule.describe())

    # -- the update ---------------------------------------------------------------------------

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        inner = unwrap_model(model)
        self._model = inner
        if self._attempt and not any(p.grad is not None for p in inner.parameters()):
            self._missed += self._attempt_flops()  # the previous attempt never reached reduce_metrics
            self._attempt = []
        if update_num == 0 and option(self.b2b_cfg, "validate_at_start", False) and not self._validated_at_start:
            self._validated_at_start = True
            self.validate_at_start(model, criterion, sample)
        self._enter_phase(inner, optimizer, update_num)
        self._anneal_layernorms(inner, update_num)
        if self.b2b_cfg.submodel_trace and self._digests[0] != update_num:
            self._digests = (update_num, layer_digests(inner))
        sub = self.submodel_for(update_num)
        if sub is None:  # full model: the parent task, untouched
            loss, sample_size, logging_output = super().train_step(
                sample, model, criterion, optimizer, update_num, ignore_grad=ignore_grad, **kwargs)
        else:
            loss, sample_size, logging_output = self._submodel_train_step(
                sub, sample, model, criterion, optimizer, update_num, ignore_grad)
        self._last = (update_num, sub)
        self._add_flop_stats(logging_output, sample, sub)
        return loss, sample_size, logging_output


__all__ = ["TwoStageConfig", "TwoStageMixin", "Submodel", "SubmodelSampler", "submodels", "partition_parameters",
           "stage1_submodel", "active_submodel", "layer_digests", "fail", "trace_path_for_rank", "Boundary",
           "TrainingSchedule", "TwoStageSchedule", "StackingSchedule", "MSLTSchedule", "ShareThenUnshareSchedule"]
