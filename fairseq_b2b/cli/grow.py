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

from ..checkpoints import LEGACY_TEMP
from ..errors import B2BError
from ..growth import METHODS, GrowthError

SHAPE_KEYS = [f"{side}_{what}" for side in ("encoder", "decoder")
              for what in ("layers", "embed_dim", "ffn_embed_dim", "attention_heads", "input_dim", "output_dim")]


class _OneLineParser(argparse.ArgumentParser):
    """argparse's errors as the one line every b2b-grow error is (no usage dump)."""

    def error(self, message):
        if message.startswith("argument --method: invalid choice: "):
            message = "unknown growth method " + message.split("invalid choice: ", 1)[1]
        raise SystemExit(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="b2b-grow", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="trained small fairseq checkpoint (required)")
    p.add_argument("--arch", required=True, help="target architecture, e.g. b2b_bert_base (required); any of its "
                                                 "architecture options (--encoder-layers N, ...) may follow")
    p.add_argument("--method", default="aki", choices=METHODS,
                   help="width expansion: fpi, aki (the paper's) or direct_copy (default: %(default)s)")
    p.add_argument("--exact", action="store_true", help="fpi only: function-preserving at any width ratio (default: off)")
    p.add_argument("--seed", type=int, default=1, help="seed of the mapping functions (default: %(default)s)")
    p.add_argument("--output", required=True, help="the grown checkpoint file to write (required; not a folder, never "
                                                  "the --source; an existing file is refused unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file (default: off; never the "
                                                       "--source, never a folder)")
    p.add_argument("--data", default=None, help="data-bin with the source's dict.txt; with it the source and the grown "
                                                "model are evaluated on --valid-subset (default: the data directory "
                                                "recorded in the source checkpoint, no evaluation)")
    p.add_argument("--valid-subset", default="valid",
                   help="split of --data to evaluate the growth on (default: %(default)s)")
    p.add_argument("--report-json", action="store_true",
                   help="print one JSON object as the last stdout line (default: off)")
    p.add_argument("--verbose", action="store_true", help="show fairseq's own INFO logging (default: off)")
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
        raise B2BError(f"--arch {arch} is not a b2b_ architecture: growth targets are b2b_bert_* or b2b_gpt_*")
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


def check_arguments(args, overrides: list) -> None:
    """Every argument error b2b-grow can see without reading a checkpoint, as one line."""
    if args.exact and args.method != "fpi":
        raise B2BError(f"--exact is a mode of fpi, not of {args.method}: pass --method fpi --exact, or drop --exact")
    from ..outputs import check_output

    check_output(args.output, "file", args.force, "--output", inputs={"--source": args.source})
    parse_arch_options(args.arch, overrides)
    if args.data:
        first = args.data.split(os.pathsep)[0]
        if not os.path.isfile(os.path.join(first, "dict.txt")):
            raise B2BError(f"--data '{args.data}' has no dict.txt: pass the data-bin the source was trained with")
        if not os.path.isfile(os.path.join(first, f"{args.valid_subset}.idx")):
            splits = sorted(f[:-4] for f in os.listdir(first) if f.endswith(".idx"))
            raise B2BError(f"--valid-subset '{args.valid_subset}' is not a split of '{first}' (it has "
                           f"{', '.join(splits) or 'none'}): pass one of those")


def source_data_dir(data: str | None, recorded, source: str) -> str:
    """--data, else the data directory the source checkpoint recorded (found from any folder)."""
    from ..paths import resolve_data_dir

    if data:
        return os.path.abspath(data) if os.pathsep not in data else data
    found = resolve_data_dir(recorded, source)
    if found is None:
        raise B2BError(f"the source's data directory '{recorded}' (recorded in the checkpoint) has no dict.txt here: "
                       "pass --data DATA_BIN with the source's dict.txt")
    return found


def target_model_args(source_model_args: dict, arch: str, overrides: list) -> Namespace:
    """The source's model args with the target's arch and shape (like fairseq-train's parse)."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

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

    from ..checkpoints import save_checkpoint
    from ..growth_hook import load_checkpoint

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

    from ..growth.layout import detect_family

    try:
        family = detect_family(state["model"]).family
    except ValueError as e:
        raise B2BError(f"checkpoint '{source}': {e}") from None
    target = getattr(ARCH_MODEL_REGISTRY[arch], "family", None)
    if target and family != target:
        raise B2BError(f"checkpoint '{source}' is a {family.upper()}-family model but --arch {arch} is "
                       f"{target.upper()}-family: grow BERT into b2b_bert_* and GPT into b2b_gpt_*")


def _build_growing(task, args):
    """Build the target model; the ``--init-from-small`` hook grows it (one-line errors)."""
    from ..growth_hook import grow_into
    from ..models.common import set_layernorm_eps

    from fairseq.models import ARCH_MODEL_REGISTRY

    source, args.init_from_small = args.init_from_small, None
    inherit_eps = getattr(args, "layernorm_eps", None) is None
    model = ARCH_MODEL_REGISTRY[args.arch].build_model(args, task)
    family = getattr(type(model), "family", None)
    if family is None:
        raise B2BError(f"--arch {args.arch} is not a b2b_ architecture: growth targets are b2b_bert_* or b2b_gpt_*")
    report = grow_into(model, family, args, getattr(args, "b2b_dictionary_checksum", None), source, args.growth_method,
                       args.growth_exact, args.growth_seed, model.embed_scale_value(), inherit_eps,
                       weighted_layernorm=bool(getattr(args, "growth_weighted_layernorm", False)) or None)
    set_layernorm_eps(model, args.layernorm_eps)  # grow_into records the eps (inherited, exact mode) in args
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


def evaluate_fpi_variants(report: dict, source: str, arch: str, seed: int, data: str, overrides: list = (),
                          split: str = "valid") -> dict:
    """Table 1 at a non-integer width ratio: paper FPI next to exact FPI (weighted-statistics
    LayerNorm).  ``report`` is the grown checkpoint's (with ``evaluate_growth``'s numbers); the
    other variant is grown into a temporary file and evaluated the same way.  Returns
    ``{"paper_fpi": {...}, "exact_fpi": {...}}`` (loss and max |logit diff| each), or ``{}`` for
    another method or an integer ratio (where paper FPI is exact already)."""
    src_dim, tgt_dim = report.get("embed_dims", (1, 1))
    if report.get("method") != "fpi" or tgt_dim % src_dim == 0:
        return {}
    keys = ("grown_loss", "max_abs_logit_diff")
    own = {k: report[k] for k in keys}
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "other.pt")
        grow_checkpoint(source, arch, "fpi", not report["exact"], seed, other, data, overrides)
        other_eval = evaluate_growth(source, other, data, split)
    other = {k: other_eval[k] for k in keys}
    exact, paper = (own, other) if report["exact"] else (other, own)
    return {"paper_fpi": paper, "exact_fpi": exact}


def main(argv=None) -> None:
    args, overrides = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s",
                        force=True)
    import fairseq_b2b  # noqa: F401

    from ..outputs import atomic_output, exit_on_signals

    exit_on_signals("b2b-grow")
    try:
        check_arguments(args, overrides)
        # grown and evaluated under a temporary name beside --output, renamed at the end: a failed
        # or interrupted run leaves no checkpoint (and an existing one replaced by --force stays
        # until the new one is complete); a SIGKILLed run's temporary goes with the next run
        with atomic_output(args.output, "b2b-grow", suffix=".pt", legacy=LEGACY_TEMP) as tmp:
            report = grow_checkpoint(args.source, args.arch, args.method, args.exact, args.seed, tmp,
                                     args.data, overrides)
            report["output"] = args.output
            if args.data:
                report.update(evaluate_growth(args.source, tmp, args.data, args.valid_subset))
                report.update(evaluate_fpi_variants(report, args.source, args.arch, args.seed, args.data, overrides,
                                                    args.valid_subset))
    except GrowthError as e:
        sys.exit(f"b2b-grow: error: {e}")
    except OSError as e:
        sys.exit(f"b2b-grow: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
    print(f"grew {report['source_shape']} -> {report['target_shape']} with {report['method']}"
          f"{' (exact)' if report['exact'] else ''} in {report['seconds']:.2f}s -> {args.output}")
    if args.data:
        print(f"{args.valid_subset} loss (bits): source {report['source_loss']:.4f}  grown {report['grown_loss']:.4f}  "
              f"max |logit diff| {report['max_abs_logit_diff']:.3g}")
        if "exact_fpi" in report:
            src_dim, tgt_dim = report["embed_dims"]
            paper, exact = report["paper_fpi"], report["exact_fpi"]
            print(f"FPI at the width ratio {tgt_dim}/{src_dim}: paper {paper['grown_loss']:.4f} (max |logit diff| "
                  f"{paper['max_abs_logit_diff']:.3g})  exact {exact['grown_loss']:.4f} (max |logit diff| "
                  f"{exact['max_abs_logit_diff']:.3g})")
    if args.report_json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
