"""``b2b-squad``: fine-tune a (grown, pre-trained) ``b2b_bert_*`` checkpoint on SQuAD v1.1 in
fairseq (``--task b2b_squad --criterion b2b_span``) and score it with the official EM/F1.

Subcommands::

    b2b-squad builtin-set --output DIR                     (DIR/train.json, dev.json: speaker attribution)
    b2b-squad prepare   --train T.json --dev D.json --output OUT (--checkpoint CKPT | --dict D [--codes C])
    b2b-squad fine-tune --checkpoint CKPT --train T.json --dev D.json --output OUT [--lr 3e-5 --epochs 4 --batch-size 16]
    b2b-squad evaluate  --model FINETUNED.pt --dev D.json --output OUT

``prepare`` checks both files (SQuAD v1.1 JSON, every answer at its ``answer_start``) and the
vocabulary, tokenizes them with the pre-training pipeline (Moses, the model's BPE codes, its
``dict.txt``) and writes ``OUT/data`` (``dict.txt``, ``bpe.codes``, ``train.json``,
``valid.json``, ``b2b-squad.json`` with the counts, unmappable answers included).
``fine-tune`` prepares, runs ``fairseq-train --task b2b_squad --criterion b2b_span
--restore-file CKPT --reset-optimizer --reset-dataloader --reset-meters`` with the paper's
defaults (batch 16, learning rate 3e-5, 4 epochs; Adam (0.9, 0.98), eps 1e-6, weight decay
0.01, linear decay after 10% warm-up, dropout 0.1) and scores the final model on the dev file:
``OUT/predictions.json`` (official format, ``{question id: answer text}``) and
``OUT/results.json`` (exact match and F1 x100, the checkpoint's sha256, the settings, the
training command).  ``evaluate`` does the scoring alone for a fine-tuned checkpoint.  Bad
input is refused with one line, before anything is written.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..data.steps import file_digest
from ..errors import B2BError, one_line_errors
from ..eval.common import EvalError, atomic_write, checkpoint_summary, check_dictionary, finetune_argv, fmt_cmd
from ..eval.finetune import add_run_options, add_vocabulary_options, run_flags, subcommand_parser
from ..fairseq_args import option

PROG = "b2b-squad"
PAPER = {"lr": 3e-5, "epochs": 4, "batch_size": 16}
WARMUP_FRACTION = 0.10


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", flush=True)


# ------------------------------------------------------------------------------ checks

def bert_checkpoint(path, dict_path: Optional[str], what: str = "SQuAD fine-tuning") -> Dict:
    """Summary of a b2b_bert checkpoint plus its dictionary path; one-line errors."""
    from ..eval.finetune import bert_checkpoint as glue_bert_checkpoint

    if not Path(path).is_file():
        raise EvalError(f"checkpoint not found: {path}")
    summary = checkpoint_summary(path)
    if summary["family"] != "bert":
        raise EvalError(f"{path} is a {summary['family'].upper()}-family model: {what} needs a BERT-family "
                        "checkpoint (b2b_bert_*)")
    summary, dict_path = glue_bert_checkpoint(path, Path(dict_path) if dict_path else None)
    summary["dict"] = Path(dict_path)
    return summary


def resolve_vocab(args) -> Dict:
    """{"dict", "codes", "summary"}: from --checkpoint (its data-bin) or --dict/--codes."""
    from ..eval.finetune import default_codes

    summary = None
    if getattr(args, "checkpoint", None):
        summary = bert_checkpoint(args.checkpoint, args.dict)
        dict_path = summary["dict"]
    elif args.dict:
        dict_path = Path(args.dict)
        if not dict_path.is_file():
            raise EvalError(f"--dict {dict_path} not found")
    else:
        raise EvalError("pass --checkpoint CKPT (or --dict PRETRAIN_DATA_BIN/dict.txt)")
    return {"dict": Path(dict_path), "codes": default_codes(dict_path, args.codes), "summary": summary}


def _positions(args, summary) -> int:
    model_positions = int(option(summary["model_args"], "max_positions", 512)) if summary else None
    positions = args.max_positions or model_positions or 512
    if model_positions and positions > model_positions:
        raise EvalError(f"--max-positions {positions} exceeds the checkpoint's {model_positions} positions")
    if positions < 16:
        raise EvalError(f"--max-positions {positions} is too small for a question and a context (at least 16)")
    return positions


def _load_dictionary(dict_path: Path):
    from fairseq.data import Dictionary

    d = Dictionary.load(str(dict_path))
    d.add_symbol("<mask>")
    return d


def _features(examples, vocab: Dict, dictionary, settings: Dict, training: bool):
    from ..eval.squad_data import QATokenizer, build_features

    tok = QATokenizer(vocab["codes"], dictionary)
    return build_features(examples, tok, settings["max_positions"], settings["doc_stride"],
                          settings["max_query_length"], training)


# ------------------------------------------------------------------------------ prepare

def cmd_prepare(args) -> Dict:
    from ..eval.squad_data import read_squad

    vocab = resolve_vocab(args)
    train = read_squad(args.train)
    dev = read_squad(args.dev)
    settings = settings_of(args, vocab["summary"])
    dictionary = _load_dictionary(vocab["dict"])
    stats = {"train": _features(train, vocab, dictionary, settings, True).stats,
             "valid": _features(dev, vocab, dictionary, settings, False).stats}
    out = Path(args.output) / "data"
    tmp = Path(args.output) / f".data.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(vocab["dict"], tmp / "dict.txt")
    shutil.copyfile(vocab["codes"], tmp / "bpe.codes")
    shutil.copyfile(args.train, tmp / "train.json")
    shutil.copyfile(args.dev, tmp / "valid.json")
    meta = {"train": os.path.abspath(args.train), "dev": os.path.abspath(args.dev),
            "train_sha256": file_digest(Path(args.train)), "dev_sha256": file_digest(Path(args.dev)),
            "dict": str(vocab["dict"]), "codes": str(vocab["codes"]), "settings": settings, "stats": stats}
    atomic_write(tmp / "b2b-squad.json", json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    for split, st in stats.items():
        _say(f"{split}: {st['questions']} questions, {st['windows']} windows ({st['windowed_questions']} questions "
             f"over several windows), {st['unmappable_answers']} of {st['answers']} answers unmappable"
             + (f", {st['unmappable_train_questions']} training questions left out for it" if split == "train" else "")
             + (f"; unknown pieces {st['unknown_pieces']}/{st['pieces']}" if st["unknown_pieces"] else ""))
    _say(f"wrote {out}")
    return meta


def settings_of(args, summary) -> Dict:
    for flag in ("doc_stride", "max_query_length", "max_answer_length"):
        if getattr(args, flag) < 1:
            raise EvalError(f"--{flag.replace('_', '-')} must be at least 1")
    return {"max_positions": _positions(args, summary), "doc_stride": args.doc_stride,
            "max_query_length": args.max_query_length, "max_answer_length": args.max_answer_length}


# ------------------------------------------------------------------------------ fine-tune

def train_args(data_dir: Path, ckpt: str, summary: Dict, settings: Dict, hp: Dict, windows: int,
               save_dir: Path, args) -> List[str]:
    total = math.ceil(windows / hp["batch_size"]) * hp["epochs"]
    cmd = finetune_argv(data_dir, "b2b_squad", "b2b_span", ckpt, summary)
    model_positions = int(option(summary["model_args"], "max_positions", settings["max_positions"]))
    cmd += ["--max-positions", str(model_positions), "--window-length", str(settings["max_positions"]),
            "--doc-stride", str(settings["doc_stride"]),
            "--max-query-length", str(settings["max_query_length"]),
            "--max-answer-length", str(settings["max_answer_length"]),
            "--batch-size", str(hp["batch_size"]), "--required-batch-size-multiple", "1",
            "--max-epoch", str(hp["epochs"]), "--optimizer", "adam", "--adam-betas", "(0.9,0.98)",
            "--adam-eps", "1e-06", "--weight-decay", "0.01", "--clip-norm", "0.0",
            "--lr-scheduler", "polynomial_decay", "--lr", f"{hp['lr']:g}", "--total-num-update", str(total),
            "--warmup-updates", str(int(WARMUP_FRACTION * total)), "--dropout", str(hp["dropout"]),
            "--attention-dropout", str(hp["dropout"]), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
            "--disable-validation"]  # nothing is selected on dev: the final model is scored after training
    return cmd + run_flags(args)


def cmd_fine_tune(args) -> Dict:
    from ..eval.finetune import run_training
    from ..eval.squad_data import read_squad

    hp = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "dropout": args.dropout}
    if not (args.lr > 0 and math.isfinite(args.lr)) or args.epochs < 1 or args.batch_size < 1 or not 0 <= args.dropout < 1:
        raise EvalError("--lr must be positive, --epochs and --batch-size at least 1, --dropout in [0, 1)")
    vocab = resolve_vocab(args)  # refuses a GPT / foreign checkpoint before anything is written
    read_squad(args.train)
    read_squad(args.dev)
    settings_of(args, vocab["summary"])
    _check_output(Path(args.output), args.force)
    started = time.monotonic()
    meta = cmd_prepare(args)
    out = Path(args.output)
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    argv = train_args(out / "data", args.checkpoint, vocab["summary"], meta["settings"], hp,
                      meta["stats"]["train"]["windows"], run_dir, args)
    _say(f"fine-tuning ({meta['stats']['train']['windows']} windows, {hp['epochs']} epochs, batch "
         f"{hp['batch_size']}, lr {hp['lr']:g}) ...")
    run_training(argv, run_dir / "train.log", args.verbose)
    model = run_dir / "checkpoint_last.pt"
    if not model.is_file():
        raise EvalError(f"fairseq-train wrote no {model}: see {run_dir / 'train.log'}")
    best = run_dir / "checkpoint_best.pt"
    if best.is_file():
        best.unlink()  # the paper's recipe scores the final model (fixed epochs), not a dev-selected one
    extra = {"checkpoint": os.path.abspath(args.checkpoint), "checkpoint_sha256": file_digest(Path(args.checkpoint)),
             "hyperparameters": hp, "train_command": fmt_cmd(["fairseq-train", *argv, "--user-dir", "$(b2b-user-dir)"]),
             "train_stats": meta["stats"]["train"]}
    report = evaluate(model, Path(args.dev), out, out / "data", args.cpu, args.batch_size_eval, extra)
    report["seconds"] = round(time.monotonic() - started, 1)
    atomic_write(out / "results.json", json.dumps(report, indent=2) + "\n")
    if not args.keep_checkpoint:
        model.unlink()
    return report


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise EvalError(f"--output {out} is a file, not a folder")
    if (out / "results.json").exists() and not force:
        raise EvalError(f"{out}/results.json exists: pass another --output, or --force to replace it")
    probe = out if out.is_dir() else out.parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise EvalError(f"--output {out} is not writable")


# ------------------------------------------------------------------------------ evaluate

def predict(model_path: Path, dev: Path, data_dir: Optional[Path], cpu: bool = True, batch_size: int = 64):
    """(feature set, {qid: answer text}) of a fine-tuned b2b_squad checkpoint on a SQuAD file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _predict(model_path, dev, data_dir, cpu, batch_size)


def _predict(model_path, dev, data_dir, cpu, batch_size):
    import torch
    from fairseq import checkpoint_utils, utils

    import fairseq_b2b  # noqa: F401

    from ..eval.squad_data import decode
    from ..models.span_head import SPAN_HEAD

    overrides = {"data": str(data_dir)} if data_dir else {}
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(model_path)], arg_overrides=overrides)
    model = models[0].eval()
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model.cuda()
    fs = task.load_feature_set("dev", path=str(dev), training=False)
    from ..tasks.squad import SquadWindows

    ds = SquadWindows(fs, task.dictionary, shuffle=False, seed=1)
    logits = {}
    with torch.no_grad():
        for start in range(0, len(ds), batch_size):
            sample = ds.collater([ds[i] for i in range(start, min(len(ds), start + batch_size))])
            if use_cuda:
                sample = utils.move_to_cuda(sample)
            out, _ = model(**sample["net_input"], features_only=True, classification_head_name=SPAN_HEAD)
            out = out.float().cpu()
            for row, idx in enumerate(sample["id"].tolist()):
                logits[idx] = (out[row, :, 0], out[row, :, 1])
    return fs, decode(fs, logits, int(task.cfg.max_answer_length))


def evaluate(model_path: Path, dev: Path, out: Path, data_dir: Optional[Path], cpu: bool, batch_size: int,
             extra: Optional[Dict] = None) -> Dict:
    from ..data.qa_builtin import BUILTIN_SOURCE, first_name_baseline
    from ..eval.squad_data import gold_answers, read_squad
    from ..eval.squad_metric import evaluate as squad_evaluate

    examples = read_squad(dev)
    try:
        fs, preds = predict(model_path, dev, data_dir, cpu=cpu or not _cuda(), batch_size=batch_size)
    except B2BError:
        raise
    except Exception as e:  # fairseq/torch errors: one line
        raise EvalError(f"scoring {model_path} on {dev} failed: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    gold = gold_answers(examples)
    scores = squad_evaluate(gold, preds)
    report = {"exact_match": scores["exact_match"], "f1": scores["f1"], "questions": scores["questions"],
              "dev": os.path.abspath(dev), "dev_sha256": file_digest(Path(dev)),
              "fine_tuned": os.path.abspath(model_path), "fine_tuned_sha256": file_digest(Path(model_path)),
              "dev_stats": {k: v for k, v in fs.stats.items() if k != "unmappable_train_questions"}}
    squad = json.loads(Path(dev).read_text(encoding="utf-8"))
    if squad.get("source") == BUILTIN_SOURCE:
        report["first_name_baseline"] = squad_evaluate(gold, first_name_baseline(squad))
    if extra:
        report = {**report, **extra}
    atomic_write(out / "predictions.json", json.dumps(preds, ensure_ascii=False, indent=1) + "\n")
    atomic_write(out / "results.json", json.dumps(report, indent=2) + "\n")
    base = report.get("first_name_baseline")
    _say(f"dev: exact match {report['exact_match']:.1f}, F1 {report['f1']:.1f} ({report['questions']} questions)"
         + (f"; first-name baseline EM {base['exact_match']:.1f}, F1 {base['f1']:.1f}" if base else "")
         + f"; wrote {out / 'predictions.json'} and results.json")
    return report


def cmd_evaluate(args) -> Dict:
    from ..eval.squad_data import read_squad

    if not Path(args.model).is_file():
        raise EvalError(f"--model not found: {args.model}")
    summary = checkpoint_summary(args.model)
    if summary["family"] != "bert":
        raise EvalError(f"{args.model} is a {summary['family'].upper()}-family model, not a b2b_bert model "
                        "fine-tuned by b2b-squad")
    from ..models.span_head import SPAN_HEAD

    if SPAN_HEAD not in summary["heads"]:
        raise EvalError(f"{args.model} has no span head ({SPAN_HEAD}): fine-tune it with b2b-squad fine-tune first")
    data_dir = Path(args.data) if args.data else None
    recorded = option(summary["task_args"], "data")
    if data_dir is None and not (recorded and (Path(recorded) / "dict.txt").is_file()):
        raise EvalError(f"the data folder of {args.model} ({recorded}) is gone: pass --data, a folder with the "
                        "dict.txt and bpe.codes it was fine-tuned with")
    if data_dir is not None:
        for name in ("dict.txt", "bpe.codes"):
            if not (data_dir / name).is_file():
                raise EvalError(f"--data {data_dir} has no {name}")
        check_dictionary(summary, data_dir / "dict.txt", args.model, "pass the --data of its fine-tuning",
                         add_mask=True)
    read_squad(args.dev)
    _check_output(Path(args.output), args.force)
    return evaluate(Path(args.model), Path(args.dev), Path(args.output), data_dir, args.cpu, args.batch_size_eval)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ------------------------------------------------------------------------------ command line

def build_parser() -> argparse.ArgumentParser:
    p, sub = subcommand_parser(PROG, __doc__, ["builtin-set", "prepare", "fine-tune", "evaluate"])

    def data_opts(sp):
        sp.add_argument("--train", required=True, help="SQuAD v1.1 training JSON")
        sp.add_argument("--dev", required=True, help="SQuAD v1.1 dev JSON (scored)")
        sp.add_argument("--output", required=True, help="output folder")
        add_vocabulary_options(sp)
        sp.add_argument("--max-positions", type=int, default=None,
                        help="input length: question + window + 4 (default: the checkpoint's positions)")
        sp.add_argument("--doc-stride", type=int, default=128,
                        help="step between the starts of a long context's windows (default: %(default)s)")
        sp.add_argument("--max-query-length", type=int, default=64,
                        help="question pieces kept, at most half the positions (default: %(default)s)")
        sp.add_argument("--max-answer-length", type=int, default=30,
                        help="longest decoded answer, in BPE pieces (default: %(default)s)")
        sp.add_argument("--verbose", action="store_true", help="show fairseq's output (default: off)")

    bs = sub.add_parser("builtin-set", help="write the built-in speaker-attribution set (SQuAD v1.1 format)")
    bs.add_argument("--output", required=True, help="folder for train.json and dev.json")
    bs.add_argument("--train-questions", type=int, default=6000, help="(default: %(default)s)")
    bs.add_argument("--dev-questions", type=int, default=1000, help="(default: %(default)s)")
    bs.add_argument("--seed", type=int, default=1, help="seed of the passage sampling (default: %(default)s)")

    pr = sub.add_parser("prepare", help="check and tokenize SQuAD files with the pre-training vocabulary")
    data_opts(pr)
    pr.add_argument("--checkpoint", default=None, help="take --dict/--codes (and positions) from this checkpoint")

    ft = sub.add_parser("fine-tune", help="prepare, fine-tune in fairseq, write predictions.json and results.json")
    data_opts(ft)
    ft.add_argument("--checkpoint", required=True, help="(grown, pre-trained) b2b_bert_* checkpoint")
    ft.add_argument("--lr", type=float, default=PAPER["lr"], help="peak learning rate (default: %(default)s, the paper's)")
    ft.add_argument("--epochs", type=int, default=PAPER["epochs"], help="(default: %(default)s, the paper's)")
    ft.add_argument("--batch-size", type=int, default=PAPER["batch_size"], help="(default: %(default)s, the paper's)")
    ft.add_argument("--dropout", type=float, default=0.1, help="(default: %(default)s)")
    add_run_options(ft)
    ft.add_argument("--fp16", action="store_true", help="mixed precision (CUDA) (default: off)")
    ft.add_argument("--batch-size-eval", type=int, default=64, help="(default: %(default)s)")
    ft.add_argument("--keep-checkpoint", action="store_true",
                    help="keep the fine-tuned OUT/run/checkpoint_last.pt (default: off, deleted once scored)")
    ft.add_argument("--force", action="store_true", help="replace an existing OUT/results.json (default: off)")

    ev = sub.add_parser("evaluate", help="score a b2b-squad fine-tuned checkpoint on a SQuAD v1.1 file")
    ev.add_argument("--model", required=True, help="fine-tuned checkpoint (b2b-squad fine-tune --keep-checkpoint)")
    ev.add_argument("--dev", required=True, help="SQuAD v1.1 JSON to score")
    ev.add_argument("--output", required=True, help="folder for predictions.json and results.json")
    ev.add_argument("--data", default=None, help="folder with its dict.txt and bpe.codes (default: the one it "
                                                 "was fine-tuned with)")
    ev.add_argument("--cpu", action="store_true", help="(default: off)")
    ev.add_argument("--batch-size-eval", type=int, default=64, help="(default: %(default)s)")
    ev.add_argument("--force", action="store_true", help="replace an existing OUT/results.json (default: off)")
    return p


def run(argv: Optional[Sequence[str]] = None):
    """The command; returns what the subcommand produced (errors: ``SystemExit`` with one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(name)s: %(message)s", force=True)
    with one_line_errors(PROG):
        if args.command == "builtin-set":
            from ..data import qa_builtin

            if args.train_questions < 1 or args.dev_questions < 1:
                raise EvalError("--train-questions and --dev-questions must be at least 1")
            info = qa_builtin.write(args.output, args.train_questions, args.dev_questions, args.seed)
            for split in ("train", "dev"):
                b = info[split]["first_name_baseline"]
                _say(f"{split}: {info[split]['questions']} questions on {info[split]['contexts']} passages; "
                     f"first-name baseline EM {b['exact_match']:.1f}, F1 {b['f1']:.1f}")
            _say(f"wrote {args.output}/train.json and dev.json")
            return info
        if args.command == "prepare":
            return cmd_prepare(args)
        if args.command == "fine-tune":
            return cmd_fine_tune(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run(argv)


if __name__ == "__main__":
    main()
