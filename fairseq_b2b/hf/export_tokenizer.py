"""The tokenizer files of ``b2b-export-hf``: the HF vocabulary regenerated from the fairseq
dict.txt with the ids recorded at import (BERT vocab.txt, GPT-2 vocab.json + merges.txt), or,
for a model on the fairseq pipeline's Moses + fastBPE dictionary, an HF ``XLMTokenizer`` that
reproduces it; and the ``generation_config.json`` of decoders."""
from __future__ import annotations

import json
import os
import shutil

from ..errors import B2BError
from .common import MASK, VocabMapping


def write_hf_tokenizer(out: str, family: str, mapping: VocabMapping, meta: dict, max_len: int, log) -> list:
    """The import's tokenizer files, with the vocabulary rebuilt from ``mapping`` (HF ids); a
    LLaMA import's files are written back as recorded (``mapping`` has the import's vocabulary:
    ``mapping_from_metadata`` checked its sha)."""
    files = dict(meta.get("tokenizer_files") or {})
    if family == "llama":
        if "tokenizer.json" not in files and "vocab.json" not in files:
            raise B2BError("the import recorded no tokenizer.json or vocab.json: pass --tokenizer-from HF_DIR (the "
                           "original model directory) or --tokenizer-from none")
        written = []
        for name, text in files.items():
            if os.path.basename(name) == name:
                with open(os.path.join(out, name), "w", encoding="utf-8") as f:
                    f.write(text)
                written.append(name)
        return written
    role_of = {"<s>": "cls_token", "<pad>": "pad_token", "</s>": "sep_token", "<unk>": "unk_token", MASK: "mask_token"} \
        if family == "bert" else {"</s>": "eos_token"}
    specials = {role: mapping.specials[s][1] for s, role in role_of.items() if s in mapping.specials}
    if family == "gpt" and "eos_token" in specials:
        specials.update(bos_token=specials["eos_token"], unk_token=specials["eos_token"])
    written = []
    if family == "bert":
        with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in mapping.hf_tokens))
        written.append("vocab.txt")
        default_cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_len, **specials}
    else:
        with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(mapping.hf_tokens)}, f, ensure_ascii=False)
        written.append("vocab.json")
        default_cfg = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": max_len, **specials}
        if "merges.txt" not in files:
            log("b2b-export-hf: warning: no merges.txt was recorded at import: the GPT-2 tokenizer needs one "
                "(copy it from the original model or pass --tokenizer-from HF_DIR)")
    files.setdefault("tokenizer_config.json", json.dumps(default_cfg, indent=2))
    files.setdefault("special_tokens_map.json", json.dumps(specials, indent=2))
    for name, text in files.items():
        if name in ("vocab.txt", "vocab.json") or os.path.basename(name) != name:
            continue
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(text)
        written.append(name)
    return written


def find_codes(dict_path: str, codes: str | None) -> str | None:
    """--codes, or the ``bpe.codes`` that b2b-preprocess writes beside ``data-bin/``."""
    if codes:
        if not os.path.isfile(codes):
            raise B2BError(f"--codes '{codes}' does not exist")
        return codes
    here = os.path.dirname(os.path.abspath(dict_path))
    for path in (os.path.join(here, "bpe.codes"), os.path.join(os.path.dirname(here), "bpe.codes")):
        if os.path.isfile(path):
            return path
    return None


def xlm_token(symbol: str) -> str:
    """A fastBPE unit in HF XLM's notation: a word-internal unit ``ab@@`` is ``ab``, a word-final
    unit ``ab`` is ``ab</w>``; fairseq's specials keep their names."""
    if symbol in ("<s>", "<pad>", "</s>", "<unk>", MASK):
        return symbol
    return symbol[:-2] if symbol.endswith("@@") else symbol + "</w>"


def write_xlm_tokenizer(out: str, family: str, symbols: list, codes: str, dict_path: str, max_len: int) -> list:
    """HF ``XLMTokenizer`` files that reproduce b2b-preprocess: Moses (en, no escaping, no
    lower-casing) + the fastBPE merges, ids = fairseq's dictionary ids.  ``</s>`` is bos, eos and
    sep for GPT (fairseq ends every line with it, so a prompt starts after one); BERT's inputs are
    ``<s> ... </s>`` as masked_lm wraps them; ``<pad>``/``<unk>`` as in fairseq.  ``bpe.codes``
    and ``dict.txt`` are copied beside them."""
    from ..data.bpe import read_codes

    vocab = {}
    for i, symbol in enumerate(symbols):
        vocab.setdefault(xlm_token(symbol), i)  # duplicates cannot occur in a fairseq dictionary
    merges = read_codes(codes)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{m[0]} {m[1]}\n" for m in merges))
    first = "</s>" if family == "gpt" else "<s>"
    specials = {"bos_token": first, "eos_token": "</s>", "sep_token": "</s>", "cls_token": first,
                "pad_token": "<pad>", "unk_token": "<unk>"}
    if MASK in vocab:
        specials["mask_token"] = MASK
    # split_special_tokens: "<unk>" in raw text (PTB, WikiText) is text to Moses, as in b2b-preprocess
    config = {"tokenizer_class": "XLMTokenizer", "do_lowercase_and_remove_accent": False, "model_max_length": max_len,
              "split_special_tokens": True,
              "additional_special_tokens": [], "lang2id": None, "id2lang": None, **specials}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(specials, f, indent=2)
    shutil.copyfile(codes, os.path.join(out, "bpe.codes"))
    shutil.copyfile(dict_path, os.path.join(out, "dict.txt"))
    return ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "bpe.codes", "dict.txt"]


def write_generation_config(tr, out: str, config) -> None:
    """bos/eos/pad of the config as the defaults of ``generate``."""
    gen = tr.GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                              pad_token_id=getattr(config, "pad_token_id", None))
    gen.save_pretrained(out)
