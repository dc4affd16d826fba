"""The HuggingFace tokenizer of a GGUF file: its byte-level BPE (``tokenizer.ggml.model = gpt2``:
the vocabulary, the merges in rank order, the token types) as a ``tokenizer.json`` built with the
``tokenizers`` library, plus ``tokenizer_config.json`` and ``special_tokens_map.json``, so that the
import records them and ``b2b-export-hf`` writes a directory that ``AutoTokenizer`` loads.

The pre-tokenizer is named by ``tokenizer.ggml.pre``; the ones read here are those whose split
``tokenizers`` reproduces exactly: ``gpt-2`` (GPT-2's regex, byte level) and ``smollm`` (every digit
alone, then GPT-2's regex: SmolLM's).  Control tokens (type 3) are special added tokens, matched
whole in the text; user-defined tokens (type 4) are added tokens that are not special.  Any other
tokenizer model (``llama``: SentencePiece) or pre-tokenizer is refused in one line.
"""
from __future__ import annotations

import json

from ..errors import B2BError
from .common import HF_EXTRA

PRE_TOKENIZERS = {"gpt-2": False, "default": False, "smollm": True}  # name -> digits split one by one first
CONTROL, USER_DEFINED = 3, 4


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise B2BError(f"building a GGUF file's tokenizer needs the tokenizers package: {HF_EXTRA}") from None
    return tokenizers


def tokenizer_json(tokens: list, types: list, merges: list, pre: str, path: str, bos: str | None = None) -> str:
    """``tokenizer.json`` of a byte-level BPE with GGUF's vocabulary, merges and token types;
    ``bos`` (``tokenizer.ggml.add_bos_token``) is put before every text."""
    tk = _tokenizers()
    if pre not in PRE_TOKENIZERS:
        raise B2BError(f"GGUF file '{path}' has the pre-tokenizer '{pre}', which this reader does not reproduce "
                       f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})")
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            raise B2BError(f"GGUF file '{path}' has the BPE merge {m!r}, not two symbols: the vocabulary is corrupt")
        pairs.append((parts[0], parts[1]))
    model = tk.models.BPE({t: i for i, t in enumerate(tokens)}, pairs, fuse_unk=False, byte_fallback=False)
    tok = tk.Tokenizer(model)
    byte_level = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Digits(individual_digits=True), byte_level]) \
        if PRE_TOKENIZERS[pre] else byte_level
    tok.decoder = tk.decoders.ByteLevel()
    tok.post_processor = tk.processors.ByteLevel(trim_offsets=False)
    if bos is not None:
        bos_id = tokens.index(bos)
        tok.post_processor = tk.processors.Sequence([
            tok.post_processor, tk.processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                                  special_tokens=[(bos, bos_id)])])
    added = [tk.AddedToken(t, special=ty == CONTROL, normalized=False) for t, ty in zip(tokens, types)
             if ty in (CONTROL, USER_DEFINED)]
    tok.add_tokens(added)  # ids unchanged: every added token is in the vocabulary already
    if tok.get_vocab_size() != len(tokens):
        raise B2BError(f"GGUF file '{path}': its added tokens are not in its vocabulary: the tokenizer is corrupt")
    return tok.to_str()


def tokenizer_files(fields, tokens: list, roles: dict, max_len: int, path: str) -> dict:
    """name -> text of the HF tokenizer files of the GGUF file read by ``fields`` (hf/gguf.py)."""
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise B2BError(f"GGUF file '{path}' has a '{model}' tokenizer: only byte-level BPE ('gpt2') tokenizers are "
                       "supported")
    types = [int(t) for t in fields.get("tokenizer.ggml.token_type", [1] * len(tokens))]
    add_bos = bool(fields.get("tokenizer.ggml.add_bos_token", False)) and "bos_token" in roles
    text = tokenizer_json(tokens, types, list(fields.get("tokenizer.ggml.merges")),
                          fields.get("tokenizer.ggml.pre", "default"), path, roles["bos_token"] if add_bos else None)
    specials = {role: tok for role, tok in roles.items()}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
              "clean_up_tokenization_spaces": False, **specials}
    template = fields.get("tokenizer.chat_template", None)
    if template:
        config["chat_template"] = template
    return {"tokenizer.json": text, "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False),
            "special_tokens_map.json": json.dumps(specials, indent=2, ensure_ascii=False)}
