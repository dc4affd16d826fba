"""Grow a trained small fairseq checkpoint file into a larger ``b2b_`` architecture and write an
ordinary fairseq checkpoint (what ``b2b-grow`` and the experiment's Table 1 do): the target's
shape is its arch plus the architecture options fairseq-train accepts."""
from __future__ import annotations

import argparse
import os
import tempfile
from argparse import Namespace

from .errors import B2BError

SHAPE_KEYS = [f"{side}_{what}" for side in ("encoder", "decoder")
              for what in ("layers", "embed_dim", "ffn_embed_dim", "attention_heads", "input_dim", "output_dim")] + [
    "decoder_kv_heads", "decoder_head_dim"]  # b2b_llama's: the target arch's, not the source's


def _as_dict(obj) -> dict:
    from omegaconf import OmegaConf

    if obj is None:
        return {}
    if isinstance(obj, Namespace):
        return dict(vars(obj))
    if OmegaConf.is_config(obj):
        return OmegaConf.to_container(obj, resolve=True)
    return dict(obj)


def parse_arch_options(arch: str, overrides: list) -> Namespace:
    """The target arch's own options among ``overrides`` (one-line errors for an unknown arch
    or option); needs no checkpoint, so bad arguments are refused before anything is read."""
    import contextlib
    import io

    from fairseq.models import ARCH_MODEL_REGISTRY

    if arch not in ARCH_MODEL_REGISTRY:
        b2b = sorted(a for a in ARCH_MODEL_REGISTRY if a.startswith("b2b_"))
        raise B2BError(f"unknown --arch '{arch}': choose one of {', '.join(b2b)}")
    if getattr(ARCH_MODEL_REGISTRY[arch], "family", None) is None:
        raise B2BError(f"--arch {arch} is not a b2b_ architecture: growth targets are b2b_bert_*, b2b_gpt_* or b2b_llama_*")
    parser = argparse.ArgumentParser(prog="b2b-grow", argument_default=argparse.SUPPRESS, add_help=False)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            parsed, unknown = parser.parse_known_args(overrides)
    except SystemExit:
        why = err.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1] if err.getvalue().strip() else ""
        raise B2BError(f"cannot parse the architecture options {' '.join(overrides)}"
                       f"{' (' + why + ')' if why else ''}") from None
    if unknown:
        raise B2BError(f"unknown option(s) {' '.join(unknown)}: b2b-grow takes the target arch's options only")
    return parsed


def source_data_dir(data: str | None, recorded, source: str) -> str:
    """--data, else the data directory the source checkpoint recorded (found from any folder)."""
    from .paths import resolve_data_dir

    if data:
        return os.path.abspath(data) if os.pathsep not in data else data
    found = resolve_data_dir(recorded, source)
    if found is None:
        raise B2BError(f"the source's data directory '{recorded}' (recorded in the checkpoint) has no dict.txt here: "
                       "pass --data DATA_BIN with the source's dict.txt")
    return found


def target_model_args(source_model_args: dict, arch: str, overrides: list) -> Namespace:
    """The source's model args with the target's arch and shape (like fairseq-train's parse)."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    args = Namespace(**{k: v for k, v in source_model_args.items() if k not in SHAPE_KEYS})
    parsed = parse_arch_options(arch, overrides)
    for key, value in vars(parsed).items():
        setattr(args, key, value)
    args.arch = args._name = arch
    ARCH_CONFIG_REGISTRY[arch](args)
    return args


def grow_checkpoint(source: str, arch: str, method: str, exact: bool, seed: int, output: str,
                    data: str | None = None, overrides: list = ()) -> dict:
    """Grow ``source`` into ``arch`` and write ``output``; returns the growth report."""
    from fairseq import tasks
    from omegaconf import OmegaConf

    import torch

    from .checkpoints import save_checkpoint
    from .growth_hook import load_checkpoint

    state = load_checkpoint(source, what="--source")
    cfg = _as_dict(state.get("cfg")) or {"model": _as_dict(state.get("args")), "task": _as_dict(state.get("args"))}
    task_cfg = _as_dict(cfg.get("task"))
    args = target_model_args(_as_dict(cfg.get("model")), arch, list(overrides))  # before any dictionary is read
    _check_family(state, source, arch)
    task_cfg["data"] = data = source_data_dir(data, task_cfg.get("data"), source)
    source = os.path.abspath(source)  # recorded in b2b_grown_from: found again from any folder
    with tempfile.TemporaryDirectory() as nowhere:  # no checkpoint_last.pt to resume from
        args.init_from_small, args.growth_method, args.growth_exact, args.growth_seed = source, method, exact, seed
        args.save_dir, args.restore_file, args.finetune_from_model = nowhere, "checkpoint_last.pt", None
        task = tasks.setup_task(OmegaConf.create(task_cfg))
        # the target's own initialisation (kept by direct_copy) is drawn from the torch RNG:
        # seed it, so that --seed determines the grown checkpoint bit for bit for every method
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build_growing(task, args)
    args.save_dir = os.path.dirname(os.path.abspath(output))
    cfg["model"], cfg["task"] = args, task_cfg
    save_checkpoint(output, cfg, model)
    return dict(args.b2b_grown_from, output=output)


def _check_family(state: dict, source: str, arch: str) -> None:
    from fairseq.models import ARCH_MODEL_REGISTRY

    from .growth.layout import detect_family

    try:
        family = detect_family(state["model"]).family
    except ValueError as e:
        raise B2BError(f"checkpoint '{source}': {e}") from None
    target = getattr(ARCH_MODEL_REGISTRY[arch], "family", None)
    if target and family != target:
        raise B2BError(f"checkpoint '{source}' is a {family.upper()}-family model but --arch {arch} is "
                       f"{target.upper()}-family: grow BERT into b2b_bert_*, GPT into b2b_gpt_* and LLaMA into b2b_llama_*")


def _build_growing(task, args):
    """Build the target model; the ``--init-from-small`` hook grows it (one-line errors)."""
    from .growth_hook import grow_into
    from .models.common import set_layernorm_eps

    from fairseq.models import ARCH_MODEL_REGISTRY

    source, args.init_from_small = args.init_from_small, None
    inherit_eps = getattr(args, "layernorm_eps", None) is None
    model = ARCH_MODEL_REGISTRY[args.arch].build_model(args, task)
    family = getattr(type(model), "family", None)
    if family is None:
        raise B2BError(f"--arch {args.arch} is not a b2b_ architecture: growth targets are b2b_bert_*, b2b_gpt_* or b2b_llama_*")
    report = grow_into(model, family, args, getattr(args, "b2b_dictionary_checksum", None), source, args.growth_method,
                       args.growth_exact, args.growth_seed, model.embed_scale_value(), inherit_eps,
                       weighted_layernorm=bool(getattr(args, "growth_weighted_layernorm", False)) or None)
    set_layernorm_eps(model, args.layernorm_eps)  # grow_into records the eps (inherited, exact mode) in args
    args.b2b_grown_from = report
    return model
