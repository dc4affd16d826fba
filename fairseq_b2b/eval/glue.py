"""``b2b-glue``: fine-tune a (grown, pre-trained) ``b2b_bert_*`` checkpoint on GLUE with
fairseq's ``sentence_prediction`` task, over the paper's hyper-parameter grid.

Subcommands::

    b2b-glue prepare --glue-dir DIR --tasks SST-2,MNLI --output OUT [--codes C --dict D | --checkpoint CKPT]
    b2b-glue sweep   --checkpoint CKPT --glue-dir DIR --tasks SST-2,... --output OUT [--grid paper|small]
    b2b-glue table   --output OUT                      (rewrite results.md/json from finished runs)
    b2b-glue builtin-task --output DIR                 (a real binary task in SST-2 layout, offline)

Data (``prepare``, also the first step of ``sweep``): the GLUE TSVs as the GLUE download
script lays them out (``DIR/<TASK>/train.tsv``, ``dev.tsv``; MNLI ``dev_matched.tsv`` and
``dev_mismatched.tsv``), columns as in fairseq's RoBERTa recipe
(``examples/roberta/preprocess_GLUE_tasks.sh``).  Every text column goes through the
*pre-training* Moses tokenization and BPE codes and is binarized with the *pre-training*
dictionary (``--srcdict``) into ``OUT/data/<TASK>-bin/{input0,input1,label}``; labels get a
fixed label dictionary (classes in the order listed below); STS-B scores are divided by 5
like fairseq's recipe (correlations do not change).  Rows with too few columns (QQP has some)
or an unknown label are skipped and counted.  ``valid`` is the dev set (MNLI: matched; its
mismatched dev set is ``valid1``).

Fine-tuning (``sweep``): per task and grid point one ``fairseq-train --task
sentence_prediction --criterion sentence_prediction --restore-file CKPT --reset-optimizer
--reset-dataloader --reset-meters --arch <the checkpoint's arch and shape> --init-token 0
--separator-token 2 --num-classes K`` run (regression for STS-B), Adam (0.9, 0.98) eps 1e-6,
weight decay 0.1, polynomial decay with 6% warm-up, dropout 0.1, inputs truncated to the
model's positions; fairseq keeps the best epoch on dev (``--best-checkpoint-metric``: accuracy,
mcc for CoLA, acc_and_f1 for MRPC/QQP, pearson_and_spearman for STS-B).  That checkpoint is
then scored on dev here (metrics in :mod:`fairseq_b2b.eval.metrics`) and the result kept in
``OUT/runs/<TASK>/<setting>/result.json``; reruns skip finished settings.  ``OUT/results.md``
and ``OUT/results.json`` hold the best setting per task and the full grid.

The grids: ``paper`` (bert2BERT, Chen et al. 2022, Appendix): batch 32, learning rate
{5e-6, 1e-5, 2e-5, 3e-5}, epochs {4, 5, 10}: 12 runs per task.  ``small``: batch 32, learning
rate {1e-4, 3e-4}, 3 epochs, for tiny CPU models.  ``--lrs``/``--epochs``/``--batch-size``
override either.

The command line is here; the jobs live in one file each: the tasks and their metric
(:mod:`.glue_tasks`), data preparation (:mod:`.glue_data`), the sweep (:mod:`.glue_sweep`), dev
scoring (:mod:`.glue_metric`), the results table (:mod:`.glue_results`), the built-in MILTON task
(:mod:`.glue_builtin`), and what fine-tuning shares with ``b2b-squad`` (:mod:`.finetune`).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from ..errors import one_line_errors
from .common import EvalError, fmt_cmd
from .finetune import add_run_options, add_vocabulary_options, bert_checkpoint, default_codes, subcommand_parser
from .glue_builtin import builtin_task
from .glue_data import prepare_task, read_tsv, split_files  # noqa: F401  (read_tsv, split_files: tests)
from .glue_metric import METRIC_NAMES
from .glue_results import pct, claim_output, write_table
from .glue_sweep import GRIDS, grid_settings, run_setting, setting_name, train_args
from .glue_tasks import TASKS, TaskSpec, parse_tasks  # noqa: F401  (TaskSpec: users)

PROG = "b2b-glue"


def build_parser() -> argparse.ArgumentParser:
    p, sub = subcommand_parser(PROG, __doc__, ["prepare", "sweep", "table", "builtin-task"])

    def data_opts(sp):
        sp.add_argument("--glue-dir", required=True, help="folder with one sub-folder of TSVs per task")
        sp.add_argument("--tasks", required=True, help=f"comma-separated, from {','.join(TASKS)}")
        sp.add_argument("--output", required=True, help="output folder")
        add_vocabulary_options(sp)
        sp.add_argument("--workers", type=int, default=1, help="processes for tokenization and binarization (default: %(default)s)")
        sp.add_argument("--verbose", action="store_true", help="show preprocessing and fairseq output (default: off)")

    pr = sub.add_parser("prepare", help="tokenize, BPE and binarize GLUE TSVs with the pre-training vocabulary")
    data_opts(pr)
    pr.add_argument("--checkpoint", default=None, help="take --dict/--codes defaults from this checkpoint")

    sw = sub.add_parser("sweep", help="fine-tune over a grid and score each setting's best checkpoint on dev")
    data_opts(sw)
    sw.add_argument("--checkpoint", required=True, help="(grown, pre-trained) b2b_bert_* checkpoint")
    sw.add_argument("--grid", choices=sorted(GRIDS), default="paper", help="hyper-parameter grid (default: paper)")
    sw.add_argument("--lrs", default=None, help="comma-separated learning rates (default: the grid's)")
    sw.add_argument("--epochs", default=None, help="comma-separated epoch counts (default: the grid's)")
    sw.add_argument("--batch-size", type=int, default=None, help="batch size of every run (default: the grid's, 32)")
    add_run_options(sw)
    sw.add_argument("--fp16", action="store_true", help="mixed precision (CUDA); every run uses one device, so "
                                                        "the batch size is the paper's (default: off)")
    sw.add_argument("--keep-checkpoints", action="store_true",
                    help="keep each setting's checkpoint_best.pt (default: off, deleted once scored)")
    sw.add_argument("--dry-run", action="store_true", help="prepare the data and print the training commands only (default: off)")

    tb = sub.add_parser("table", help="rewrite OUT/results.md and results.json from the finished runs")
    tb.add_argument("--output", required=True, help="the --output folder of b2b-glue sweep (required)")

    bt = sub.add_parser("builtin-task", help="write the built-in MILTON task (SST-2 layout) from the built-in corpus")
    bt.add_argument("--output", required=True, help="GLUE-style folder; MILTON/{train,dev}.tsv go in it")
    bt.add_argument("--train-per-class", type=int, default=2000,
                    help="train lines per class (default: %(default)s)")
    bt.add_argument("--dev-per-class", type=int, default=500, help="dev lines per class (default: %(default)s)")
    bt.add_argument("--seed", type=int, default=1, help="seed of the line sampling (default: %(default)s)")
    return p


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", flush=True)


def cmd_prepare(args, summary_dict=None) -> Dict[str, Dict]:
    specs = parse_tasks(args.tasks)
    if args.workers < 1:
        raise EvalError(f"--workers must be at least 1, got {args.workers}")
    if args.checkpoint:
        _, dict_path = bert_checkpoint(args.checkpoint, Path(args.dict) if args.dict else None)
    elif args.dict:
        dict_path = Path(args.dict)
        if not dict_path.is_file():
            raise EvalError(f"--dict {dict_path} not found")
    else:
        raise EvalError("pass --dict PRETRAIN_DATA_BIN/dict.txt (or --checkpoint to take it from the checkpoint)")
    codes = default_codes(dict_path, args.codes)
    data_dir = Path(args.output) / "data"
    metas = {}
    for spec in specs:
        started = time.monotonic()
        metas[spec.name] = meta = prepare_task(spec, Path(args.glue_dir), codes, dict_path, data_dir, args.workers,
                                               args.verbose)
        skipped = sum(v for s in meta["skipped"].values() for v in s.values())
        _say(f"{spec.name}: {data_dir / (spec.name + '-bin')} ready ("
             + ", ".join(f"{s} {n:,}" for s, n in meta["counts"].items())
             + (f"; {skipped} malformed rows skipped" if skipped else "") + f") in {time.monotonic() - started:.1f}s")
    return metas


def cmd_sweep(args) -> Dict:
    specs = parse_tasks(args.tasks)
    summary, dict_path = bert_checkpoint(args.checkpoint, Path(args.dict) if args.dict else None)
    args.dict = str(dict_path)
    settings = grid_settings(args)
    if not args.dry_run:
        claim_output(Path(args.output), args.checkpoint, write=False)  # refused before anything is written
    metas = cmd_prepare(args)
    out = Path(args.output)
    claim = claim_output(out, args.checkpoint) if not args.dry_run else None
    args.checkpoint_sha256 = claim["sha256"] if claim else None
    for spec in specs:
        data_bin = out / "data" / f"{spec.name}-bin"
        for setting in settings:
            run_dir = out / "runs" / spec.name / setting_name(setting)
            if args.dry_run:
                argv = train_args(spec, metas[spec.name], data_bin, args.checkpoint, summary, setting, run_dir, args)
                print(fmt_cmd(["fairseq-train", *argv]) + " --user-dir $(b2b-user-dir)")
                continue
            _say(f"{spec.name} {setting_name(setting)}: training ...")
            r = run_setting(spec, metas[spec.name], data_bin, args.checkpoint, summary, setting, run_dir, args)
            _say(f"{spec.name} {setting_name(setting)}: dev {METRIC_NAMES.get(r['metric'], r['metric'])} "
                 f"{pct(r['score'])} ({r['seconds']}s)")
            write_table(out, args.checkpoint)
    if args.dry_run:
        return {}
    report = write_table(out, args.checkpoint)
    print((out / "results.md").read_text())
    return report


def run(argv: Optional[Sequence[str]] = None):
    """The command; returns what the subcommand produced (errors: ``SystemExit`` with one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(name)s: %(message)s", force=True)
    with one_line_errors(PROG, "interrupted; rerun the same command to continue"):
        if args.command == "prepare":
            return cmd_prepare(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "table":
            if not (Path(args.output) / "runs").is_dir():
                raise EvalError(f"no runs under {args.output}: run b2b-glue sweep first")
            report = write_table(Path(args.output))
            print((Path(args.output) / "results.md").read_text())
            return report
        if args.command == "builtin-task":
            if args.train_per_class < 1 or args.dev_per_class < 1:
                raise EvalError("--train-per-class and --dev-per-class must be at least 1")
            written = builtin_task(args.output, args.train_per_class, args.dev_per_class, args.seed)
            _say(f"wrote {written['dir']}/train.tsv ({written['train']} rows) and dev.tsv ({written['dev']} rows)")
            return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``b2b-glue`` (returns None: a console script exits with main's return value)."""
    run(argv)


if __name__ == "__main__":
    main()
