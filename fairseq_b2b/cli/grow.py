"""``b2b-grow``: grow a trained small fairseq checkpoint into a larger ``b2b_`` architecture.

The target shape is ``--arch`` plus the architecture options fairseq-train accepts
(``--encoder-layers``, ``--decoder-embed-dim``, ...).  The output is an ordinary fairseq
checkpoint.  With ``--data`` the source and the grown model are evaluated on the valid split
(the paper's Table 1); ``--report-json`` ends stdout with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from argparse import Namespace

from ..errors import B2BError
from ..growth import METHODS, GrowthError

SHAPE_KEYS = [f"{side}_{what}" for side in ("encoder", "decoder")
              for what in ("layers", "embed_dim", "ffn_embed_dim", "attention_heads", "input_dim", "output_dim")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="b2b-grow", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="trained small fairseq checkpoint")
    p.add_argument("--arch", required=True, help="target architecture, e.g. b2b_bert_base")
    p.add_argument("--method", default="aki", help=f"one of {', '.join(METHODS)} (default aki)")
    p.add_argument("--exact", action="store_true", help="fpi only: function-preserving at any width ratio")
    p.add_argument("--seed", type=int, default=1, help="seed of the mapping functions")
    p.add_argument("--output", required=True, help="where to write the grown checkpoint")
    p.add_argument("--data", default=None, help="data-bin (dictionary; valid split for the loss report)")
    p.add_argument("--valid-subset", default="valid")
    p.add_argument("--report-json", action="store_true", help="print one JSON object as the last stdout line")
    p.add_argument("--verbose", action="store_true", help="show fairseq's own INFO logging")
    return p


def _as_dict(obj) -> dict:
    from omegaconf import OmegaConf

    if obj is None:
        return {}
    if isinstance(obj, Namespace):
        return dict(vars(obj))
    if OmegaConf.is_config(obj):
        return OmegaConf.to_container(obj, resolve=True)
    return dict(obj)


def target_model_args(source_model_args: dict, arch: str, overrides: list) -> Namespace:
    """The source's model args with the target's arch and shape (like fairseq-train's parse)."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    if arch not in ARCH_MODEL_REGISTRY:
        b2b = sorted(a for a in ARCH_MODEL_REGISTRY if a.startswith("b2b_"))
        raise B2BError(f"unknown --arch '{arch}': choose one of {', '.join(b2b)}")
    args = Namespace(**{k: v for k, v in source_model_args.items() if k not in SHAPE_KEYS})
    parser = argparse.ArgumentParser(prog="b2b-grow", argument_default=argparse.SUPPRESS, add_help=False)
    ARCH_MODEL_REGISTRY[arch].add_args(parser)
    try:
        parsed, unknown = parser.parse_known_args(overrides)
    except SystemExit:
        raise B2BError(f"cannot parse the architecture options {' '.join(overrides)}") from None
    if unknown:
        raise B2BError(f"unknown option(s) {' '.join(unknown)}: b2b-grow takes the target arch's options only")
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

    from ..checkpoints import save_checkpoint
    from ..growth_hook import load_checkpoint

    state = load_checkpoint(source)
    cfg = _as_dict(state.get("cfg")) or {"model": _as_dict(state.get("args")), "task": _as_dict(state.get("args"))}
    task_cfg = _as_dict(cfg.get("task"))
    data = data or task_cfg.get("data")
    if not data or not os.path.isfile(os.path.join(str(data).split(os.pathsep)[0], "dict.txt")):
        raise B2BError(f"no dictionary found at '{data}' (the source's data-bin): pass --data DATA_BIN with the source's dict.txt")
    task_cfg["data"] = data
    args = target_model_args(_as_dict(cfg.get("model")), arch, list(overrides))
    with tempfile.TemporaryDirectory() as nowhere:  # no checkpoint_last.pt to resume from
        args.init_from_small, args.growth_method, args.growth_exact, args.growth_seed = source, method, exact, seed
        args.save_dir, args.restore_file, args.finetune_from_model = nowhere, "checkpoint_last.pt", None
        task = tasks.setup_task(OmegaConf.create(task_cfg))
        model = _build_growing(task, args)
    args.save_dir = os.path.dirname(os.path.abspath(output))
    cfg["model"], cfg["task"] = args, task_cfg
    save_checkpoint(output, cfg, model)
    return dict(args.b2b_grown_from, output=output)


def _build_growing(task, args):
    """Build the target model; the ``--init-from-small`` hook grows it (one-line errors)."""
    from ..growth_hook import grow_into

    from fairseq.models import ARCH_MODEL_REGISTRY

    source, args.init_from_small = args.init_from_small, None
    inherit_eps = getattr(args, "layernorm_eps", None) is None
    model = ARCH_MODEL_REGISTRY[args.arch].build_model(args, task)
    family = getattr(type(model), "family", None)
    if family is None:
        raise B2BError(f"--arch {args.arch} is not a b2b_ architecture: growth targets are b2b_bert_* or b2b_gpt_*")
    report = grow_into(model, family, args, getattr(args, "b2b_dictionary_checksum", None), source, args.growth_method,
                       args.growth_exact, args.growth_seed, model.embed_scale_value(), inherit_eps)
    args.b2b_grown_from = report
    return model


def evaluate_growth(source: str, output: str, data: str, split: str = "valid") -> dict:
    """Table 1: valid loss of source and grown model, and their largest logit difference."""
    from ..checkpoints import load_model
    from ..evaluate import logits, max_abs_logit_diff, split_loss

    src_model, src_task, src_cfg = load_model(source, data)
    big_model, big_task, big_cfg = load_model(output, data)
    crit_src, crit_big = src_task.build_criterion(src_cfg.criterion), big_task.build_criterion(big_cfg.criterion)
    return {
        "source_loss": split_loss(src_model, src_task, crit_src, split, src_cfg),
        "grown_loss": split_loss(big_model, big_task, crit_big, split, big_cfg),
        "max_abs_logit_diff": max_abs_logit_diff(logits(src_model, src_task, split, src_cfg),
                                                 logits(big_model, big_task, split, big_cfg)),
    }


def main(argv=None) -> None:
    args, overrides = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s",
                        force=True)
    import fairseq_b2b  # noqa: F401

    try:
        if args.method not in METHODS:
            raise B2BError(f"unknown growth method '{args.method}': choose one of {', '.join(METHODS)}")
        report = grow_checkpoint(args.source, args.arch, args.method, args.exact, args.seed, args.output,
                                 args.data, overrides)
        if args.data:
            report.update(evaluate_growth(args.source, args.output, args.data, args.valid_subset))
    except GrowthError as e:
        sys.exit(f"b2b-grow: error: {e}")
    print(f"grew {report['source_shape']} -> {report['target_shape']} with {report['method']}"
          f"{' (exact)' if report['exact'] else ''} in {report['seconds']:.2f}s -> {args.output}")
    if args.data:
        print(f"{args.valid_subset} loss (bits): source {report['source_loss']:.4f}  grown {report['grown_loss']:.4f}  "
              f"max |logit diff| {report['max_abs_logit_diff']:.3g}")
    if args.report_json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
