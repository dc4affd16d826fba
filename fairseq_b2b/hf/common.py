"""Shared pieces of ``b2b-import-hf`` and ``b2b-export-hf``: optional-dependency guards, the
HF <-> fairseq vocabulary mapping, fairseq checkpoint writing, one-line CLI errors.

Nothing here imports ``transformers`` at import time (it is the optional ``[hf]`` extra).

Vocabulary mapping (how HF token ids become fairseq ids)
-------------------------------------------------------
A fairseq ``Dictionary`` starts with 4 special symbols ``<s> <pad> </s> <unk>`` (ids 0-3) that
its data pipeline uses: ``masked_lm`` wraps every sample as ``<s> ... </s>`` and pads with
``<pad>``; ``language_modeling`` ends every sample with ``</s>``.  The HF specials that play
the same roles are mapped *onto* them, so that fairseq-binarized data feeds the pretrained
embeddings of those tokens:

* BERT (WordPiece): ``[CLS] -> <s>``, ``[PAD] -> <pad>``, ``[SEP] -> </s>``, ``[UNK] -> <unk>``,
  and ``[MASK]`` is renamed ``<mask>`` where it stands (the ``masked_lm`` task's
  ``add_symbol("<mask>")`` then finds it instead of appending a new symbol).
* GPT-2 (byte-level BPE): ``<|endoftext|>`` (its eos) ``-> </s>``.  GPT-2 has no distinct
  bos/pad/unk token: ``<s>``, ``<pad>`` and ``<unk>`` become 3 *added* rows initialised to zero
  (never produced by GPT-2's tokenizer; with tied embeddings their logit is 0).
* LLaMA family (``hf/llama.py``, GGUF files too): the tokens the tokenizer files (else
  config.json's ids) name eos, bos, unk and pad fill ``</s>``, ``<s>``, ``<unk>``, ``<pad>`` in that
  priority; a role without a token of its own (SmolLM2's pad is its eos) is an added zero row.

Every other HF token keeps its string and its relative order: fairseq id =
4 + (rank of the HF id among the non-special ids).  The vocabulary size is unchanged for BERT
(V) and V + 3 for GPT-2.  The mapping is a bijection between HF ids and the non-added fairseq
ids; ``VocabMapping.hf_to_fairseq`` translates HF token ids (``translate``), and the export
inverts it exactly (the original HF order is restored from the dictionary plus the special
ids recorded at import).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import B2BError

HF_EXTRA = 'pip install ".[hf]" (run in the fairseq-b2b project folder: the package is not on PyPI)'
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"
FAMILIES = {"bert": "bert", "gpt2": "gpt", "llama": "llama"}  # --family value -> fairseq_b2b family
HF_MODEL_TYPES = {"bert": "bert", "gpt": "gpt2", "llama": "llama"}
META_KEY = "b2b_hf"  # top-level key of an imported checkpoint holding the HF metadata
META_FORMAT = 1

# fairseq special -> HF tokenizer role that fills it, in priority order (a HF token fills at most one)
SPECIAL_ROLES = {
    "bert": (("<s>", "cls_token"), ("<pad>", "pad_token"), ("</s>", "sep_token"), ("<unk>", "unk_token"), (MASK, "mask_token")),
    "gpt": (("</s>", "eos_token"), ("<s>", "bos_token"), ("<unk>", "unk_token"), ("<pad>", "pad_token")),
    "llama": (("</s>", "eos_token"), ("<s>", "bos_token"), ("<unk>", "unk_token"), ("<pad>", "pad_token")),
}
DEFAULT_SPECIAL_TOKENS = {
    "bert": {"cls_token": "[CLS]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]", "mask_token": "[MASK]"},
    "gpt": {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
    "llama": {},  # the tokenizer files and config.json's bos/eos/pad ids name them
}

def one_line(msg: str) -> str:
    return " ".join(str(msg).split())


@contextlib.contextmanager
def cli_errors(prog: str):
    """Turn B2BError into ``SystemExit(f"{prog}: error: ...")`` (one line, no traceback), the
    prefix every console command uses (``b2b-import-hf: error: ...``)."""
    try:
        yield
    except B2BError as e:
        raise SystemExit(f"{prog}: error: {one_line(e)}") from None


# ----------------------------------------------------------------------------- optional deps

def require_transformers():
    """The ``transformers`` module, or a one-line B2BError naming the extra to install."""
    try:
        import transformers
    except ImportError:
        raise B2BError(f"HuggingFace transformers is not installed: {HF_EXTRA}") from None
    except Exception as e:  # installed but broken (e.g. built for another torch)
        raise B2BError(f"HuggingFace transformers cannot be imported ({type(e).__name__}: {one_line(e)[:160]}): "
                       f"reinstall it with {HF_EXTRA}") from None
    return transformers


def require_safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise B2BError(f"safetensors is not installed: {HF_EXTRA}") from None
    return safetensors.torch


# ----------------------------------------------------------------------------- vocabulary

def token_content(value):
    """A special token from a tokenizer json: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def vocab_sha(tokens) -> str:
    return hashlib.sha1("\n".join(tokens).encode("utf-8")).hexdigest()[:16]


@dataclass
class VocabMapping:
    """A bijection between HF token ids and fairseq dictionary ids (see the module docstring).

    ``fairseq_to_hf[i]`` is the HF id of fairseq symbol ``i`` or -1 for an added symbol;
    ``specials`` maps a renamed fairseq symbol to ``(hf_id, hf_token)``.
    """

    family: str
    hf_tokens: list  # by HF id
    fairseq_symbols: list  # by fairseq id
    fairseq_to_hf: list
    specials: dict = field(default_factory=dict)

    @property
    def hf_to_fairseq(self) -> torch.Tensor:
        out = torch.full((len(self.hf_tokens),), -1, dtype=torch.long)
        for fs, hf in enumerate(self.fairseq_to_hf):
            if hf >= 0:
                out[hf] = fs
        return out

    @property
    def added(self) -> list:
        return [s for s, hf in zip(self.fairseq_symbols, self.fairseq_to_hf) if hf < 0]

    def translate(self, hf_ids: torch.Tensor) -> torch.Tensor:
        """HF token ids -> fairseq token ids (same shape)."""
        return self.hf_to_fairseq[hf_ids]

    def rows_to_fairseq(self, hf_rows: torch.Tensor) -> torch.Tensor:
        """A tensor indexed by HF id on dim 0 -> by fairseq id; added rows are zero."""
        index = torch.tensor([max(hf, 0) for hf in self.fairseq_to_hf], dtype=torch.long)
        out = hf_rows.index_select(0, index).clone()
        added = [i for i, hf in enumerate(self.fairseq_to_hf) if hf < 0]
        if added:
            out[added] = 0
        return out

    def rows_to_hf(self, fs_rows: torch.Tensor) -> torch.Tensor:
        """The inverse of ``rows_to_fairseq`` (added rows dropped), bit-exact."""
        return fs_rows.index_select(0, self.hf_to_fairseq)

    def metadata(self) -> dict:
        return {"specials": {k: [v[0], v[1]] for k, v in self.specials.items()},
                "hf_vocab_size": len(self.hf_tokens), "hf_vocab_sha": vocab_sha(self.hf_tokens)}


def special_tokens_from_files(src_dir: str) -> dict:
    """role -> token string, from tokenizer_config.json and special_tokens_map.json (which wins);
    ``build_mapping`` falls back to config.json's token ids and the family's usual names."""
    roles = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the latter wins
        path = os.path.join(src_dir, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                raise B2BError(f"'{path}' is not valid JSON ({one_line(e)[:100]}): repair or remove it") from None
            for role in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
                tok = token_content(data.get(role))
                if tok:
                    roles[role] = tok
    return roles


def build_mapping(family: str, hf_tokens: list, roles: dict, config: dict) -> VocabMapping:
    """The mapping of an HF vocabulary (``hf_tokens`` by id) onto a fairseq dictionary."""
    index = {}
    for i, tok in enumerate(hf_tokens):
        if tok in index:
            raise B2BError(f"the HF vocabulary lists token {tok!r} twice (ids {index[tok]} and {i}): it is corrupt")
        index[tok] = i
    # config ids as a fallback for roles the tokenizer files do not name
    for role, key in (("pad_token", "pad_token_id"), ("bos_token", "bos_token_id"), ("eos_token", "eos_token_id")):
        tid = config.get(key)
        if role not in roles and isinstance(tid, int) and 0 <= tid < len(hf_tokens):
            roles[role] = hf_tokens[tid]
    for role, tok in DEFAULT_SPECIAL_TOKENS[family].items():
        roles.setdefault(role, tok)

    specials, taken = {}, set()
    for symbol, role in SPECIAL_ROLES[family]:
        tok = roles.get(role)
        if tok in index and index[tok] not in taken:
            specials[symbol] = (index[tok], tok)
            taken.add(index[tok])
    for symbol in FAIRSEQ_SPECIALS + ((MASK,) if family == "bert" else ()):
        if symbol in index:  # the HF vocabulary itself holds a token spelled like a fairseq special
            if symbol not in specials and index[symbol] not in taken:
                specials[symbol] = (index[symbol], symbol)
                taken.add(index[symbol])
            elif specials.get(symbol, (None,))[0] != index[symbol]:
                raise B2BError(f"the HF vocabulary has an ordinary token {symbol!r} that clashes with fairseq's special "
                               f"symbol of that name: this vocabulary cannot be mapped onto a fairseq dictionary")
    front = {specials[s][0] for s in FAIRSEQ_SPECIALS if s in specials}
    renamed = {hf: s for s, (hf, _) in specials.items() if s not in FAIRSEQ_SPECIALS}
    symbols = list(FAIRSEQ_SPECIALS)
    fs_to_hf = [specials[s][0] if s in specials else -1 for s in FAIRSEQ_SPECIALS]
    for i, tok in enumerate(hf_tokens):
        if i in front:
            continue
        symbols.append(renamed.get(i, tok))
        fs_to_hf.append(i)
    if family == "bert" and MASK not in specials:  # what the masked_lm task would append
        symbols.append(MASK)
        fs_to_hf.append(-1)
    return VocabMapping(family, list(hf_tokens), symbols, fs_to_hf, specials)


def mapping_from_metadata(family: str, meta: dict, dictionary_symbols: list) -> VocabMapping:
    """Rebuild the import's mapping from a fairseq dictionary and the recorded special ids."""
    specials = {s: (int(v[0]), str(v[1])) for s, v in meta["specials"].items()}
    size = int(meta["hf_vocab_size"])
    special_ids = {hf for hf, _ in specials.values()}
    free = iter(i for i in range(size) if i not in special_ids)
    hf_tokens = [None] * size
    fs_to_hf = []
    for i, sym in enumerate(dictionary_symbols):
        if sym in specials:
            hf, tok = specials[sym]
        elif (sym in FAIRSEQ_SPECIALS and i < len(FAIRSEQ_SPECIALS)) or sym == MASK:
            fs_to_hf.append(-1)  # added at import (or by the masked_lm task)
            continue
        else:
            hf, tok = next(free, None), sym
            if hf is None:
                break
        hf_tokens[hf] = tok
        fs_to_hf.append(hf)
    if len(fs_to_hf) != len(dictionary_symbols) or any(t is None for t in hf_tokens) \
            or vocab_sha(hf_tokens) != meta.get("hf_vocab_sha"):
        raise B2BError(f"the fairseq dictionary ({len(dictionary_symbols)} symbols) is not the one imported from the "
                       f"{size}-token HF vocabulary: pass the dict.txt written by b2b-import-hf (--dict) or "
                       "--tokenizer-from none to export with the fairseq dictionary")
    return VocabMapping(family, hf_tokens, list(dictionary_symbols), fs_to_hf, specials)


def write_dict(path: str, symbols: list) -> None:
    """fairseq dict.txt: every symbol after the 4 built-in specials, one ``symbol count`` a line."""
    with open(path, "w", encoding="utf-8") as f:
        for sym in symbols[len(FAIRSEQ_SPECIALS):]:
            f.write(f"{sym} 1\n")


def load_dictionary(path: str):
    from fairseq.data import Dictionary

    try:
        return Dictionary.load(path)
    except Exception as e:
        raise B2BError(f"'{path}' is not a fairseq dictionary ({type(e).__name__}: {one_line(e)[:120]})") from None


def check_dict_roundtrip(path: str, symbols: list) -> None:
    """fairseq must read back exactly ``symbols`` (tokens with odd whitespace would not survive)."""
    got = load_dictionary(path).symbols
    if got != list(symbols):
        bad = next((a for a, b in zip(symbols, got) if a != b), symbols[len(got)] if len(symbols) > len(got) else "?")
        raise B2BError(f"the HF token {bad!r} cannot be written to a fairseq dict.txt (it contains whitespace "
                       "or a line break): this vocabulary is not supported")


# ----------------------------------------------------------------------------- fairseq checkpoints

def build_fairseq(family: str, data_dir: str, arch_args: list):
    """(cfg, task, model) of a fresh ``b2b_bert``/``b2b_gpt`` model over ``data_dir/dict.txt``,
    built exactly as fairseq-train would (so the checkpoint's cfg is a normal fairseq cfg)."""
    with quiet_fairseq():
        return _build_fairseq(family, data_dir, arch_args)


@contextlib.contextmanager
def quiet_fairseq():
    """No hydra deprecation warnings and no fairseq INFO lines on the commands' output."""
    # importing fairseq runs logging.basicConfig(level=DEBUG) (its wav2vec module): hydra and
    # fairseq would log DEBUG/INFO lines through the root logger
    loggers = [logging.getLogger(), logging.getLogger("fairseq"), logging.getLogger("hydra")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _build_fairseq(family: str, data_dir: str, arch_args: list):
    from ..checkpoints import build_from_args, parse_training_args

    if family == "bert":
        base = ["--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert"]
    elif family == "llama":
        base = ["--task", "language_modeling", "--arch", "b2b_llama"]
    else:
        base = ["--task", "language_modeling", "--arch", "b2b_gpt"]
    return build_from_args(parse_training_args([data_dir] + base + [str(a) for a in arch_args]))


def save_checkpoint(path: str, cfg, model, extra: dict | None = None) -> None:
    """The project's fairseq checkpoint writer (``fairseq_b2b.checkpoints``): fairseq's upgrade
    code indexes ``optimizer_history[-1]`` and ``extra_state["train_iterator"]``, so those hold
    "no optimizer, 0 updates, epoch 1" rather than ``[]`` / ``None``."""
    from ..checkpoints import save_checkpoint as save

    save(path, cfg, model, extra)


# ----------------------------------------------------------------------------- atomic outputs

@contextlib.contextmanager
def staging_dir(final_parent: str, prefix: str):
    """A temporary directory beside the outputs (same filesystem, so renames are atomic);
    always removed, and a parent directory created here is removed again if the command
    fails, so a failure leaves nothing behind."""
    from ..outputs import clean_stale, temp_path

    created = not os.path.isdir(final_parent)
    os.makedirs(final_parent, exist_ok=True)
    # .b2b-import-hf-<pid>-<hex>: the next run removes one whose process was killed; the names of
    # earlier versions (mkdtemp's 8 characters) once they are untouched for a while
    clean_stale(final_parent, legacy=re.escape(prefix) + r"[a-z0-9_]{8}")
    tmp = temp_path(final_parent, prefix.strip(".").rstrip("-"))
    os.mkdir(tmp, 0o700)
    ok = False
    try:
        yield tmp
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):
                os.rmdir(final_parent)  # only if empty
