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
"""

import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import nn

from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..fairseq_args import option
from ..flops import FlopsModel, layer_stack_owner
from ..optim.restrict import OptimizerSurgery, RestrictedStep, UnsupportedOptimizer
from .schedules import (Boundary, MSLTSchedule, ShareThenUnshareSchedule, StackingSchedule, Submodel,
                        SubmodelSampler, TrainingSchedule, TwoStageSchedule, parse_share_until,
                        parse_stacking_schedule, submodels)

logger = logging.getLogger("fairseq_b2b.two_stage")

PAPER_SUBMODEL_EPOCHS = 5  # Eb of the paper (section 4.1), the default for a grown model

GROWTH_ANNEAL_UPDATES = 1000  # default of --growth-anneal-updates (README, "Exact growth")

_STAT_KEYS = ("b2b_ntok", "b2b_sqtok", "b2b_scored", "b2b_depth", "b2b_depth_sq", "b2b_count", "b2b_missed_hi",
              "b2b_missed_lo")
_MISSED_SPLIT = 2 ** 32  # FLOPs of never-reduced attempts travel as (hi, lo): exact in a float64 sum


def fail(message: str):
    """A one-line error before training starts (fairseq prints the message, not a traceback)."""
    raise SystemExit(f"fairseq-b2b: error: {message}")


@dataclass
class TwoStageConfig(FairseqDataclass):
    submodel_epochs: Optional[int] = field(
        default=None, metadata={"help": "Eb of Algorithm 2: epochs of stage-1 sub-model training; 0 switches stage 1 off "
                                        f"(default: {PAPER_SUBMODEL_EPOCHS}, the paper's, for a model grown with "
                                        "--init-from-small; 0, plain training, otherwise)"})
    submodel_layers: int = field(
        default=3, metadata={"help": "lb of Algorithm 2: sub-models are the bottom lb, 2*lb, ..., Lt layers and each "
                                     "stage-1 update trains the top lb layers of one of them plus the shared head"})
    submodel_train_embeddings: bool = field(
        default=False, metadata={"help": "stage 1: the bottom sub-model also trains the embedding block (token lookup, "
                                         "positions, embedding LayerNorm), reading Algorithm 2 line 6 as forward and "
                                         "backward of the whole sub-model; default: off (the embedding output is "
                                         "detached and the tied matrix learns through the head only)"})
    validate_at_start: bool = field(
        default=False, metadata={"help": "validate the full model on the --valid-subset right before the first update "
                                         "(a grown model: the loss right after growth) and log it as a validation "
                                         "record at update 0; default: off"})
    growth_anneal_updates: int = field(
        default=GROWTH_ANNEAL_UPDATES, metadata={
            "help": "exact growth (--growth-exact): the weighted-statistics LayerNorms blend linearly to standard "
                    "ones over this many updates, after which the model and its checkpoints are ordinary; 0: the "
                    f"exact mode keeps standard LayerNorms (mean-filled entries, see README); default "
                    f"{GROWTH_ANNEAL_UPDATES}"})
    submodel_trace: Optional[str] = field(
        default=None, metadata={"help": "debug: append one JSON line per update (sub-model, exact loss, FLOPs, "
                                        "boundary applied, a digest of every layer's weights at the start of the "
                                        "update) to this file; rank r > 0 writes FILE.rank<r>"})
    stacking_schedule: Optional[str] = field(
        default=None, metadata={"help": "StackBERT baseline (Gong et al. 2019): depth:epochs pairs, e.g. 3:5,6:7,12:28 "
                                        "trains 3 layers for 5 epochs, stacks them to 6 (layer 3+i <- layer i), trains "
                                        "7 epochs, stacks to 12, trains 28; the last depth must be the model's and "
                                        "runs until the end of training; needs --submodel-epochs 0"})
    mslt_layers: int = field(
        default=0, metadata={"help": "MSLT baseline (Yang et al. 2020): stage 1 trains a model of this many layers, "
                                     "each further stage copies the top ones on top and trains only those + the "
                                     "LM head, until the model's depth; then full-model training; 0 = off; needs "
                                     "--submodel-epochs 0"})
    mslt_stage_epochs: Optional[int] = field(
        default=None, metadata={"help": "MSLT: epochs per stage (default 8, the paper's)"})
    share_layers_until: Optional[str] = field(
        default=None, metadata={"help": "share-then-unshare: all layers use one set of weights until this update "
                                        "count (e.g. 3000) or epoch (epoch:N), then each layer gets its own copy; "
                                        "needs --submodel-epochs 0"})


def partition_parameters(model) -> Tuple[List[nn.Parameter], List[List[nn.Parameter]], List[nn.Parameter]]:
    """(embedding block, per-layer parameters, head) of a b2b model; they cover all parameters.

    The head is everything outside the layer stack and the embedding block, plus the tied
    token embedding when it is also the head's output projection."""
    owner = layer_stack_owner(model)
    layers = [list(layer.parameters()) for layer in owner.layers]
    layer_ids = {id(p) for ps in layers for p in ps}
    input_ids = set()
    for name in ("embed_tokens", "embed_positions", "layernorm_embedding", "emb_layer_norm", "project_in_dim",
                 "quant_noise"):
        module = getattr(owner, name, None)
        if isinstance(module, nn.Module):
            input_ids.update(id(p) for p in module.parameters())
    output_ids = set()
    for module in (getattr(getattr(model, "encoder", None), "lm_head", None),
                   getattr(getattr(model, "decoder", None), "output_projection", None)):
        if isinstance(module, nn.Module):
            output_ids.update(id(p) for p in module.parameters())
    embedding, head = [], []
    for p in model.parameters():
        if id(p) in layer_ids:
            continue
        (embedding if id(p) in input_ids and id(p) not in output_ids else head).append(p)
    return embedding, layers, head


def _detach_input(module, args, kwargs):
    if args:
        return (args[0].detach(),) + tuple(args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["x"] = kwargs["x"].detach()
    return args, kwargs


@contextlib.contextmanager
def active_submodel(model, sub: Submodel):
    """The model as ``sub`` for one update: its bottom ``depth`` layers, those below
    ``trainable_from`` without autograd (Algorithm 2, lines 5-6; MSLT's frozen layers), every
    position running layer 0 when ``sub.shared``, and the embedding output detached when the
    lowest trained layer is layer 0 but the embedding block is not trained (Algorithm 2's stage 1;
    StackBERT and MSLT's first stage train it)."""
    ctx = model.shared_layers(sub.depth) if sub.shared else model.submodel(sub.depth, sub.trainable_from)
    with ctx:
        handle = None
        if sub.trainable_from == 0 and not sub.train_embeddings:
            handle = layer_stack_owner(model).layers[0].register_forward_pre_hook(_detach_input, with_kwargs=True)
        try:
            yield model
        finally:
            if handle is not None:
                handle.remove()


stage1_submodel = active_submodel  # the name Algorithm 2's code and tests use


def layer_digests(model) -> List[str]:
    """A short digest of each layer's parameters (bit-exact identity of layers, for traces)."""
    out = []
    for layer in layer_stack_owner(model).layers:
        h = hashlib.sha1()
        for p in layer.parameters():
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        out.append(h.hexdigest()[:16])
    return out


def unwrap_model(model):
    """The fairseq model inside the data-parallel wrappers."""
    from ..models.common import SubmodelMixin

    m = model
    for _ in range(8):
        if isinstance(m, SubmodelMixin) or m is None:
            break
        m = getattr(m, "module", None)
    return m if m is not None else model


def _ddp_requiring_all_grads(model) -> bool:
    """True for a ``pytorch_ddp`` wrapper built without ``--find-unused-parameters``: its
    reducer waits for a gradient of every parameter in every backward."""
    m = model
    for _ in range(8):
        if isinstance(m, torch.nn.parallel.DistributedDataParallel):
            return not m.find_unused_parameters
        m = getattr(m, "module", None)
        if m is None:
            return False
    return False


def _root_config(cfg):
    """The whole fairseq config above a task config (None outside fairseq-train)."""
    try:
        parent = cfg._get_parent()
    except AttributeError:
        return None
    try:
        if parent is not None and "common" in parent and "optimization" in parent:
            return parent
    except Exception:
        return None
    return None


def _model_option(root, name: str):
    """A model option of the whole fairseq config (a DictConfig or a Namespace; None if absent)."""
    model = None if root is None else root.get("model", None)
    if model is None:
        return None
    if hasattr(model, "get") and not isinstance(model, type):
        try:
            return model.get(name, None)
        except Exception:
            return None
    return getattr(model, name, None)


def _rank_and_world() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TwoStageMixin:
    """Algorithm 2 and the training schedules on top of a fairseq task (put it first in the bases)."""

    #: whether the criterion projects every position when nothing is masked (masked LM)
    scores_masked_positions = False

    # -- set-up -------------------------------------------------------------------------------

    @staticmethod
    def _schedule_options(cfg) -> List[str]:
        """The schedule options given (at most one is allowed)."""
        given = []
        if option(cfg, "stacking_schedule") is not None:
            given.append(f"--stacking-schedule {cfg.stacking_schedule}")
        if int(option(cfg, "mslt_layers", 0) or 0) != 0:
            given.append(f"--mslt-layers {cfg.mslt_layers}")
        if option(cfg, "share_layers_until") is not None:
            given.append(f"--share-layers-until {cfg.share_layers_until}")
        return given

    @classmethod
    def check_two_stage_config(cls, cfg, from_checkpoint: bool = False) -> None:
        """Bad input -> one-line error before training starts; force per-parameter fp16
        master copies when stage 1 or a schedule runs with --fp16 (see fairseq_b2b.optim.restrict)."""
        cls._resolve_submodel_epochs(cfg, from_checkpoint)
        eb, lb = int(cfg.submodel_epochs), int(cfg.submodel_layers)
        if eb < 0:
            fail(f"--submodel-epochs {eb} is negative: pass the number of stage-1 epochs (0 switches stage 1 off)")
        if lb < 1:
            fail(f"--submodel-layers {lb} must be >= 1: it is the number of layers each stage-1 update trains")
        schedule = cls._check_schedule_options(cfg, eb)
        root = None if from_checkpoint else _root_config(cfg)
        cls._check_anneal_config(cfg, root)
        if root is None or (eb == 0 and schedule is None):
            return
        what = "stage-1 sub-model training" if eb > 0 else schedule.split(" ")[0]
        off = "pass --submodel-epochs 0" if eb > 0 else f"drop {what}"
        max_epoch = int(root.optimization.max_epoch or 0)
        max_update = int(root.optimization.max_update or 0)
        if eb > 0 and max_epoch > 0 and eb >= max_epoch:
            fail(f"--submodel-epochs {eb} leaves no full-model epoch with --max-epoch {max_epoch}: "
                 f"stage 2 runs epochs Eb+1..E, so pass --submodel-epochs < --max-epoch")
        if option(cfg, "stacking_schedule") is not None and max_epoch > 0:
            epochs = sum(e for _, e in parse_stacking_schedule(cfg.stacking_schedule))
            if epochs > max_epoch:
                fail(f"--stacking-schedule {cfg.stacking_schedule} needs {epochs} epochs but --max-epoch is "
                     f"{max_epoch}: make the epochs add up to at most --max-epoch")
        if option(cfg, "share_layers_until") is not None:
            unit, n = parse_share_until(cfg.share_layers_until)
            limit = max_epoch if unit == "epoch" else max_update
            if limit > 0 and n >= limit:
                fail(f"--share-layers-until {cfg.share_layers_until} never unshares: the run stops at "
                     f"--max-{unit} {limit}; pass a value below it")
        if root.optimization.get("use_bmuf", False):
            fail(f"{what} does not support --use-bmuf: {off}")
        if root.distributed_training.get("zero_sharding", "none") != "none":
            fail(f"{what} does not support --zero-sharding: {off}")
        backend = str(root.distributed_training.get("ddp_backend", "pytorch_ddp"))
        if backend in ("fully_sharded", "slowmo"):
            fail(f"{what} does not support --ddp-backend {backend}: use --ddp-backend pytorch_ddp or legacy_ddp, "
                 f"or {off}")
        common = root.common
        half = "--fp16" if common.fp16 else "--bf16" if common.get("bf16", False) else None
        memory_efficient = common.memory_efficient_fp16 or common.get("memory_efficient_bf16", False)
        if half and not memory_efficient and not common.fp16_no_flatten_grads:
            common.fp16_no_flatten_grads = True
            logger.warning(f"fairseq-b2b: {what} updates a subset of the parameters, so {half} keeps per-parameter "
                           "fp32 master copies: --fp16-no-flatten-grads is on for this run")

    @staticmethod
    def _check_anneal_config(cfg, root, weighted_now: bool = False) -> None:
        """--growth-anneal-updates: not negative; within --max-update when the model anneals (grown
        now with --growth-exact / --growth-weighted-layernorm, or ``weighted_now``)."""
        n = int(option(cfg, "growth_anneal_updates", 0))
        if n < 0:
            fail(f"--growth-anneal-updates {n} is negative: pass the number of updates over which the exact growth's "
                 "weighted LayerNorms become standard (0 keeps standard LayerNorms)")
        if root is None or n == 0:
            return
        model = getattr(root, "model", None)  # a Namespace for the b2b_ archs
        grows_weighted = bool(getattr(model, "init_from_small", None)) and bool(
            getattr(model, "growth_exact", False) or getattr(model, "growth_weighted_layernorm", False))
        max_update = int(root.optimization.max_update or 0)
        if (grows_weighted or weighted_now) and 0 < max_update < n:
            fail(f"--growth-anneal-updates {n} is larger than --max-update {max_update}: the LayerNorms would still be "
                 f"weighted when training stops; pass --growth-anneal-updates <= {max_update}")

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
            self._check_anneal_config(self.b2b_cfg, _root_config(self.b2b_cfg), weighted_now=True)
            logger.info(f"update {update_num + 1}: weighted-statistics LayerNorms (exact growth) anneal to standard "
                        f"over --growth-anneal-updates {n}")
        t, replaced = anneal(model, update_num, n)
        metrics.log_scalar("ln_blend", t, weight=0, priority=870, round=4)
        if replaced:
            self._annealed = True
            logger.info(f"update {update_num + 1}: the {replaced} LayerNorms are standard from here on "
                        f"(--growth-anneal-updates {n} done)")

    @classmethod
    def _resolve_submodel_epochs(cls, cfg, from_checkpoint: bool) -> None:
        """``--submodel-epochs`` not given: Eb = 5 (the paper's) for a model grown with
        ``--init-from-small`` (also when the run resumes and the growth hook skips the growth), 0 -
        plain training - for one trained from scratch or with a baseline schedule. The value is
        written back into the task config (so checkpoints record what ran) and logged."""
        if option(cfg, "submodel_epochs") is not None:
            eb = int(cfg.submodel_epochs)
            if eb > 0 and not from_checkpoint:
                grown = _model_option(_root_config(cfg), "init_from_small")
                logger.info(f"fairseq-b2b: stage-1 sub-model training for {eb} epochs (--submodel-epochs {eb}"
                            f"{'' if grown else ', asked for on a model that is not grown (no --init-from-small)'})")
            return
        root = None if from_checkpoint else _root_config(cfg)
        grown = bool(_model_option(root, "init_from_small"))
        schedule = cls._schedule_options(cfg)
        cfg.submodel_epochs = PAPER_SUBMODEL_EPOCHS if grown and not schedule else 0
        if from_checkpoint or root is None:
            return
        with contextlib.suppress(Exception):  # fairseq hands the task a merged copy of cfg.task
            root.task.submodel_epochs = cfg.submodel_epochs
        if cfg.submodel_epochs:
            logger.info(f"fairseq-b2b: a model grown with --init-from-small: stage-1 sub-model training for "
                        f"{PAPER_SUBMODEL_EPOCHS} epochs (the paper's default --submodel-epochs {PAPER_SUBMODEL_EPOCHS}; "
                        "--submodel-epochs 0 switches it off)")
        elif not schedule:
            logger.info("fairseq-b2b: no --init-from-small: plain full-model training (--submodel-epochs defaults to 0 "
                        "for a model trained from scratch; pass --submodel-epochs N for stage-1 sub-model training)")

    @classmethod
    def _check_schedule_options(cls, cfg, eb: int) -> Optional[str]:
        """Syntax and combinations of the schedule options; returns the one given (or None)."""
        given = cls._schedule_options(cfg)
        if option(cfg, "mslt_stage_epochs") is not None and int(option(cfg, "mslt_layers", 0) or 0) == 0:
            fail("--mslt-stage-epochs needs --mslt-layers (the number of layers each MSLT stage adds)")
        if len(given) > 1:
            fail(f"{given[0]} and {given[1]} are different training methods: pass only one of them")
        if not given:
            return None
        if eb > 0:
            fail(f"{given[0]} cannot be combined with stage-1 sub-model training (--submodel-epochs {eb}): "
                 f"drop --submodel-epochs or pass --submodel-epochs 0")
        try:
            if option(cfg, "stacking_schedule") is not None:
                parse_stacking_schedule(cfg.stacking_schedule)
            if option(cfg, "share_layers_until") is not None:
                parse_share_until(cfg.share_layers_until)
        except ValueError as e:
            fail(str(e))
        k = int(option(cfg, "mslt_layers", 0) or 0)
        if k < 0:
            fail(f"--mslt-layers {k} is negative: pass the number of layers each MSLT stage adds (0 = off)")
        stage_epochs = option(cfg, "mslt_stage_epochs")
        if k > 0 and stage_epochs is not None and int(stage_epochs) < 1:
            fail(f"--mslt-stage-epochs {stage_epochs} must be >= 1")
        return given[0]

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
        root = None if from_checkpoint else _root_config(cfg)
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

    # -- schedule bookkeeping -----------------------------------------------------------------

    def in_stage1(self) -> bool:
        return self._sampler is not None and self._epoch <= self.submodel_epochs

    def submodel_for(self, update_num: int) -> Optional[Submodel]:
        """What update ``update_num`` runs (None: the full model, the parent task's step)."""
        return self._schedule.submodel(self._epoch, update_num)

    def begin_epoch(self, epoch, model):
        self._epoch = int(epoch)
        sched = self._schedule
        if not isinstance(sched, ShareThenUnshareSchedule) or sched.unit == "epoch":
            phase = sched.phase(self._epoch, 0)
            if type(sched) is not TrainingSchedule and phase != self._logged_phase:
                logger.info(f"epoch {epoch}: {sched.phase_description(phase)}")
            self._logged_phase = phase
        super().begin_epoch(epoch, model)

    def _enter_phase(self, model, optimizer, update_num: int) -> None:
        """Apply the boundaries between the last one applied and this update's phase, once."""
        target = self._schedule.phase(self._epoch, update_num)
        while self._applied < target:
            boundary = self._schedule.boundary(self._applied + 1)
            if boundary is not None:
                self._apply_boundary(model, optimizer, boundary)
                logger.info(f"epoch {self._epoch}, before update {update_num + 1}: {boundary.message}")
                if self._events[0] != update_num:
                    self._events = (update_num, [])
                self._events[1].append({"index": boundary.index, "copies": [list(c) for c in boundary.copies],
                                        "reset": list(boundary.reset), "untie": boundary.untie})
            self._applied += 1
            if isinstance(self._schedule, ShareThenUnshareSchedule) and self._schedule.unit != "epoch":
                logger.info(f"update {update_num + 1}: {self._schedule.phase_description(self._applied)}")

    def _surgery_for(self, optimizer) -> OptimizerSurgery:
        if self._surgery is None or self._surgery.optimizer is not optimizer:
            try:
                self._surgery = OptimizerSurgery(optimizer)
            except UnsupportedOptimizer as e:
                raise SystemExit(f"fairseq-b2b: error: {e}") from None
        return self._surgery

    def _apply_boundary(self, model, optimizer, boundary: Boundary) -> None:
        """Weight copies, then optimizer-state resets, then (untie) layer 0's state to every layer."""
        surgery = self._surgery_for(optimizer)
        layers = layer_stack_owner(model).layers
        for src, dst in boundary.copies:
            for p_dst, p_src in zip(layers[dst].parameters(), layers[src].parameters()):
                surgery.assign(p_dst, p_src)
            with torch.no_grad():
                for b_dst, b_src in zip(layers[dst].buffers(), layers[src].buffers()):
                    b_dst.copy_(b_src)
        for i in boundary.reset:
            for p in layers[i].parameters():
                surgery.reset(p)
        if boundary.untie:
            for layer in layers[1:]:
                for p_dst, p_src in zip(layer.parameters(), layers[0].parameters()):
                    surgery.copy_state(p_dst, p_src)

    def _mirror_shared(self, model, optimizer) -> None:
        """During sharing: layer 0's new weights into every other layer (checkpoints and
        validation see the shared function)."""
        surgery = self._surgery_for(optimizer)
        layers = layer_stack_owner(model).layers
        for layer in layers[1:]:
            for p_dst, p_src in zip(layer.parameters(), layers[0].parameters()):
                surgery.assign(p_dst, p_src)

    def _active_params(self, model, sub: Submodel) -> List[nn.Parameter]:
        if self._active_model is not model:
            self._active, self._active_model = {}, model
        if sub not in self._active:
            embedding, layers, head = partition_parameters(model)
            if sub.shared:
                idle = {id(p) for ps in layers[1:] for p in ps}
                active = [p for p in model.parameters() if id(p) not in idle]
            else:
                active = [p for ps in layers[sub.trainable_from:sub.depth] for p in ps] + head
                if sub.trainable_from == 0 and sub.train_embeddings:
                    active += embedding
            self._active[sub] = active
        return self._active[sub]

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

    def _submodel_train_step(self, sub, sample, model, criterion, optimizer, update_num, ignore_grad):
        """FairseqTask.train_step for one sub-model (Algorithm 2, lines 5-6; a schedule's phase)."""
        from fairseq.optim.amp_optimizer import AMPOptimizer

        inner = unwrap_model(model)
        model.train()
        model.set_num_updates(update_num)
        amp = torch.autocast("cuda") if isinstance(optimizer, AMPOptimizer) else contextlib.nullcontext()
        with active_submodel(inner, sub):
            with torch.autograd.profiler.record_function("forward"), amp:
                loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        if _ddp_requiring_all_grads(model):
            # pytorch_ddp without --find-unused-parameters: give every inactive parameter a
            # zero gradient so that its reducer completes (RestrictedStep skips them anyway).
            active = {id(p) for p in self._active_params(inner, sub)}
            idle = [p.view(-1)[:1].float() for p in inner.parameters() if p.requires_grad and id(p) not in active]
            if idle:
                loss = loss + torch.cat(idle).sum() * 0.0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    _stage1_train_step = _submodel_train_step

    def optimizer_step(self, optimizer, model, update_num):
        sub = self.submodel_for(update_num)
        if sub is None:
            return super().optimizer_step(optimizer, model, update_num)
        if self._restricted is None or self._restricted.optimizer is not optimizer:
            try:
                self._restricted = RestrictedStep(optimizer)
            except UnsupportedOptimizer as e:
                raise SystemExit(f"fairseq-b2b: error: {e}") from None
        inner = unwrap_model(model)
        # Algorithm 2, line 7 (only the top lb layers of the sub-model and the shared head); a
        # schedule's phase: only the layers it trains (+ embeddings, head); sharing: layer 0.
        self._restricted.step(self._active_params(inner, sub))
        if sub.shared:
            self._mirror_shared(inner, optimizer)

    # -- validation ----------------------------------------------------------------------------

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

        root = _root_config(self.b2b_cfg)
        if root is None:
            return None
        device = sample["net_input"]["src_tokens"].device if isinstance(sample, dict) and sample else None
        rank, world = _rank_and_world()
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

    # -- FLOPs ---------------------------------------------------------------------------------

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

    def _trace(self, logging_outputs, update_num, sub, flops, counts, missed=0) -> None:
        rank, world = _rank_and_world()
        path = trace_path_for_rank(self.b2b_cfg.submodel_trace, rank)
        loss = float(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = float(sum(log.get("sample_size", 0) for log in logging_outputs))
        record = {
            "num_updates": update_num + 1, "rank": rank, "world_size": world, "epoch": self._epoch,
            "stage": 1 if sub is not None else 2,
            "method": self._schedule.method, "phase": self._schedule.phase(self._epoch, update_num),
            "depth": sub.depth if sub is not None else self._flops.depth,
            "trainable_from": sub.trainable_from if sub is not None else 0,
            "train_embeddings": sub.train_embeddings if sub is not None else True,
            "shared": bool(sub is not None and sub.shared),
            "frozen_input": bool(sub is not None and sub.frozen_input),
            "loss": loss / sample_size / math.log(2) if sample_size else None,
            "ntok": counts[0], "sqtok": counts[1], "scored": counts[2],
            "update_flops": flops, "overflow_flops": missed, "train_flops": self.train_flops,
            "boundaries": self._events[1] if self._events[0] == update_num else [],
            "digests": self._digests[1] if self._digests[0] == update_num else None,
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- checkpoint ----------------------------------------------------------------------------

    def get_checkpoint_dict(self):
        """Saved in the checkpoint's extra state (fairseq's task checkpoint hook).  A run with
        exact growth's weighted LayerNorms also records whether the saved model still has them
        (``layernorm_weighted_at_end``) and the blend ``anneal_progress`` (1: standard), there and
        in the saved model args."""
        state = {"train_flops": int(self.train_flops), "schedule": self._schedule.method,
                 "boundary": int(self._applied)}
        blend = self._weighted_blend()
        if blend is not None or self._anneal_checked:
            state["layernorm_weighted_at_end"] = blend is not None
            state["anneal_progress"] = 1.0 if blend is None else blend
            model_args = getattr(_root_config(self.b2b_cfg), "model", None)
            with contextlib.suppress(Exception):  # a Namespace for the b2b_ archs; a struct config refuses
                for key in ("layernorm_weighted_at_end", "anneal_progress"):
                    setattr(model_args, key, state[key])
        return {type(self).__name__: state}

    def _weighted_blend(self) -> Optional[float]:
        """The blend of the model's weighted-statistics LayerNorms (None: it has none)."""
        from ..models.weighted_layernorm import weighted_layernorms

        found = weighted_layernorms(self._model) if isinstance(self._model, nn.Module) else []
        return found[0][1].blend if found else None

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """fairseq-train asks for the training iterator of epoch ``--max-epoch`` + 1 right before it
        stops (its last task hook): say so if the LayerNorms are still weighted then."""
        from .evaluation import is_training_split

        root = _root_config(self.b2b_cfg)
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

    def set_checkpoint_dict(self, state):
        self.train_flops = int(state.get("train_flops", 0))
        saved = state.get("schedule")
        if saved is not None and saved != self._schedule.method and int(state.get("boundary", -1)) > 0:
            fail(f"the checkpoint was trained with the {saved} schedule (boundary {state['boundary']} applied) but this "
                 f"run uses {self._schedule.method}: resume with the same options, or start from it with "
                 f"--reset-dataloader")
        self._applied = int(state.get("boundary", -1))
        logger.info(f"resumed train_flops = {self.train_flops:.6g}" +
                    (f", {self._schedule.method} boundary {self._applied} already applied"
                     if self._applied >= 0 and type(self._schedule) is not TrainingSchedule else ""))


def trace_path_for_rank(path: str, rank: int) -> str:
    return path if rank == 0 else f"{path}.rank{rank}"


__all__ = ["TwoStageConfig", "TwoStageMixin", "Submodel", "SubmodelSampler", "submodels", "partition_parameters",
           "stage1_submodel", "active_submodel", "layer_digests", "fail", "trace_path_for_rank", "Boundary",
           "TrainingSchedule", "TwoStageSchedule", "StackingSchedule", "MSLTSchedule", "ShareThenUnshareSchedule"]
