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

from ..flops import FlopsModel, layer_stack_owner
from ..optim.restrict import RestrictedStep, UnsupportedOptimizer

logger = logging.getLogger("fairseq_b2b.two_stage")

_STAT_KEYS = ("b2b_ntok", "b2b_sqtok", "b2b_scored", "b2b_depth", "b2b_depth_sq", "b2b_count")


def fail(message: str):
    """A one-line error before training starts (fairseq prints the message, not a traceback)."""
    raise SystemExit(f"fairseq-b2b: error: {message}")


@dataclass
class TwoStageConfig(FairseqDataclass):
    submodel_epochs: int = field(
        default=5, metadata={"help": "Eb of Algorithm 2: epochs of stage-1 sub-model training; 0 switches stage 1 off"})
    submodel_layers: int = field(
        default=3, metadata={"help": "lb of Algorithm 2: sub-models are the bottom lb, 2*lb, ..., Lt layers and each "
                                     "stage-1 update trains the top lb layers of one of them plus the shared head"})
    submodel_trace: Optional[str] = field(
        default=None, metadata={"help": "debug: append one JSON line per update (sampled sub-model, exact loss, "
                                        "FLOPs) to this file; rank r > 0 writes FILE.rank<r>"})


@dataclass(frozen=True)
class Submodel:
    """The bottom ``depth`` layers; layers ``trainable_from``..``depth``-1 are trained."""

    depth: int
    trainable_from: int


def submodels(num_layers: int, lb: int) -> Tuple[Submodel, ...]:
    """Algorithm 2, line 2: depths lb, 2*lb, ..., and Lt (top lb layers trained)."""
    if not 1 <= lb <= num_layers:
        raise ValueError(f"--submodel-layers {lb} must be between 1 and the model's {num_layers} layers")
    depths = list(range(lb, num_layers + 1, lb))
    if depths[-1] != num_layers:
        depths.append(num_layers)
    return tuple(Submodel(d, d - lb) for d in depths)


class SubmodelSampler:
    """Algorithm 2, line 5: the sub-model of update ``u`` drawn uniformly, as a pure function
    of (seed, u) - a hash, not a stateful RNG - so all ranks and resumed runs agree."""

    def __init__(self, num_layers: int, lb: int, seed: int):
        self.submodels = submodels(num_layers, lb)
        self.seed = int(seed)

    def index(self, update: int) -> int:
        digest = hashlib.sha256(f"fairseq-b2b/submodel/{self.seed}/{int(update)}".encode()).digest()
        return int.from_bytes(digest[:8], "little") % len(self.submodels)

    def sample(self, update: int) -> Submodel:
        return self.submodels[self.index(update)]


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
def stage1_submodel(model, sub: Submodel):
    """The model as sub-model ``sub`` (Algorithm 2, lines 5-6): bottom ``depth`` layers, those
    below ``trainable_from`` without autograd, and the embedding output detached when the
    lowest trained layer is layer 0 (the embedding block is not trained in stage 1)."""
    with model.submodel(sub.depth, sub.trainable_from):
        handle = None
        if sub.trainable_from == 0:
            handle = layer_stack_owner(model).layers[0].register_forward_pre_hook(_detach_input, with_kwargs=True)
        try:
            yield model
        finally:
            if handle is not None:
                handle.remove()


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


def _rank_and_world() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TwoStageMixin:
    """Algorithm 2 on top of a fairseq task (put it first in the bases)."""

    #: whether the criterion projects every position when nothing is masked (masked LM)
    scores_masked_positions = False

    # -- set-up -------------------------------------------------------------------------------

    @classmethod
    def check_two_stage_config(cls, cfg, from_checkpoint: bool = False) -> None:
        """Bad input -> one-line error before training starts; force per-parameter fp16
        master copies when stage 1 runs with --fp16 (see fairseq_b2b.optim.restrict)."""
        eb, lb = int(cfg.submodel_epochs), int(cfg.submodel_layers)
        if eb < 0:
            fail(f"--submodel-epochs {eb} is negative: pass the number of stage-1 epochs (0 switches stage 1 off)")
        if lb < 1:
            fail(f"--submodel-layers {lb} must be >= 1: it is the number of layers each stage-1 update trains")
        root = None if from_checkpoint else _root_config(cfg)
        if root is None or eb == 0:
            return
        max_epoch = int(root.optimization.max_epoch or 0)
        if max_epoch > 0 and eb >= max_epoch:
            fail(f"--submodel-epochs {eb} leaves no full-model epoch with --max-epoch {max_epoch}: "
                 f"stage 2 runs epochs Eb+1..E, so pass --submodel-epochs < --max-epoch")
        if root.optimization.get("use_bmuf", False):
            fail("stage-1 sub-model training does not support --use-bmuf: pass --submodel-epochs 0")
        if root.distributed_training.get("zero_sharding", "none") != "none":
            fail("stage-1 sub-model training does not support --zero-sharding: pass --submodel-epochs 0")
        common = root.common
        if common.fp16 and not common.memory_efficient_fp16 and not common.fp16_no_flatten_grads:
            common.fp16_no_flatten_grads = True
            logger.warning("fairseq-b2b: stage 1 updates a subset of the parameters, so --fp16 keeps per-parameter "
                           "fp32 master copies: --fp16-no-flatten-grads is on for this run")

    def init_two_stage(self, cfg) -> None:
        self.b2b_cfg = cfg
        self.submodel_epochs = int(cfg.submodel_epochs)
        self.submodel_layers = int(cfg.submodel_layers)
        self.train_flops = 0
        self._epoch = 1
        self._sampler: Optional[SubmodelSampler] = None
        self._flops: Optional[FlopsModel] = None
        self._active: dict = {}
        self._active_model = None
        self._restricted: Optional[RestrictedStep] = None
        self._last: Optional[Tuple[int, Submodel, bool]] = None

    def setup_two_stage(self, model) -> None:
        """After the model is built: check lb against its depth, build the sampler and the
        FLOPs meter (Algorithm 2, line 2)."""
        from ..models.common import SubmodelMixin

        try:
            self._flops = FlopsModel.from_model(model)
        except ValueError as e:
            self._flops = None
            logger.warning(f"fairseq-b2b: train_flops not metered: {e}")
        if self.submodel_epochs == 0:
            logger.info("two-stage training off (--submodel-epochs 0): full-model training, FLOPs metered")
            return
        if not isinstance(model, SubmodelMixin):
            fail(f"stage-1 sub-model training needs a b2b_ architecture ({type(model).__name__} has no sub-models): "
                 "use --arch b2b_bert_*/b2b_gpt_* or pass --submodel-epochs 0")
        depth = model.depth
        if not 1 <= self.submodel_layers <= depth:
            fail(f"--submodel-layers {self.submodel_layers} exceeds the model's {depth} layers: "
                 f"pass 1 <= --submodel-layers <= {depth}, or --submodel-epochs 0")
        self._sampler = SubmodelSampler(depth, self.submodel_layers, int(self.b2b_cfg.seed))
        desc = ", ".join(f"{s.depth} (trains {s.trainable_from}..{s.depth - 1})" for s in self._sampler.submodels)
        logger.info(f"two-stage training (Algorithm 2): epochs 1..{self.submodel_epochs} train sub-models of depth "
                    f"{desc} + the shared head, one sampled per update; full model afterwards")

    # -- stage bookkeeping --------------------------------------------------------------------

    def in_stage1(self) -> bool:
        return self._sampler is not None and self._epoch <= self.submodel_epochs

    def submodel_for(self, update_num: int) -> Optional[Submodel]:
        """The sub-model of update ``update_num``, or None in stage 2."""
        return self._sampler.sample(update_num) if self.in_stage1() else None

    def begin_epoch(self, epoch, model):
        was = self.in_stage1()
        self._epoch = int(epoch)
        if self._sampler is not None:
            if self.in_stage1() and (epoch == 1 or not was):
                logger.info(f"epoch {epoch}: stage 1 (sub-model training, Algorithm 2 lines 3-9)")
            elif not self.in_stage1() and (was or epoch == self.submodel_epochs + 1):
                logger.info(f"epoch {epoch}: stage 2 (full-model training, Algorithm 2 lines 10-15)")
        super().begin_epoch(epoch, model)

    def _active_params(self, model, sub: Submodel) -> List[nn.Parameter]:
        if self._active_model is not model:
            self._active, self._active_model = {}, model
        if sub not in self._active:
            _, layers, head = partition_parameters(model)
            self._active[sub] = [p for ps in layers[sub.trainable_from:sub.depth] for p in ps] + head
        return self._active[sub]

    # -- the update ---------------------------------------------------------------------------

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False, **kwargs):
        sub = self.submodel_for(update_num)
        if sub is None:  # stage 2: the parent task, untouched
            loss, sample_size, logging_output = super().train_step(
                sample, model, criterion, optimizer, update_num, ignore_grad=ignore_grad, **kwargs)
            self._last = (update_num, None, False)
        else:
            loss, sample_size, logging_output = self._stage1_train_step(
                sub, sample, model, criterion, optimizer, update_num, ignore_grad)
            self._last = (update_num, sub, True)
        self._add_flop_stats(logging_output, sample, sub)
        return loss, sample_size, logging_output

    def _stage1_train_step(self, sub, sample, model, criterion, optimizer, update_num, ignore_grad):
        """FairseqTask.train_step for one sub-model (Algorithm 2, lines 5-6)."""
        from fairseq.optim.amp_optimizer import AMPOptimizer

        inner = unwrap_model(model)
        model.train()
        model.set_num_updates(update_num)
        amp = torch.autocast("cuda") if isinstance(optimizer, AMPOptimizer) else contextlib.nullcontext()
        with stage1_submodel(inner, sub):
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

    def optimizer_step(self, optimizer, model, update_num):
        sub = self.submodel_for(update_num)
        if sub is None:
            return super().optimizer_step(optimizer, model, update_num)
        if self._restricted is None or self._restricted.optimizer is not optimizer:
            try:
                self._restricted = RestrictedStep(optimizer)
            except UnsupportedOptimizer as e:
                raise SystemExit(f"fairseq-b2b: error: {e}") from None
        # Algorithm 2, line 7: only the top lb layers of the sub-model and the shared head.
        self._restricted.step(self._active_params(unwrap_model(model), sub))

    # -- FLOPs ---------------------------------------------------------------------------------

    def scored_positions(self, sample, n_tokens):
        target = sample["target"]
        scored = target.ne(self.target_dictionary.pad()).sum()
        if self.scores_masked_positions:  # fairseq projects every position when nothing is masked
            scored = torch.where(scored > 0, scored, n_tokens)
        return scored

    def _add_flop_stats(self, logging_output, sample, sub: Optional[Submodel]) -> None:
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

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not logging_outputs or not any("b2b_ntok" in log for log in logging_outputs):
            if logging_outputs and self._flops is not None:  # validation: where it sits on the FLOPs axis
                metrics.log_scalar("train_flops", torch.tensor(float(self.train_flops), dtype=torch.float64),
                                   weight=0, priority=860)
            return
        sums = {k: float(sum(log.get(k, 0) for log in logging_outputs)) for k in _STAT_KEYS}
        if sums["b2b_count"] == 0 or self._last is None:
            return
        update_num, sub, frozen = self._last
        mean = sums["b2b_depth"] / sums["b2b_count"]
        local = sub.depth if sub is not None else self._flops.depth
        if abs(mean - local) > 1e-6 or abs(sums["b2b_depth_sq"] / sums["b2b_count"] - mean * mean) > 1e-6:
            raise RuntimeError(f"fairseq-b2b: data-parallel ranks ran different sub-models at update {update_num} "
                               f"(mean depth {mean}, this rank {local})")
        n_tok, sq_tok, scored = (int(round(sums[k])) for k in ("b2b_ntok", "b2b_sqtok", "b2b_scored"))
        flops = self._flops.update_flops(n_tok, sq_tok, scored, local,
                                         sub.trainable_from if sub is not None else 0, frozen)
        self.train_flops += flops
        metrics.log_scalar("subdepth", local, weight=1, priority=850, round=2)
        # A float64 tensor: fairseq's json log prints tensors with full precision ("{:g}" otherwise).
        metrics.log_scalar("train_flops", torch.tensor(float(self.train_flops), dtype=torch.float64),
                           weight=0, priority=860)
        if self.b2b_cfg.submodel_trace:
            self._trace(logging_outputs, update_num, sub, flops)

    def _trace(self, logging_outputs, update_num, sub, flops) -> None:
        rank, world = _rank_and_world()
        path = trace_path_for_rank(self.b2b_cfg.submodel_trace, rank)
        loss = float(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = float(sum(log.get("sample_size", 0) for log in logging_outputs))
        record = {
            "num_updates": update_num + 1, "rank": rank, "world_size": world, "epoch": self._epoch,
            "stage": 1 if sub is not None else 2,
            "depth": sub.depth if sub is not None else self._flops.depth,
            "trainable_from": sub.trainable_from if sub is not None else 0,
            "loss": loss / sample_size / math.log(2) if sample_size else None,
            "update_flops": flops, "train_flops": self.train_flops,
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- checkpoint ----------------------------------------------------------------------------

    def get_checkpoint_dict(self):
        """Saved in the checkpoint's extra state (fairseq's task checkpoint hook)."""
        return {type(self).__name__: {"train_flops": int(self.train_flops)}}

    def set_checkpoint_dict(self, state):
        self.train_flops = int(state.get("train_flops", 0))
        logger.info(f"resumed train_flops = {self.train_flops:.6g}")


def trace_path_for_rank(path: str, rank: int) -> str:
    return path if rank == 0 else f"{path}.rank{rank}"


__all__ = ["TwoStageConfig", "TwoStageMixin", "Submodel", "SubmodelSampler", "submodels", "partition_parameters",
           "stage1_submodel", "fail", "trace_path_for_rank"]
