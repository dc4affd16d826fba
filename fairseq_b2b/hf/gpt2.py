"""HuggingFace GPT-2 <-> fairseq ``b2b_gpt``: config.json -> fairseq args, HF tensors -> fairseq
tensors (``b2b-import-hf``), fairseq tensors and args -> HF tensors and ``GPT2Config``
(``b2b-export-hf``).

Conv1D weights ([in, out]) are transposed, ``c_attn`` is split into q/k/v (fairseq scales q by
head_dim**-0.5 after the projection, which is HF's scaling of the scores), pre-LN, the LM head
is tied, ``gelu_new`` becomes fairseq's ``gelu_accurate`` (the same tanh formula).  A GPT-2
import round-trips bit-exactly.
"""
from __future__ import annotations

import torch

from ..errors import B2BError
from .common import VocabMapping
from .state_dicts import (HFWeights, config_value, fairseq_activation, hf_activation, model_arg, normalise_keys,
                          refuse_unless, shared_arch_args, zero_pad_rows)

# HF Conv1D module -> fairseq Linear module (both weights and biases; the weight is transposed)
CONV1D_NAMES = (("attn.c_proj", "self_attn.out_proj"), ("mlp.c_fc", "fc1"), ("mlp.c_proj", "fc2"))


def arch_args(config: dict, src: str) -> tuple[list, dict]:
    """fairseq args of ``b2b_gpt`` for an HF GPT2Config, and a summary of the shape."""
    if not config.get("scale_attn_weights", True) or config.get("scale_attn_by_inverse_layer_idx", False):
        raise B2BError(f"'{src}' changes GPT-2's attention scaling (scale_attn_weights / "
                       "scale_attn_by_inverse_layer_idx): only the standard 1/sqrt(head_dim) is supported")
    if config.get("add_cross_attention"):
        raise B2BError(f"'{src}' has cross-attention: only decoder-only GPT-2 is supported")
    L, D, H = (config_value(config, k, src) for k in ("n_layer", "n_embd", "n_head"))
    F = int(config.get("n_inner") or 4 * D)
    P = config_value(config, "n_positions", src)
    act = fairseq_activation(config.get("activation_function", "gelu_new"), src)
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    drop, attn_drop = float(config.get("resid_pdrop", 0.1)), float(config.get("attn_pdrop", 0.1))
    args = ["--decoder-layers", L, "--decoder-embed-dim", D, "--decoder-attention-heads", H,
            "--decoder-ffn-embed-dim", F, "--max-target-positions", P]
    args += shared_arch_args(D, H, P, act, eps, drop, attn_drop, src)
    return args, {"layers": L, "dim": D, "heads": H, "ffn": F, "positions": P, "activation": act, "eps": eps}


def to_fairseq(hf: dict, config: dict, mapping: VocabMapping, src: str, notes: list) -> tuple[dict, dict]:
    """fairseq ``b2b_gpt`` tensors from HF GPT-2 tensors; returns (state, extra metadata: none)."""
    layers = int(config["n_layer"])
    w = HFWeights(normalise_keys(hf, "transformer."), src, f"a {layers}-layer GPT-2")
    out = {}
    wte = w.pop("wte.weight")
    out["decoder.embed_tokens.weight"] = mapping.rows_to_fairseq(wte)
    out["decoder.embed_positions.weight"] = zero_pad_rows(w.pop("wpe.weight"))
    for i in range(layers):
        h, F = f"h.{i}.", f"decoder.layers.{i}."
        for hf_name, fs_name in (("ln_1", "self_attn_layer_norm"), ("ln_2", "final_layer_norm")):
            out[F + fs_name + ".weight"] = w.pop(h + hf_name + ".weight")
            out[F + fs_name + ".bias"] = w.pop(h + hf_name + ".bias")
        qkv_w = w.pop(h + "attn.c_attn.weight").t()
        qkv_b = w.pop(h + "attn.c_attn.bias")
        if qkv_w.shape[0] % 3:
            raise B2BError(f"'{h}attn.c_attn.weight' in '{src}' is not a fused q/k/v projection")
        for name, wt, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w.chunk(3, 0), qkv_b.chunk(3, 0)):
            out[F + f"self_attn.{name}.weight"] = wt.contiguous()
            out[F + f"self_attn.{name}.bias"] = b.contiguous()
        for hf_name, fs_name in CONV1D_NAMES:
            out[F + fs_name + ".weight"] = w.pop(h + hf_name + ".weight").t().contiguous()
            out[F + fs_name + ".bias"] = w.pop(h + hf_name + ".bias")
        w.maybe(h + "attn.bias")  # causal-mask buffers of older transformers
        w.maybe(h + "attn.masked_bias")
    out["decoder.layer_norm.weight"] = w.pop("ln_f.weight")
    out["decoder.layer_norm.bias"] = w.pop("ln_f.bias")
    out["decoder.output_projection.weight"] = out["decoder.embed_tokens.weight"]
    head = w.maybe("lm_head.weight")
    if head is not None and not torch.equal(head, wte):
        raise B2BError(f"the LM head of '{src}' is not tied to wte: b2b_gpt ties them; untied heads are not supported")
    w.no_leftovers("GPT-2")
    return out, {}


def to_hf(sd: dict, args, L: int, mapping: VocabMapping) -> dict:
    """HF ``GPT2LMHeadModel`` tensors of a ``b2b_gpt`` state."""
    arch = str(model_arg(args, "_name", model_arg(args, "arch", "b2b_gpt")))
    for ok, what in ((model_arg(args, "decoder_normalize_before", True), "post-LN layers"),
                     (model_arg(args, "no_scale_embedding", True), "scaled token embeddings (sqrt(D))"),
                     (model_arg(args, "share_decoder_input_output_embed", True), "an untied output embedding"),
                     (not model_arg(args, "layernorm_embedding", False), "an embedding LayerNorm"),
                     ("decoder.layer_norm.weight" in sd, "no final LayerNorm")):
        refuse_unless(ok, what, arch, "GPT-2")
    out = {"transformer.wte.weight": mapping.rows_to_hf(sd["decoder.embed_tokens.weight"]),
           "transformer.wpe.weight": sd["decoder.embed_positions.weight"][2:].clone()}
    for i in range(L):
        h, F = f"transformer.h.{i}.", f"decoder.layers.{i}."
        out[h + "ln_1.weight"] = sd[F + "self_attn_layer_norm.weight"]
        out[h + "ln_1.bias"] = sd[F + "self_attn_layer_norm.bias"]
        out[h + "ln_2.weight"] = sd[F + "final_layer_norm.weight"]
        out[h + "ln_2.bias"] = sd[F + "final_layer_norm.bias"]
        out[h + "attn.c_attn.weight"] = torch.cat([sd[F + f"self_attn.{n}_proj.weight"] for n in "qkv"], 0).t().contiguous()
        out[h + "attn.c_attn.bias"] = torch.cat([sd[F + f"self_attn.{n}_proj.bias"] for n in "qkv"], 0)
        for hf_name, fs_name in CONV1D_NAMES:
            out[h + hf_name + ".weight"] = sd[F + fs_name + ".weight"].t().contiguous()
            out[h + hf_name + ".bias"] = sd[F + fs_name + ".bias"]
    out["transformer.ln_f.weight"] = sd["decoder.layer_norm.weight"]
    out["transformer.ln_f.bias"] = sd["decoder.layer_norm.bias"]
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def hf_config(tr, args, shape: dict, mapping: VocabMapping, base: dict, special_id, fairseq_mode: bool, cls_name: str):
    """``GPT2Config`` of the export: ``base`` (the imported config.json) overridden by the
    checkpoint's shape; ``</s>`` is GPT-2's bos and eos."""
    D, F = shape["dim"], shape["ffn"]
    dropout = float(model_arg(args, "dropout", 0.1))
    eos = special_id("</s>")
    values = dict(vocab_size=len(mapping.hf_tokens), n_embd=D, n_layer=shape["layers"], n_head=shape["heads"],
                  n_inner=None if F == 4 * D else F, n_positions=shape["positions"],
                  activation_function=hf_activation(args), layer_norm_epsilon=float(model_arg(args, "layernorm_eps", 1e-5)),
                  resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=float(model_arg(args, "attention_dropout", 0.1)),
                  bos_token_id=eos, eos_token_id=eos, architectures=[cls_name])
    if "n_ctx" in base:
        values["n_ctx"] = shape["positions"]
    if fairseq_mode:
        values["pad_token_id"] = special_id("<pad>")
    return tr.GPT2Config(**{**base, **values})
