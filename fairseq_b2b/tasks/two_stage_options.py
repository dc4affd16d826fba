"""The options of the two-stage tasks (``TwoStageConfig``: Algorithm 2's Eb and lb, the baselines'
schedules, exact growth's annealing) and their checks before training starts: a bad value or
combination is one line naming the fix (:func:`fail`), not a traceback.
"""
import contextlib
import logging
from dataclasses import dataclass, field
from typing import List, Optional

from fairseq.dataclass import FairseqDataclass

from ..fairseq_args import option
from .schedules import parse_share_until, parse_stacking_schedule

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks

PAPER_SUBMODEL_EPOCHS = 5  # Eb of the paper (section 4.1), the default for a grown model

GROWTH_ANNEAL_UPDATES = 1000  # default of --growth-anneal-updates (README, "Exact growth")


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


def root_config(cfg):
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


class TwoStageOptions:
    """Checks of the two-stage and schedule options (``setup_task``), and Eb's default."""

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
        root = None if from_checkpoint else root_config(cfg)
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

    @classmethod
    def _resolve_submodel_epochs(cls, cfg, from_checkpoint: bool) -> None:
        """``--submodel-epochs`` not given: Eb = 5 (the paper's) for a model grown with
        ``--init-from-small`` (also when the run resumes and the growth hook skips the growth), 0 -
        plain training - for one trained from scratch or with a baseline schedule. The value is
        written back into the task config (so checkpoints record what ran) and logged."""
        if option(cfg, "submodel_epochs") is not None:
            eb = int(cfg.submodel_epochs)
            if eb > 0 and not from_checkpoint:
                grown = _model_option(root_config(cfg), "init_from_small")
                logger.info(f"fairseq-b2b: stage-1 sub-model training for {eb} epochs (--submodel-epochs {eb}"
                            f"{'' if grown else ', asked for on a model that is not grown (no --init-from-small)'})")
            return
        root = None if from_checkpoint else root_config(cfg)
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
