"""``b2b-train``: fairseq-train with the fairseq-b2b plugin loaded; ``b2b-user-dir``: the
directory to pass to stock fairseq commands as ``--user-dir``.

Before fairseq starts, ``b2b-train`` checks what fairseq would only report with a traceback
(a BERT arch with a causal-LM task and back, no batch size, no optimizer), makes the folder of
``--log-file`` (fairseq opens the log before it makes ``--save-dir``), and stores the data and
``--init-from-small`` paths as absolute paths, so that the checkpoints work from any folder.
``b2b-train ... --updates-per-epoch`` prints the updates of one epoch (for
``--total-num-update``) and trains nothing; ``--help`` with ``--task`` lists the task's options.
"""
from __future__ import annotations

import os
import sys

from ..fairseq_args import user_dir, with_user_dir

PROG = "b2b-train"
# the model families each task trains (the b2b_ archs record theirs as ``family``)
TASK_FAMILIES = {"b2b_masked_lm": ("bert",), "masked_lm": ("bert",), "sentence_prediction": ("bert",),
                 "b2b_language_modeling": ("gpt", "llama"), "language_modeling": ("gpt", "llama")}
FAMILY_TASKS = {"bert": "b2b_masked_lm", "gpt": "b2b_language_modeling", "llama": "b2b_language_modeling"}
UPE_FLAG = "--updates-per-epoch"


def print_user_dir() -> None:
    print(user_dir())


def parse(argv: list, parse_known: bool = False):
    """fairseq-train's own parser (``options.get_training_parser`` + ``parse_args_and_arch``)
    on ``argv`` with the plugin loaded; argparse errors exit with fairseq's usage line."""
    import logging

    from fairseq import options

    quiet = logging.getLogger("fairseq.utils")  # "--user-dir ... has already been imported" on the second parse
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        parser = options.get_training_parser()
        parser.error = _one_line_error  # argparse's errors as one line, not 100 lines of usage first
        args = options.parse_args_and_arch(parser, input_args=with_user_dir(argv), parse_known=parse_known)
    finally:
        quiet.setLevel(level)
    return (args[0] if parse_known else args), parser


def _one_line_error(message: str):
    raise SystemExit(f"{PROG}: error: {message} ({PROG} --help lists the options)")


def check_args(args, need_optimizer: bool = True) -> None:
    """One-line errors for what fairseq-train only reports deep inside (a traceback), or only
    after its configuration dump (the two-stage defaults on a shallow or short run)."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    from ..errors import B2BError


    family = getattr(ARCH_MODEL_REGISTRY.get(args.arch), "family", None)
    wanted = TASK_FAMILIES.get(getattr(args, "task", None))
    if family and wanted and family not in wanted:
        raise B2BError(f"--arch {args.arch} is a {family.upper()}-family model but --task {args.task} trains "
                       f"{'/'.join(w.upper() for w in wanted)}-family models: use --task {FAMILY_TASKS[family]} with "
                       f"b2b_{family}_* archs")
    if getattr(args, "max_tokens", None) is None and getattr(args, "batch_size", None) is None:
        raise B2BError("no batch size: pass --batch-size N (sequences) or --max-tokens N")
    if need_optimizer and getattr(args, "optimizer", None) is None:
        raise B2BError("no optimizer: pass e.g. --optimizer adam --lr 1e-4")
    check_growth_defaults(args)


def _check_readable(path: str) -> None:
    """A torch zip checkpoint cut short (a killed save, a full disk) has no central directory:
    found from its last bytes, without reading the weights."""
    import zipfile

    from ..errors import B2BError

    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        if zipped:
            zipfile.ZipFile(path).close()
    except (OSError, zipfile.BadZipFile) as e:
        raise B2BError(f"the checkpoint to resume '{path}' cannot be read ({type(e).__name__}: {e}): it is truncated "
                       "or corrupt; move it away to grow from --init-from-small again, or pass --restore-file with "
                       "an intact checkpoint") from None


def check_paths(args) -> None:
    """The input paths fairseq would only trip over after its configuration dump (a traceback
    for a data directory that does not exist)."""
    from ..errors import B2BError

    data = str(getattr(args, "data", "") or "")
    first = data.split(os.pathsep)[0] if data else ""
    if first and not os.path.isdir(first):
        raise B2BError(f"the data directory '{first}' {'is a file' if os.path.exists(first) else 'does not exist'}: "
                       "pass the data-bin folder made by b2b-preprocess (or fairseq-preprocess)")
    source = getattr(args, "init_from_small", None)
    if source and not os.path.exists(source):
        raise B2BError(f"--init-from-small '{source}' does not exist: pass the path of the small fairseq checkpoint")
    if source and os.path.isdir(source):
        from ..growth_hook import load_checkpoint

        load_checkpoint(source, "--init-from-small")  # one line naming the checkpoints the folder holds


def check_growth_defaults(args) -> None:
    """``--init-from-small`` with the b2b tasks runs the paper's two-stage training by default
    (Eb = 5 stage-1 epochs of lb = 3-layer sub-models): a shallower target or a run of at most
    Eb epochs needs an option more, named here before fairseq starts."""
    from ..errors import B2BError
    from ..growth_hook import resume_checkpoint

    source = getattr(args, "init_from_small", None)
    if not source or getattr(args, "task", None) not in ("b2b_masked_lm", "b2b_language_modeling"):
        return
    resume = resume_checkpoint(args)
    if resume is not None:  # a resumed run keeps what it recorded; a truncated one is named now
        _check_readable(resume)
        return
    schedules = (getattr(args, "stacking_schedule", None) is not None or int(getattr(args, "mslt_layers", 0) or 0)
                 or getattr(args, "share_layers_until", None) is not None)
    eb = getattr(args, "submodel_epochs", None)
    eb = (0 if schedules else 5) if eb is None else int(eb)
    if eb <= 0:
        return
    side = "encoder" if args.task == "b2b_masked_lm" else "decoder"
    depth = int(getattr(args, f"{side}_layers", 0) or 0)
    lb = int(getattr(args, "submodel_layers", 3) or 3)
    defaults = (f"two-stage training (--submodel-epochs {eb} stage-1 epochs of --submodel-layers {lb}-layer "
                "sub-models; the paper's defaults are 5 and 3)")
    if depth and lb > depth:
        raise B2BError(f"--arch {args.arch} has {depth} layer{'s' if depth > 1 else ''}, fewer than --submodel-layers "
                       f"{lb} of {defaults}: add --submodel-layers {max(1, depth // 2)} (at most {depth}), or "
                       "--submodel-epochs 0 for plain training")
    max_epoch = int(getattr(args, "max_epoch", 0) or 0)
    if 0 < max_epoch <= eb:
        raise B2BError(f"--max-epoch {max_epoch} leaves no full-model epoch after {defaults}: add --max-epoch "
                       f"{eb + 1} or more, or --submodel-epochs {max_epoch - 1 if max_epoch > 1 else 0}")


def absolute_paths(argv: list, args) -> list:
    """``argv`` with the data directories and ``--init-from-small`` made absolute: the saved
    checkpoint records them, and a later command may run from another folder."""
    data = str(getattr(args, "data", "") or "")
    parts = data.split(os.pathsep) if data else []
    absolute = os.pathsep.join(os.path.abspath(p) if p and os.path.exists(p) else p for p in parts)
    out, k = [], 0
    while k < len(argv):
        a = argv[k]
        if data and a == data:
            a = absolute
        elif a == "--init-from-small" and k + 1 < len(argv):
            out += [a, os.path.abspath(argv[k + 1]) if os.path.isfile(argv[k + 1]) else argv[k + 1]]
            k += 2
            continue
        elif a.startswith("--init-from-small="):
            path = a.split("=", 1)[1]
            a = f"--init-from-small={os.path.abspath(path) if os.path.isfile(path) else path}"
        out.append(a)
        k += 1
    return out


def _has_checkpoints(save_dir) -> bool:
    try:
        return any(name.endswith(".pt") for name in os.listdir(save_dir))
    except (OSError, TypeError):
        return False


def quiet_hydra() -> None:
    """fairseq's hydra compose prints ~25 lines of deprecation warnings and hydra DEBUG records
    before every run (and before every refusal): they say nothing about the run, so they go."""
    import logging
    import warnings

    for pattern in (r"(?s).*hydra", r"(?s).*version_base", r"(?s).*ConfigStore schema",
                    r"(?s).*deprecated keyword in package header", r"(?s).*strict flag"):
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
    logging.getLogger("hydra").setLevel(logging.WARNING)


def make_log_dir(args) -> None:
    """fairseq opens ``--log-file`` before it creates ``--save-dir``: make its folder first."""
    log_file = getattr(args, "log_file", None)
    if log_file and os.path.dirname(log_file):
        os.makedirs(os.path.dirname(log_file), exist_ok=True)


def updates_per_epoch(argv: list) -> int:
    """Updates in one epoch of the train split, counted with fairseq-train's own batching
    (``Trainer.get_train_iterator``: batch size or max tokens, max positions, data-parallel
    shards) divided by ``--update-freq`` (the last partial group is an update too)."""
    import math

    from fairseq import utils

    from ..checkpoints import build_from_args

    args, _ = parse(argv)
    check_args(args, need_optimizer=False)
    args.init_from_small = None  # the shape is what matters, not the weights
    cfg, task, model = build_from_args(args)
    task.load_dataset(cfg.dataset.train_subset, epoch=1, combine=True)
    itr = task.get_batch_iterator(
        dataset=task.dataset(cfg.dataset.train_subset), max_tokens=cfg.dataset.max_tokens,
        max_sentences=cfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions(), cfg.dataset.max_tokens),
        ignore_invalid_inputs=True, required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
        seed=cfg.common.seed, num_shards=cfg.distributed_training.distributed_world_size, shard_id=0,
        num_workers=0, epoch=1, skip_remainder_batch=cfg.optimization.skip_remainder_batch)
    batches = len(itr.next_epoch_itr(shuffle=False))
    return math.ceil(batches / cfg.optimization.update_freq[0])


def print_help(argv: list) -> None:
    """fairseq-train's help with the options of the given ``--task``/``--arch``/``--optimizer``
    (fairseq's parser prints its help before it has added them)."""
    rest = [a for a in argv if a not in ("-h", "--help")]
    if not any(a in ("--arch", "-a") or a.startswith("--arch=") for a in rest):  # the family's model options
        task = next((rest[k + 1] for k, a in enumerate(rest[:-1]) if a == "--task"), None)
        rest += ["--arch", "b2b_gpt_base" if "gpt" in TASK_FAMILIES.get(task, ()) else "b2b_bert_base"]
    try:
        _, parser = parse(rest + ["DATA"], parse_known=True)
    except SystemExit:
        _, parser = parse(["DATA", "--arch", "b2b_bert_base"], parse_known=True)
    parser.prog = PROG
    _group_for_help(parser, next((rest[k + 1] for k, a in enumerate(rest[:-1]) if a == "--task"), None))
    parser.print_help()


def _group_for_help(parser, task) -> None:
    """argparse prints neither nested groups (the model's "bert2BERT growth" group sits inside
    fairseq's "Model-specific configuration") nor a title for a task's own options: give both
    their own section."""
    import argparse

    for group in list(parser._action_groups):
        parser._action_groups.extend(g for g in getattr(group, "_action_groups", []) if g not in parser._action_groups)
    from fairseq.tasks import TASK_REGISTRY

    if task not in TASK_REGISTRY:
        return
    probe = argparse.ArgumentParser(add_help=False)
    TASK_REGISTRY[task].add_args(probe)
    own = {a.dest for a in probe._actions}
    section = parser.add_argument_group(f"--task {task}")
    for group in parser._action_groups:
        if group is section:
            continue
        moved = [a for a in group._group_actions if a.dest in own and a.option_strings]
        for action in moved:
            group._group_actions.remove(action)
            section._group_actions.append(action)


def main(argv=None) -> None:
    from fairseq_cli import train

    from ..errors import B2BError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help(argv)
        return
    sys.argv = [PROG] + argv  # fairseq's parsers read --user-dir from sys.argv, and name it in usage lines
    try:
        if UPE_FLAG in argv:
            print(updates_per_epoch([a for a in argv if a != UPE_FLAG]))
            return
        args, _ = parse(argv)
        check_args(args)
        check_paths(args)
    except B2BError as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    argv = absolute_paths(argv, args)
    from ..outputs import missing_parents, remove_created

    created = []  # the folders this run makes: removed again (if empty) when it is refused
    log_file = getattr(args, "log_file", None)
    for folder in (getattr(args, "save_dir", None), os.path.dirname(os.path.abspath(log_file)) if log_file else None):
        created += [f for f in missing_parents(os.path.abspath(folder)) if f not in created] if folder else []
    new_log = bool(log_file) and not os.path.exists(log_file)
    make_log_dir(args)
    sys.argv = [PROG] + with_user_dir(argv)
    quiet_hydra()
    try:
        train.cli_main()
    except BaseException as e:
        if not (isinstance(e, SystemExit) and e.code in (None, 0)):
            refused = isinstance(e, SystemExit) and not _has_checkpoints(getattr(args, "save_dir", None))
            if refused and new_log and os.path.isfile(log_file):
                os.remove(log_file)  # the log a refused run started (its error is on the console)
            remove_created(sorted(created, key=len))  # the deepest first
        raise


if __name__ == "__main__":
    main()
