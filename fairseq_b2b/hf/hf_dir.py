"""Reading a HuggingFace model directory offline: config.json (and its model type), the weights
(safetensors or ``pytorch_model.bin``, sharded or not), the vocabulary (BERT vocab.txt, GPT-2
vocab.json) and the tokenizer files that the export writes back."""
from __future__ import annotations

import json
import os

import torch

from ..errors import B2BError
from .common import FAMILIES, HF_MODEL_TYPES, one_line, require_safetensors

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = {"bert": ("tokenizer_config.json", "special_tokens_map.json"),
                   "gpt": ("tokenizer_config.json", "special_tokens_map.json", "merges.txt"),
                   # LLaMA: written back as they are (the vocabulary is the import's, checked by its sha)
                   "llama": ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                             "merges.txt")}


# ----------------------------------------------------------------------------- reading HF files

def read_config(src: str) -> dict:
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise B2BError(f"'{src}' has no config.json: pass a HuggingFace model directory "
                       "(config.json + model.safetensors or pytorch_model.bin + vocabulary files)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise B2BError(f"'{path}' is not valid JSON ({one_line(e)[:100]})") from None
    if not isinstance(config, dict):
        raise B2BError(f"'{path}' is not a HuggingFace config (no JSON object)")
    return config


def check_model_type(config: dict, family: str, src: str) -> None:
    model_type = config.get("model_type")
    flags = {HF_MODEL_TYPES[fam]: flag for flag, fam in FAMILIES.items()}  # HF model type -> --family value
    supported = ", ".join(f"{t} (--family {f})" for t, f in flags.items())
    if model_type not in flags:
        raise B2BError(f"'{src}/config.json' is a '{model_type}' model: b2b-import-hf supports {supported}")
    if model_type != HF_MODEL_TYPES[family]:
        raise B2BError(f"'{src}' is a '{model_type}' model but --family is "
                       f"{flags[HF_MODEL_TYPES[family]]}: pass --family {flags[model_type]}")


def _load_weight_file(path: str) -> dict:
    try:
        if path.endswith(".safetensors"):
            return dict(require_safetensors().load_file(path, device="cpu"))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except B2BError:
        raise
    except Exception as e:
        raise B2BError(f"'{path}' cannot be read ({type(e).__name__}: {one_line(e)[:120]}): it is corrupt or truncated") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise B2BError(f"'{path}' is not a state dict of tensors")
    return sd


def read_weights(src: str) -> tuple[dict, str]:
    """All tensors of the model (sharded checkpoints are merged); safetensors preferred."""
    for name in WEIGHT_FILES:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return _load_weight_file(path), name
        try:
            with open(path, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise B2BError(f"'{path}' is not a weight index ({type(e).__name__})") from None
        sd = {}
        for shard in shards:
            shard_path = os.path.join(src, shard)
            if not os.path.isfile(shard_path):
                raise B2BError(f"'{path}' names the shard '{shard}' that is missing: copy the whole model directory")
            sd.update(_load_weight_file(shard_path))
        return sd, name
    raise B2BError(f"'{src}' has no weights: expected one of {', '.join(WEIGHT_FILES)}")


def read_vocab(src: str, family: str) -> tuple[list, str]:
    """HF tokens by id: vocab.txt (one token a line) for BERT, vocab.json for GPT-2, tokenizer.json
    (else vocab.json) for LLaMA."""
    if family == "llama" and os.path.isfile(os.path.join(src, "tokenizer.json")):
        return _tokenizer_json_vocab(os.path.join(src, "tokenizer.json"))
    if family == "bert":
        path = os.path.join(src, "vocab.txt")
        if not os.path.isfile(path):
            raise B2BError(f"'{src}' has no vocab.txt: a BERT import needs its WordPiece vocabulary")
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]  # as transformers' load_vocab
        return tokens, path
    path = os.path.join(src, "vocab.json")
    if not os.path.isfile(path):
        what = "a LLaMA import needs tokenizer.json or vocab.json" if family == "llama" else \
            "a GPT-2 import needs its BPE vocabulary (vocab.json + merges.txt)"
        raise B2BError(f"'{src}' has no vocab.json: {what}")
    return _tokens_by_id(_read_json(path), path), path


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise B2BError(f"'{path}' is not valid JSON ({one_line(e)[:100]})") from None


def _tokens_by_id(vocab, path: str) -> list:
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise B2BError(f"'{path}' does not map tokens to the ids 0..N-1: it is not a BPE vocabulary")
    tokens = [None] * len(vocab)
    for tok, i in vocab.items():
        tokens[i] = tok
    return tokens


def _tokenizer_json_vocab(path: str) -> tuple[list, str]:
    """The tokens of a fast tokenizer's tokenizer.json: its model's vocabulary plus its added tokens."""
    data = _read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise B2BError(f"'{path}' has no model vocabulary (model type {model.get('type') if isinstance(model, dict) else None}): "
                       "only BPE tokenizers are supported")
    vocab = dict(model["vocab"])
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("content"), str) and isinstance(added.get("id"), int):
            if vocab.get(added["content"], added["id"]) != added["id"]:
                raise B2BError(f"'{path}' gives the token {added['content']!r} two ids: it is corrupt")
            vocab[added["content"]] = added["id"]
    return _tokens_by_id(vocab, path), path


def tokenizer_files(src: str, family: str) -> dict:
    out = {}
    for name in TOKENIZER_FILES[family]:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out[name] = f.read()
    return out
