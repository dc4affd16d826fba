"""A llama.cpp GGUF file of the ``llama`` architecture read as what ``b2b-import-hf`` reads from a
HuggingFace directory: a ``LlamaConfig``-shaped config.json, ``LlamaForCausalLM`` tensors, the
vocabulary with its special tokens, and the tokenizer files (``hf/gguf_tokenizer.py``).

* Reading and dequantizing: the ``gguf`` package (llama.cpp's own reader, the optional ``[gguf]``
  extra), tensors to fp32.  Types read: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (each tested
  on a file written by gguf's writer); any other type (the K- and I-quants) is refused in one line
  naming it and the tensor.
* GGUF lists a tensor's dimensions innermost first: ``[in, out]`` is torch's ``[out, in]``.
* llama.cpp's converter permutes the rows of ``attn_q`` and ``attn_k`` within each head (from HF's
  two rotated halves to interleaved pairs, the order its rope kernel reads): row ``2i + half`` of a
  head is HF's row ``half * head_dim/2 + i``.  ``unpermute_rows`` puts them back, per query head
  for q and per key/value head for k, so b2b_llama's rotate_half rotary reads them as HF does.
* A GGUF of another architecture, a SentencePiece or unknown pre-tokenizer, rotary scaling or
  experts are one-line refusals, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import B2BError
from .common import one_line

GGUF_EXTRA = 'pip install ".[gguf]" (run in the fairseq-b2b project folder)'
MAGIC = b"GGUF"
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
# GGUF tensor -> HF LlamaForCausalLM tensor ({i}: the layer)
GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                "output.weight": "lm_head.weight"}
LAYER_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
REQUIRED = object()


def require_gguf():
    """The ``gguf`` module, or a one-line B2BError naming the extra."""
    try:
        import gguf
    except ImportError:
        raise B2BError(f"reading GGUF files needs the gguf package: {GGUF_EXTRA}") from None
    return gguf


def is_gguf(path: str) -> bool:
    """A file that starts with GGUF's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


@dataclass
class GGUFModel:
    """What an HF directory would hold (``config`` is config.json's dict, ``weights`` HF names)."""

    config: dict
    weights: dict
    tokens: list
    roles: dict  # bos_token/eos_token/unk_token/pad_token -> token string
    tokenizer_files: dict = field(default_factory=dict)
    types: dict = field(default_factory=dict)  # tensor type name -> count


def unpermute_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation: within each of ``heads`` heads, interleaved rotary
    pairs (row 2i + half) back to HF's halves (row half * hd/2 + i)."""
    rows = w.shape[0]
    if rows % (2 * heads):
        raise B2BError(f"a q/k projection of {rows} rows cannot hold {heads} heads of an even size")
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()


class _Fields:
    """Metadata values of a GGUFReader with one-line errors."""

    def __init__(self, reader, path: str):
        self.reader, self.path = reader, path

    def get(self, key: str, default=REQUIRED):
        f = self.reader.fields.get(key)
        if f is None:
            if default is REQUIRED:
                raise B2BError(f"GGUF file '{self.path}' has no '{key}': it is incomplete or not a llama.cpp model")
            return default
        try:
            return f.contents()
        except Exception as e:
            raise B2BError(f"GGUF file '{self.path}': '{key}' cannot be read ({type(e).__name__}: {one_line(e)[:80]})") from None


def _open(path: str):
    gguf = require_gguf()
    try:
        return gguf, gguf.GGUFReader(path, "r")
    except Exception as e:
        raise B2BError(f"'{path}' cannot be read as GGUF ({type(e).__name__}: {one_line(e)[:120]}): "
                       "it is corrupt or truncated") from None


def _check_type(tensor, path: str) -> None:
    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TYPES:
        raise B2BError(f"GGUF file '{path}': tensor '{tensor.name}' is {kind}, a quantization this reader does not "
                       f"support (supported: {', '.join(SUPPORTED_TYPES)}); convert the model to one of them")


def _dequantize(gguf, tensor, path: str) -> torch.Tensor:
    _check_type(tensor, path)
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    shape = tuple(int(n) for n in reversed(list(tensor.shape)))  # GGUF: innermost dimension first
    return torch.from_numpy(data.astype("float32", copy=True).reshape(shape))


def _config(fields: _Fields, arch: str, n_tokens: int, tied: bool, ids: dict) -> dict:
    """config.json of HF's LlamaConfig from the ``llama.*`` metadata."""
    a = arch + "."
    heads = int(fields.get(a + "attention.head_count"))
    dim = int(fields.get(a + "embedding_length"))
    head_dim = int(fields.get(a + "attention.key_length", dim // heads))
    rope_dim = int(fields.get(a + "rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise B2BError(f"GGUF file '{fields.path}' rotates {rope_dim} of {head_dim} head dimensions (partial rotary): "
                       "b2b_llama rotates whole heads")
    scaling = fields.get(a + "rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise B2BError(f"GGUF file '{fields.path}' uses rotary scaling '{scaling}': b2b_llama has plain rotary positions only")
    if int(fields.get(a + "expert_count", 0) or 0):
        raise B2BError(f"GGUF file '{fields.path}' is a mixture of experts: b2b_llama has one FFN per layer")
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": n_tokens,
              "hidden_size": dim, "intermediate_size": int(fields.get(a + "feed_forward_length")),
              "num_hidden_layers": int(fields.get(a + "block_count")), "num_attention_heads": heads,
              "num_key_value_heads": int(fields.get(a + "attention.head_count_kv", heads)), "head_dim": head_dim,
              "max_position_embeddings": int(fields.get(a + "context_length")),
              "rms_norm_eps": float(fields.get(a + "attention.layer_norm_rms_epsilon")),
              "rope_theta": float(fields.get(a + "rope.freq_base", 10000.0)), "hidden_act": "silu",
              "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": tied}
    config.update({f"{role}_token_id": i for role, i in ids.items() if role in ("bos", "eos", "pad")})
    return config


def read_gguf(path: str) -> GGUFModel:
    """Everything ``b2b-import-hf`` needs from the GGUF file ``path`` (one-line errors)."""
    from .gguf_tokenizer import tokenizer_files

    gguf, reader = _open(path)
    fields = _Fields(reader, path)
    arch = fields.get("general.architecture")
    if arch != "llama":
        raise B2BError(f"GGUF file '{path}' is a '{arch}' model: b2b-import-hf reads GGUF files of the llama "
                       "architecture only (--family llama)")
    tokens = list(fields.get("tokenizer.ggml.tokens"))
    ids = {}
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        value = fields.get("tokenizer.ggml." + key, None)
        if value is not None and 0 <= int(value) < len(tokens):
            ids[role] = int(value)
    roles = {f"{role}_token": tokens[i] for role, i in ids.items()}

    by_name = {t.name: t for t in reader.tensors}
    config = _config(fields, arch, len(tokens), "output.weight" not in by_name, ids)
    L, H, KV = config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]
    names = dict(GLOBAL_NAMES)
    names.update({f"blk.{i}.{g}.weight": f"model.layers.{i}.{h}.weight" for i in range(L) for g, h in LAYER_NAMES.items()})
    unknown = sorted(n for n in by_name if n not in names)
    if unknown:
        raise B2BError(f"GGUF file '{path}' holds '{unknown[0]}' ({len(unknown)} tensors) that a plain LLaMA has no "
                       "place for (e.g. rotary frequency factors): this variant is not supported")
    kinds = {}
    for t in reader.tensors:  # every type is checked before the first tensor is dequantized
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
        _check_type(t, path)
    files = tokenizer_files(fields, tokens, roles, config["max_position_embeddings"], path)  # refusals before the tensors
    weights = {}
    for name, t in by_name.items():
        w = _dequantize(gguf, t, path)
        if name.endswith(".attn_q.weight"):
            w = unpermute_rows(w, H)
        elif name.endswith(".attn_k.weight"):
            w = unpermute_rows(w, KV)
        weights[names[name]] = w
    return GGUFModel(config, weights, tokens, roles, files, kinds)


def describe(model: GGUFModel) -> str:
    """``Q4_1 x210, F32 x61, Q8_0 x1`` (the tensor types of the file)."""
    return ", ".join(f"{k} x{n}" for k, n in sorted(model.types.items(), key=lambda kv: -kv[1]))
