"""``b2b-eval-lm``: zero-shot perplexity of a GPT checkpoint on raw evaluation text.

For each ``--eval-file`` (e.g. the PTB or WikiText-2 validation split):

1. the text is tokenized and BPE-split exactly as the pre-training corpus was (Moses +
   the pre-training ``--codes``, :func:`fairseq_b2b.data.apply_to_file`), line by line, blank
   lines kept;
2. it is binarized with the *training* dictionary, ``fairseq-preprocess --only-source
   --srcdict DATA_BIN/dict.txt --testpref ...``: no new symbols; BPE units the dictionary
   lacks (characters the BPE never saw) become ``<unk>``, and are counted and reported;
3. fairseq's own ``fairseq_cli.eval_lm`` scores it in a subprocess (``--user-dir`` of this
   plugin), while the exact summed negative log-likelihood of every scored token is recorded
   in float64 (:mod:`fairseq_b2b.eval._fairseq_eval_lm`); fairseq's own ``Loss (base 2)``
   is reported beside it and must agree.

Perplexities
------------
* per BPE token: ``exp(NLL / T)``, ``T`` = scored tokens (BPE units + one end-of-line
  ``</s>`` per line) = ``2 ** (fairseq's Loss (base 2))``.
* per word: ``exp(NLL / W)``, ``W`` = whitespace-separated tokens of the *original* file plus
  one end-of-line per line (blank lines count one end-of-line each), the convention of the
  PTB / WikiText word-level numbers the paper reports (PTB valid: 73,760 = 70,390 words + 3,370
  lines).  A word's probability is the product of the probabilities of the BPE tokens it was
  split into (chain rule), so summing the token NLLs of a word gives the word's NLL and the
  total NLL is the same whichever unit it is divided by; only the normalizer changes.  Per-word
  perplexities of models with different vocabularies are therefore comparable, per-token ones
  are not.  Everything stays in nats until the exponent (fairseq logs base 2).

Scoring mode
------------
The default ``--sample-break-mode none`` treats the file as one stream (lines joined by their
``</s>``), cut into blocks; with ``--context-window C`` each block of ``tokens_per_sample - C``
tokens is scored with up to ``C`` preceding tokens as extra context, so every token is scored
exactly once and sees at least ``C`` tokens of history (except at the start).  Lines of any
length work.  ``--sample-break-mode eos`` scores every line on its own (sentence-level); fairseq
then silently skips lines longer than the model's positions, which this command refuses.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import one_line_errors
from ..fairseq_args import option
from .common import (EvalError, bpe_lines, check_dictionary, check_text_file, checkpoint_summary,
                     count_unknowns, device_flags, fairseq_preprocess, fmt_cmd, last_line, read_lines,
                     unknown_summary)

PROG = "b2b-eval-lm"
AGREE_RTOL = 1e-4  # fairseq accumulates in float32 and rounds its log line
DETOKENIZERS = ("none", "wikitext")

# WikiText / PTB word-level tokenization undone, in this order (each rule sees the previous ones' output)
_WIKITEXT_RULES = [
    (re.compile(r" @([-,.])@ "), r"\1"),                         # 1 @,@ 000 / state @-@ of @-@ the @-@ art / 3 @.@ 5
    (re.compile(r"(?<!\S)=( =)+(?=\s|$)"), lambda m: m.group(0).replace(" ", "")),  # = = Section = = -> == Section ==
    (re.compile(r'(?<!\S)" ([^"]*?) "(?!\S)'), r'"\1"'),           # " quoted " -> "quoted"
    (re.compile(r"([(\[{$]) "), r"\1"),                           # no space after an opening bracket or $
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),                     # nor before closing punctuation
    (re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)(?![A-Za-z])", re.IGNORECASE), r"\1"),  # do n't -> don't, it 's -> it's
]


def wikitext_detokenize(text: str) -> str:
    """WikiText/PTB-tokenized text back to running text (``--detokenize wikitext``)."""
    text = f" {text} "
    for pattern, repl in _WIKITEXT_RULES:
        text = pattern.sub(repl, text)
    return re.sub(r"\s+", " ", text).strip()


def split_unk_words(lines: List[str], unk_word: str) -> List[List[str]]:
    """Each line as the text pieces between its ``unk_word`` words (whitespace-delimited):
    ``n`` such words give ``n + 1`` pieces, which are tokenized and BPE-split on their own and
    joined again around the dictionary's ``<unk>``."""
    if not unk_word:
        return [[line] for line in lines]
    pattern = re.compile(r"(?<!\S)" + re.escape(unk_word) + r"(?!\S)")
    return [pattern.split(line) for line in lines]


def prepare_lines(lines: List[str], args, workdir: Path, unk_symbol: str):
    """The BPE text of each line, as the pre-training corpus was made, and the number of the
    file's ``--unk-word`` words, each now the single symbol ``unk_symbol``."""
    pieces = split_unk_words(lines, args.unk_word)
    flat = [piece for line in pieces for piece in line]
    if args.detokenize == "wikitext":
        flat = [wikitext_detokenize(piece) for piece in flat]
    done = iter(bpe_lines(flat, args.codes, workdir, args.workers, args.pretokenized, args.verbose))
    out = []
    for line in pieces:
        parts = [next(done) for _ in line]
        tokens = []
        for i, part in enumerate(parts):
            if i:
                tokens.append(unk_symbol)
            tokens.extend(part.split())
        out.append(" ".join(tokens))
    return out, sum(len(line) - 1 for line in pieces)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", required=True, help="GPT checkpoint (b2b_gpt_* or transformer_lm)")
    p.add_argument("--data", required=True, help="the data-bin the model was trained on (its dict.txt is used)")
    p.add_argument("--codes", required=True, help="the BPE codes of that data-bin (b2b-preprocess OUT/bpe.codes)")
    p.add_argument("--eval-file", action="append", required=True, metavar="FILE",
                   help="raw text to evaluate, one line per sentence/paragraph (repeatable)")
    p.add_argument("--name", action="append", default=[], help="a name per --eval-file, in order (default: file name)")
    p.add_argument("--pretokenized", action="store_true",
                   help="skip Moses tokenization (only if the training text was not Moses-tokenized either; "
                        "default: off)")
    p.add_argument("--unk-word", default="<unk>", metavar="WORD",
                   help="the word that marks an out-of-vocabulary word in the eval file (PTB and WikiText use <unk>): "
                        "scored as the dictionary's <unk>, one token and one word, instead of being tokenized as "
                        "text; '' to tokenize it like any other word (default: %(default)s)")
    p.add_argument("--detokenize", choices=DETOKENIZERS, default="none",
                   help="wikitext: undo the WikiText/PTB word-level tokenization before the training tokenization, "
                        "as GPT-2-style zero-shot evaluations do (' @-@ ' -> '-', ' @,@ ' -> ',', ' @.@ ' -> '.', no "
                        "space before punctuation or inside brackets and quotes, \" n't\" / \" 's\" joined, "
                        "'= = x = =' -> '== x =='); words are still counted on the original file (default: %(default)s)")
    p.add_argument("--sample-break-mode", choices=["none", "eos"], default="none",
                   help="none: score the file as one stream with a context window (default); eos: each line alone")
    p.add_argument("--tokens-per-sample", type=int, default=None,
                   help="tokens per scored input, context included (default: the model's max positions)")
    p.add_argument("--context-window", type=int, default=None,
                   help="tokens of extra context per block (default: half of --tokens-per-sample; 0 with eos)")
    p.add_argument("--max-tokens", type=int, default=4096, help="tokens per batch (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per batch (default: by --max-tokens)")
    p.add_argument("--cpu", action="store_true", help="evaluate on CPU even if CUDA is available (default: off)")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA; default: off)")
    p.add_argument("--workers", type=int, default=1, help="processes for tokenization/BPE/binarization (default: %(default)s)")
    p.add_argument("--workdir", default=None,
                   help="keep the BPE text and data-bin of each file here (default: a temporary folder, removed)")
    p.add_argument("--output-json", default=None, help="write the results as JSON to this file; checked before the "
                                                     "evaluation, an existing file is refused unless --force "
                                                     "(default: none)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --output-json file, and evaluate files that are mostly not UTF-8 or "
                        "mostly <unk> (default: off: those are refused)")
    p.add_argument("--report-json", action="store_true", help="print the results as one JSON line at the end (default: off)")
    p.add_argument("--verbose", action="store_true", help="show the preprocessing and fairseq-eval-lm output (default: off)")
    return p


def _names(files: List[str], names: List[str]) -> List[str]:
    if len(names) > len(files):
        raise EvalError(f"{len(names)} --name for {len(files)} --eval-file: give at most one name per file")
    out = list(names) + [re.sub(r"\.txt$", "", Path(f).name) for f in files[len(names):]]
    out = [re.sub(r"[^A-Za-z0-9._-]+", "_", n).lstrip(".") or "eval" for n in out]  # a folder name under --workdir
    if len(set(out)) != len(out):
        raise EvalError(f"eval names must be distinct, got {', '.join(out)}: pass --name for each file")
    return out


def _max_positions(summary: Dict) -> int:
    for args, key in ((summary["model_args"], "max_target_positions"), (summary["model_args"], "tokens_per_sample"),
                      (summary["task_args"], "tokens_per_sample")):
        value = option(args, key)
        if value:
            return int(value)
    raise EvalError("the checkpoint does not record its max positions: pass --tokens-per-sample")


def _scoring_plan(args, summary: Dict) -> Dict:
    positions = _max_positions(summary)
    tps = args.tokens_per_sample or positions
    if tps < 2 or tps > positions:
        raise EvalError(f"--tokens-per-sample {tps} must be between 2 and the model's {positions} positions")
    if args.context_window is None:
        context = tps // 2 if args.sample_break_mode == "none" else 0
    else:
        context = args.context_window
    if not 0 <= context < tps:
        raise EvalError(f"--context-window {context} must be at least 0 and below --tokens-per-sample {tps}")
    if args.sample_break_mode == "eos" and context:
        raise EvalError("--sample-break-mode eos scores each line alone: use --context-window 0")
    return {"positions": positions, "tokens_per_sample": tps, "context_window": context,
            "max_tokens": max(args.max_tokens, tps)}


def eval_lm_args(data_bin, args, plan: Dict, summary: Dict) -> List[str]:
    """The ``fairseq-eval-lm`` arguments (after the program name) for one binarized file."""
    from ..fairseq_args import user_dir

    cmd = [str(data_bin), "--path", str(args.path), "--user-dir", user_dir(), "--task", "language_modeling",
           "--gen-subset", "test", "--sample-break-mode", args.sample_break_mode,
           "--tokens-per-sample", str(plan["tokens_per_sample"]), "--context-window", str(plan["context_window"]),
           "--max-tokens", str(plan["max_tokens"]), "--num-workers", "0", "--log-format", "simple",
           "--distributed-world-size", "1"]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if option(summary["task_args"], "add_bos_token", False):
        cmd += ["--add-bos-token"]
    cmd += device_flags(args.cpu)
    if args.fp16:
        cmd += ["--fp16"]
    return cmd


def run_fairseq_eval_lm(argv: List[str], record_path: Path, verbose: bool) -> Dict:
    """fairseq-eval-lm in a subprocess, with the exact NLL record (see _fairseq_eval_lm)."""
    cmd = [sys.executable, "-m", "fairseq_b2b.eval._fairseq_eval_lm", str(record_path), *argv]
    from ..outputs import run_child

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    # the child dies with this process (SIGKILL included) and is killed when it is interrupted
    proc = run_child(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if verbose:
        sys.stderr.write(proc.stdout)
    if proc.returncode != 0 or not record_path.exists():
        raise EvalError(f"fairseq-eval-lm failed: {last_line(proc.stdout)}")
    with open(record_path) as f:
        return json.load(f)


def _exp(x: float) -> float:
    """exp, inf where it overflows (a file of noise: a few huge "words" of many unlikely tokens)."""
    return math.exp(x) if x < 709.0 else math.inf


def evaluate_file(path: str, name: str, args, plan: Dict, summary: Dict, dictionary, workdir: Path) -> Dict:
    """Prepare, binarize and score one file; returns its result row."""
    here = workdir / name
    if here.exists():
        shutil.rmtree(here)
    here.mkdir(parents=True)
    lines = read_lines(path)
    whitespace_words = sum(len(line.split()) for line in lines)
    bpe, unk_words = prepare_lines(lines, args, here, dictionary.unk_word)
    units, unknown = count_unknowns(bpe, dictionary)  # the dictionary's own <unk> is a known unit
    from ..data.garbage import check_unknown_rate

    check_unknown_rate(sum(unknown.values()) / max(units, 1), f"eval file {path}", args.force, PROG,
                       "pass text in the language and script of the training corpus (and its --codes)", EvalError)
    bpe_path = here / "test.bpe"
    with open(bpe_path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in bpe))
    data_bin = here / "data-bin"
    preprocess_cmd = fairseq_preprocess(data_bin, srcdict=Path(args.data) / "dict.txt", workers=args.workers,
                                        testpref=bpe_path)
    fs_args = eval_lm_args(data_bin, args, plan, summary)
    record = run_fairseq_eval_lm(fs_args, here / "record.json", args.verbose)

    expected = units + len(lines)
    if record["tokens"] + record["nonfinite_tokens"] != expected:
        hint = (f"with --sample-break-mode eos fairseq skips lines longer than the model's {plan['positions']} "
                "positions: use --sample-break-mode none" if args.sample_break_mode == "eos" else "")
        raise EvalError(f"{name}: fairseq-eval-lm scored {record['tokens']} of the {expected} tokens of {path}"
                        + (f"; {hint}" if hint else ""))
    nll, tokens = record["nll_nats"], record["tokens"]
    words = whitespace_words + len(lines)
    bits = nll / tokens / math.log(2)
    agree = math.isclose(record["fairseq_loss_base2"], bits, rel_tol=AGREE_RTOL, abs_tol=1e-6)
    return {
        "name": name, "file": str(path), "lines": len(lines), "whitespace_words": whitespace_words,
        "words": words, "bpe_units": units, "tokens": tokens, "unk_words": unk_words,
        "unknown_units": sum(unknown.values()),
        "unknown_types": len(unknown), "unknown_rate": sum(unknown.values()) / max(units, 1),
        "unknown_examples": dict(unknown.most_common(20)), "unknown_summary": unknown_summary(unknown),
        "nonfinite_tokens": record["nonfinite_tokens"], "nll_nats": nll,
        "loss_base2_per_token": bits, "ppl_per_token": _exp(nll / tokens), "ppl_per_word": _exp(nll / words),
        "nats_per_word": nll / words, "fairseq_loss_base2": record["fairseq_loss_base2"],
        "fairseq_perplexity": record["fairseq_perplexity"], "fairseq_agrees": agree,
        "data_bin": str(data_bin), "fairseq_preprocess": fmt_cmd(preprocess_cmd),
        "fairseq_eval_lm": fmt_cmd(["fairseq-eval-lm", *fs_args]),
    }


def evaluate(args) -> Dict:
    files = list(args.eval_file)
    names = _names(files, args.name)
    summary = checkpoint_summary(args.path)
    if summary["family"] != "gpt":
        raise EvalError(f"{args.path} is a {summary['family'].upper()}-family (masked LM) model: zero-shot "
                        "perplexity needs a causal LM (b2b_gpt_* / transformer_lm)")
    dictionary = check_dictionary(summary, Path(args.data) / "dict.txt", args.path,
                                  "pass --data the data-bin the model was trained on")
    from ..data import DataError
    from ..data.bpe import read_codes

    try:
        read_codes(Path(args.codes))
    except DataError as e:
        raise EvalError(f"--codes: {e}") from None
    for path in files:
        check_text_file(path, "eval file")
    from ..data.garbage import check_decoding

    check_decoding(files, "eval file", args.force, PROG, EvalError)
    if args.workers < 1:
        raise EvalError(f"--workers must be at least 1, got {args.workers}")
    plan = _scoring_plan(args, summary)
    results = []
    keep = args.workdir is not None
    if keep:
        workdir = Path(args.workdir)
    else:  # b2b-eval-lm-<pid>-<hex>: the next run removes one whose process was killed
        from ..outputs import clean_stale, temp_path

        clean_stale(tempfile.gettempdir(), PROG, legacy=r"b2b-eval-lm-[a-z0-9_]{8}", hidden=False)
        workdir = Path(temp_path(tempfile.gettempdir(), PROG, hidden=False))
        workdir.mkdir(mode=0o700)
    try:
        for path, name in zip(files, names):
            row = evaluate_file(path, name, args, plan, summary, dictionary, workdir)
            if not keep:
                row.pop("data_bin")
            results.append(row)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"checkpoint": str(args.path), "arch": option(summary["model_args"], "arch"), "data": str(args.data),
            "codes": str(args.codes), "sample_break_mode": args.sample_break_mode, "detokenize": args.detokenize,
            "unk_word": args.unk_word, **plan, "results": results}


def format_report(report: Dict, show_commands: bool) -> str:
    out = [f"{PROG}: {report['checkpoint']} ({report['arch']}), sample-break-mode {report['sample_break_mode']}, "
           f"{report['tokens_per_sample']} tokens per input of which {report['context_window']} context, "
           f"detokenization {report['detokenize']}, "
           + (f"the file's {report['unk_word']} scored as the dictionary's <unk>" if report["unk_word"]
              else "no unknown-word marker"), ""]
    out.append(f"| eval | lines | words | BPE tokens | {report['unk_word'] or 'marked'} words | unknown BPE units | "
               "loss (bits/token) | PPL/token | PPL/word |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report["results"]:
        out.append(f"| {r['name']} | {r['lines']:,} | {r['words']:,} | {r['tokens']:,} | {r['unk_words']:,} | "
                   f"{r['unknown_units']:,} ({100 * r['unknown_rate']:.2f}%) | {r['loss_base2_per_token']:.4f} | "
                   f"{r['ppl_per_token']:.2f} | {r['ppl_per_word']:.2f} |")
    out.append("")
    out.append("words = whitespace tokens of the file + one end-of-line per line; tokens = BPE units + one </s> "
               "per line; PPL/word = exp(total NLL / words).")
    if report["unk_word"]:
        out.append(f"Each {report['unk_word']} of a file is one token (the dictionary's <unk>) and one word; unknown "
                   "BPE units are units of the rest of the text that the dictionary lacks (also scored as <unk>).")
    if report.get("vocab_check", {}).get("summary"):
        out.append(f"BPE codes vs dictionary: {report['vocab_check']['summary']}")
    for r in report["results"]:
        if r["unknown_units"]:
            out.append(f"{r['name']}: {r['unknown_units']:,} BPE units not in the dictionary were scored as <unk>: "
                       f"{r['unknown_summary']}")
        if r["nonfinite_tokens"]:
            out.append(f"{r['name']}: warning: {r['nonfinite_tokens']} tokens had non-finite scores and were left "
                       "out by fairseq (and here)")
        if not r["fairseq_agrees"]:
            out.append(f"{r['name']}: warning: fairseq reported Loss (base 2) {r['fairseq_loss_base2']:.6f}, the exact "
                       f"record gives {r['loss_base2_per_token']:.6f}")
        if show_commands:
            out.append(f"{r['name']}: {r['fairseq_preprocess']}")
            out.append(f"{r['name']}: {r['fairseq_eval_lm']}")
    return "\n".join(out)


def run(argv: Optional[List[str]] = None) -> Dict:
    """The command: prints the table and returns the report (errors: ``SystemExit`` with one line)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s",
                        force=True)
    from ..outputs import atomic_output, check_output, exit_on_signals

    exit_on_signals(PROG)  # SIGTERM/SIGHUP: the fairseq child is killed, the temporary folder removed
    with one_line_errors(PROG):
        if args.output_json:  # before an evaluation that may take hours
            inputs = {"--path": args.path, "--codes": args.codes, "--data dict.txt": Path(args.data) / "dict.txt",
                      **{f"--eval-file{'' if k == 0 else ' #' + str(k + 1)}": f for k, f in enumerate(args.eval_file)}}
            check_output(args.output_json, "file", args.force, "--output-json", inputs=inputs, example="results.json")
        from ..data import vocab_check  # --codes and --data's dict.txt as a pair: a recorded mismatch is refused

        pair = vocab_check.check_eval_pair(Path(args.data) / "dict.txt", args.codes)
        report = evaluate(args)
        report["vocab_check"] = vocab_check.eval_check_report(
            pair, {r["name"]: r["unknown_rate"] for r in report["results"]}, PROG)
    print(format_report(report, show_commands=args.workdir is not None or args.verbose))
    if args.output_json:
        with one_line_errors(PROG), atomic_output(args.output_json, PROG, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.report_json:
        print(json.dumps(report))
    return report


def main(argv: Optional[List[str]] = None) -> None:
    """``b2b-eval-lm`` (returns None: a console script exits with main's return value)."""
    run(argv)


if __name__ == "__main__":
    main()
