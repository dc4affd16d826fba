"""What ``b2b-glue`` and ``b2b-squad`` share to fine-tune a pre-trained ``b2b_bert_*`` checkpoint: its
facts and pre-training dictionary (:func:`bert_checkpoint`), its BPE codes (:func:`default_codes`),
the flags every run ends with (:func:`run_flags`) and one fairseq-train run in a subprocess with
its log kept (:func:`run_training`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..fairseq_args import option
from .common import EvalError, check_dictionary, checkpoint_summary, device_flags, fmt_cmd, last_line


def bert_checkpoint(path, dict_path: Optional[Path]) -> Tuple[Dict, Path]:
    """(checkpoint summary, dictionary path) of a b2b_bert checkpoint; one-line errors."""
    summary = checkpoint_summary(path)
    if summary["family"] != "bert":
        raise EvalError(f"{path} is a {summary['family'].upper()}-family model: GLUE fine-tuning needs a "
                        "BERT-family checkpoint (b2b_bert_*)")
    arch = option(summary["model_args"], "arch") or option(summary["model_args"], "_name")
    if not arch:
        raise EvalError(f"{path} does not record its --arch: it is not a fairseq-b2b checkpoint")
    summary["arch"] = arch
    if dict_path is None:
        from ..paths import resolve_data_dir

        data = option(summary["task_args"], "data")
        data = resolve_data_dir(data, str(path)) or data  # recorded relative to the training folder
        dict_path = Path(str(data).split(os.pathsep)[0]) / "dict.txt" if data else None
        if dict_path is None or not dict_path.is_file():
            raise EvalError(f"the pre-training dictionary of {path} is not at {dict_path}: pass --dict "
                            "PRETRAIN_DATA_BIN/dict.txt")
    check_dictionary(summary, dict_path, path, "pass --dict the dict.txt of the pre-training data-bin",
                     add_mask=True)
    return summary, Path(dict_path)


def default_codes(dict_path: Path, codes: Optional[str]) -> Path:
    """--codes, or ``bpe.codes`` next to the pre-training data-bin (b2b-preprocess's layout)."""
    from ..data import DataError
    from ..data.bpe import read_codes

    if codes:
        path = Path(codes)
    else:  # OUT/data-bin/dict.txt or OUT/dict.txt -> OUT/bpe.codes
        here = Path(dict_path).resolve().parent
        path = next((p for p in (here / "bpe.codes", here.parent / "bpe.codes") if p.is_file()),
                    here.parent / "bpe.codes")
    if not path.is_file():
        raise EvalError(f"BPE codes not found at {path}: pass --codes, the codes of the pre-training data "
                        "(b2b-preprocess OUT/bpe.codes)")
    try:
        read_codes(path)
    except DataError as e:
        raise EvalError(f"--codes: {e}") from None
    return path


def subcommand_parser(prog: str, doc: str, names: List[str]):
    """(parser, subparsers) of a fine-tuning command with subcommands ``names``; the description is
    the module docstring's first paragraph."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser, parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(names) + "}")


def add_vocabulary_options(parser) -> None:
    """--codes and --dict: the pre-training vocabulary, by default found from the checkpoint."""
    parser.add_argument("--codes", default=None, help="pre-training BPE codes (default: bpe.codes beside the "
                                                       "checkpoint's data-bin)")
    parser.add_argument("--dict", default=None, help="pre-training dict.txt (default: the checkpoint's data-bin)")


def add_run_options(parser) -> None:
    """--seed and --cpu of every fine-tuning run (:func:`run_flags` puts them on its argv)."""
    parser.add_argument("--seed", type=int, default=1, help="fairseq-train --seed (default: %(default)s)")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even if CUDA is available (default: off)")


def run_flags(args) -> List[str]:
    """The flags every fine-tuning run's argv ends with: no optimizer state saved, ``--seed``, one
    process with a json log every 50 updates, and the device (``--cpu``, ``--fp16``)."""
    cmd = ["--no-save-optimizer-state", "--seed", str(args.seed), "--num-workers", "0",
           "--log-format", "json", "--log-interval", "50", "--distributed-world-size", "1"]
    cmd += device_flags(args.cpu)
    if getattr(args, "fp16", False):
        cmd += ["--fp16"]
    return cmd


def run_training(train_argv: List[str], log_path: Path, verbose: bool) -> None:
    from ..fairseq_args import with_user_dir

    cmd = [sys.executable, "-m", "fairseq_b2b.cli.train", *train_argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            log.write(line)
            if verbose:
                sys.stderr.write(line)
        rc = proc.wait()
    if rc != 0:
        raise EvalError(f"fairseq-train failed ({fmt_cmd(['fairseq-train', *with_user_dir(train_argv)])[:200]}...): "
                        f"{last_line(log_path.read_text())} (log: {log_path})")
