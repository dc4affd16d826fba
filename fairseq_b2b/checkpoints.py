"""Building b2b models the way fairseq-train does, and writing checkpoints fairseq can load."""
from __future__ import annotations

import logging
import os
import secrets

import torch

from .fairseq_args import parse_training_args

LEGACY_TEMP = r"\.tmp-[0-9a-f]{16}\.pt"  # the temporaries of earlier versions (no process id)


def build_from_args(args):
    """(cfg, task, model) for parsed fairseq-train args; ``--init-from-small`` grows here."""
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return cfg, task, model


def new_temp_file(directory: str, prefix: str = ".tmp-", suffix: str = "") -> str:
    """Create a new empty file in ``directory`` for an atomic write-then-rename, with the mode an
    ordinary ``open`` gives (0o666 less the process umask), as ``torch.save`` and fairseq's own
    checkpoints get.  ``tempfile.mkstemp`` would make it 0600, and the rename keeps that mode."""
    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"no free temporary file name in '{directory}'")


def process_umask() -> int:
    """The process umask, read from /proc where it can be (``os.umask`` can only be read by
    setting it, briefly, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(root: str) -> None:
    """Give ``root`` and everything under it the modes ``open`` / ``mkdir`` give (0o666 / 0o777
    less the umask), for outputs that third-party code writes privately (transformers'
    ``save_pretrained`` writes ``model.safetensors`` as 0600)."""
    mask = process_umask()
    paths = [root]
    if os.path.isdir(root):
        for parent, dirs, files in os.walk(root):
            paths += [os.path.join(parent, name) for name in dirs + files]
    for path in paths:
        if not os.path.islink(path):
            os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


def save_checkpoint(path: str, cfg, model, extra: dict | None = None, command: str = "b2b") -> None:
    """A fairseq checkpoint without optimizer state (loads with --restore-file,
    --finetune-from-model, fairseq's hub interface and fairseq-eval-lm).  Written to a
    temporary file and renamed, so a failure never leaves a half-written checkpoint; one a
    killed run left is removed by the next write in that folder (:mod:`fairseq_b2b.outputs`)."""
    from omegaconf import OmegaConf

    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else cfg,
        "model": model.state_dict(),
        # fairseq reads the last entry (criterion, optimizer, lr-scheduler state, updates)
        "optimizer_history": [{"criterion_name": None, "optimizer_name": None,
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
        **(extra or {}),
    }
    from .outputs import atomic_output

    with atomic_output(path, command, suffix=".pt", legacy=LEGACY_TEMP) as tmp:
        torch.save(state, tmp)


def load_model(path: str, data: str | None = None):
    """(model, task, cfg) of a fairseq checkpoint, in eval mode on CPU."""
    from fairseq import checkpoint_utils

    import fairseq_b2b  # noqa: F401  (registers the archs before the checkpoint is read)

    overrides = {"data": data} if data else None
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    return models[0].eval(), task, cfg


def build_trainer(argv: list, seed: bool = False):
    """(cfg, task, trainer) exactly as fairseq-train builds them, the train split loaded; with
    ``seed`` the torch seed is set from ``--seed`` first (as fairseq-train does)."""
    from fairseq import utils
    from fairseq.trainer import Trainer

    args = parse_training_args(argv)
    if seed:
        utils.set_torch_seed(args.seed)
    cfg, task, model = build_from_args(args)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    task.load_dataset("train")
    return cfg, task, trainer


class LogLines(logging.Handler):
    """Collects log records at INFO and above as ``LEVEL:logger:message`` lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.levelname}:{record.name}:{record.getMessage()}")


def train_in_process(argv: list) -> str:
    """fairseq-train's main in this process (no start-up cost); returns its log lines."""

    from fairseq import checkpoint_utils, distributed_utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train as fairseq_train

    if hasattr(checkpoint_utils.save_checkpoint, "best"):  # fairseq keeps the best score across runs
        del checkpoint_utils.save_checkpoint.best
    cfg = convert_namespace_to_omegaconf(parse_training_args(argv))
    handler, root = LogLines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        distributed_utils.call_main(cfg, fairseq_train.main)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return "\n".join(handler.lines)
