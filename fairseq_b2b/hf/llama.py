"""HuggingFace ``LlamaForCausalLM`` <-> fairseq ``b2b_llama``: config.json -> fairseq args, HF
tensors -> fairseq tensors (``b2b-import-hf``, also for a GGUF file read by ``hf/gguf.py``), fairseq
tensors and args -> HF tensors and ``LlamaConfig`` (``b2b-export-hf``).

The modules map key by key with no permutation (``b2b_llama`` uses HF's rotate_half rotary and
HF's query-head order within a group); RMSNorm eps, rope theta and the head size carry over; the
output is tied or not as in the source.  What HF's ``LlamaForCausalLM`` has and ``b2b_llama``
lacks is refused in one line: biases (``attention_bias``/``mlp_bias``), another activation than
SiLU, rotary scaling (``rope_scaling``/``rope_type`` other than default), sliding windows.

Export of an exact-mode growth (``b2b-grow --exact``, still with its weighted RMSNorms): HF's
RMSNorm averages ``x^2`` uniformly, the grown model weighs entry j by ``w_j``.  The residual
stream is rescaled entry-wise by ``s_j = sqrt(D w_j)``: every write into the stream (the token
embedding, ``o_proj`` and ``down_proj`` rows) is multiplied by ``s``, so ``mean((s x)^2) =
sum_j w_j x_j^2`` is the weighted statistic, and every RMSNorm gain is divided by ``s`` (the final
one by ``s^2`` when the output is tied to the rescaled embedding): the exported model computes
the same function with plain RMSNorms.
"""
from __future__ import annotations

import torch

from ..errors import B2BError
from .common import VocabMapping
from .state_dicts import HFWeights, config_value, model_arg, normalise_keys, refuse_unless

# HF LlamaDecoderLayer module -> b2b_llama LlamaDecoderLayer module (weights only, no biases)
LAYER_NAMES = (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm"),
               ("self_attn.q_proj", "self_attn.q_proj"), ("self_attn.k_proj", "self_attn.k_proj"),
               ("self_attn.v_proj", "self_attn.v_proj"), ("self_attn.o_proj", "self_attn.o_proj"),
               ("mlp.gate_proj", "ffn.gate_proj"), ("mlp.up_proj", "ffn.up_proj"), ("mlp.down_proj", "ffn.down_proj"))
NORMS = ("attn_norm", "ffn_norm")
# keys of an imported config.json replaced by the export's own rotary description
ROPE_KEYS = ("rope_theta", "rope_scaling", "rope_parameters")


def rope_theta(config: dict, src: str) -> float:
    """The rotary base of a transformers 4 (``rope_theta``, ``rope_scaling``) or 5
    (``rope_parameters``) config; scaled rotary variants are refused."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type", "default") if isinstance(params, dict) else "default"
    kind = scaling.get("rope_type", scaling.get("type", kind)) if isinstance(scaling, dict) else kind
    if kind not in ("default", None):
        raise B2BError(f"'{src}' uses rotary scaling '{kind}': b2b_llama has plain rotary positions only")
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    theta = theta if theta is not None else config.get("rope_theta", 10000.0)
    try:
        return float(theta)
    except (TypeError, ValueError):
        raise B2BError(f"'{src}/config.json' has a bad rope theta: {theta!r}") from None


def arch_args(config: dict, src: str) -> tuple[list, dict]:
    """fairseq args of ``b2b_llama`` for an HF LlamaConfig, and a summary of the shape."""
    for key, what in (("attention_bias", "attention biases"), ("mlp_bias", "MLP biases")):
        if config.get(key):
            raise B2BError(f"'{src}' has {what} ({key}: true): b2b_llama has no biases")
    if config.get("sliding_window"):
        raise B2BError(f"'{src}' uses sliding-window attention: b2b_llama attends to the whole prefix")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise B2BError(f"activation {act!r} of '{src}' is not supported: b2b_llama's SwiGLU uses silu")
    L, D, H = (config_value(config, k, src) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    F, P = config_value(config, "intermediate_size", src), config_value(config, "max_position_embeddings", src)
    kv = int(config.get("num_key_value_heads") or H)
    head_dim = int(config.get("head_dim") or D // H)
    if kv < 1 or H % kv:
        raise B2BError(f"'{src}': {kv} key/value heads do not divide the {H} query heads")
    eps, theta = float(config.get("rms_norm_eps", 1e-6)), rope_theta(config, src)
    tied = bool(config.get("tie_word_embeddings", False))
    args = ["--decoder-layers", L, "--decoder-embed-dim", D, "--decoder-attention-heads", H, "--decoder-kv-heads", kv,
            "--decoder-head-dim", head_dim, "--decoder-ffn-embed-dim", F, "--max-target-positions", P,
            "--tokens-per-sample", P, "--rms-norm-eps", repr(eps), "--rope-theta", repr(theta),
            "--dropout", "0.0", "--attention-dropout", repr(float(config.get("attention_dropout", 0.0)))]
    if tied:
        args.append("--share-decoder-input-output-embed")
    return args, {"layers": L, "dim": D, "heads": H, "kv_heads": kv, "head_dim": head_dim, "ffn": F, "positions": P,
                  "activation": "silu", "eps": eps, "rope_theta": theta, "tied": tied}


def to_fairseq(hf: dict, config: dict, mapping: VocabMapping, src: str, notes: list) -> tuple[dict, dict]:
    """fairseq ``b2b_llama`` tensors from HF ``LlamaForCausalLM`` tensors; returns (state, extra metadata: none)."""
    layers = int(config["num_hidden_layers"])
    w = HFWeights(normalise_keys(hf, "model."), src, f"a {layers}-layer LLaMA")
    embed = w.pop("embed_tokens.weight")
    out = {"decoder.embed_tokens.weight": mapping.rows_to_fairseq(embed)}
    for i in range(layers):
        for hf_name, fs_name in LAYER_NAMES:
            out[f"decoder.layers.{i}.{fs_name}.weight"] = w.pop(f"layers.{i}.{hf_name}.weight")
        w.maybe(f"layers.{i}.self_attn.rotary_emb.inv_freq")  # a buffer older transformers saved
    out["decoder.norm.weight"] = w.pop("norm.weight")
    head = w.maybe("lm_head.weight")
    if config.get("tie_word_embeddings", False):
        if head is not None and not torch.equal(head, embed):
            raise B2BError(f"'{src}' says tie_word_embeddings but its lm_head differs from embed_tokens: "
                           "the weight file does not match config.json")
    elif head is None:
        raise B2BError(f"the weights in '{src}' lack 'lm_head.weight' that an untied LLaMA has: "
                       "the weight file does not match config.json (tie_word_embeddings)")
    else:
        out["decoder.output_projection.weight"] = mapping.rows_to_fairseq(head)
    w.no_leftovers("LLaMA")
    return out, {}


def stream_scale(sd: dict, L: int, D: int):
    """``s = sqrt(D w)`` of the weighted RMSNorms of an exact-mode growth (None when the norms
    are plain): every RMSNorm reads the same residual stream, so they must weigh it alike."""
    names = {k[:-len(".stat_weights")] for k in sd if k.endswith(".stat_weights")}
    if not names:
        return None
    expected = {f"decoder.layers.{i}.{n}" for i in range(L) for n in NORMS} | {"decoder.norm"}
    if names != expected:
        raise B2BError(f"{len(names)} of the {len(expected)} RMSNorms of the checkpoint have statistics weights: "
                       "it is not a b2b-grow --exact checkpoint and cannot be exported")
    weights = []
    for name in sorted(names):
        t = float(sd.get(name + ".stat_blend", torch.zeros(())))
        weights.append(sd[name + ".stat_weights"].double() * (1.0 - t) + t / D)
    if any(not torch.allclose(w, weights[0], rtol=1e-6, atol=0) for w in weights[1:]) or bool((weights[0] <= 0).any()):
        raise B2BError("the weighted RMSNorms of the checkpoint weigh the residual stream differently: "
                       "no plain RMSNorm model computes it")
    return (weights[0] * D).sqrt()


def to_hf(sd: dict, args, L: int, mapping: VocabMapping) -> dict:
    """HF ``LlamaForCausalLM`` tensors of a ``b2b_llama`` state (weighted RMSNorms folded, see the module doc)."""
    arch = str(model_arg(args, "_name", model_arg(args, "arch", "b2b_llama")))
    tied = "decoder.output_projection.weight" not in sd
    refuse_unless(tied == bool(model_arg(args, "share_decoder_input_output_embed", tied)),
                  "an output projection that contradicts --share-decoder-input-output-embed", arch, "LLaMA")
    D = sd["decoder.embed_tokens.weight"].shape[1]
    s = stream_scale(sd, L, D)

    def write(t, rows=False):  # a tensor writing into the stream: its D-sized axis times s
        if s is None:
            return t
        scale = s.to(torch.float64)
        return (t.double() * (scale[:, None] if rows else scale)).to(t.dtype)

    def gain(t, power=1):
        return t if s is None else (t.double() / s ** power).to(t.dtype)

    out = {"model.embed_tokens.weight": mapping.rows_to_hf(write(sd["decoder.embed_tokens.weight"]))}
    for i in range(L):
        F = f"decoder.layers.{i}."
        for hf_name, fs_name in LAYER_NAMES:
            t = sd[F + fs_name + ".weight"]
            if fs_name in NORMS:
                t = gain(t)
            elif fs_name in ("self_attn.o_proj", "ffn.down_proj"):
                t = write(t, rows=True)
            out[f"model.layers.{i}.{hf_name}.weight"] = t
    out["model.norm.weight"] = gain(sd["decoder.norm.weight"], 2 if tied else 1)
    out["lm_head.weight"] = out["model.embed_tokens.weight"] if tied else \
        mapping.rows_to_hf(sd["decoder.output_projection.weight"])
    return out


def hf_config(tr, args, shape: dict, mapping: VocabMapping, base: dict, special_id, fairseq_mode: bool, cls_name: str,
              kv_heads: int, head_dim: int, tied: bool):
    """``LlamaConfig`` of the export: ``base`` (the imported config.json, its rotary keys replaced)
    overridden by the checkpoint's shape; a fairseq dictionary's ``</s>`` is bos and eos."""
    base = {k: v for k, v in base.items() if k not in ROPE_KEYS}
    # rotary positions have no table: a model trained on shorter blocks keeps the imported context length
    positions = max(shape["positions"], int(base.get("max_position_embeddings") or 0))
    values = dict(vocab_size=len(mapping.hf_tokens), hidden_size=shape["dim"], num_hidden_layers=shape["layers"],
                  num_attention_heads=shape["heads"], num_key_value_heads=kv_heads, head_dim=head_dim,
                  intermediate_size=shape["ffn"], hidden_act="silu", max_position_embeddings=positions,
                  rms_norm_eps=float(model_arg(args, "rms_norm_eps", 1e-5)),
                  rope_theta=float(model_arg(args, "rope_theta", 10000.0)),  # transformers 5 files it in rope_parameters
                  attention_bias=False, mlp_bias=False, tie_word_embeddings=tied,
                  attention_dropout=float(model_arg(args, "attention_dropout", 0.0)), architectures=[cls_name])
    if fairseq_mode:
        eos = special_id("</s>")
        values.update(bos_token_id=eos, eos_token_id=eos, pad_token_id=special_id("<pad>"))
    return tr.LlamaConfig(**{**base, **values})
