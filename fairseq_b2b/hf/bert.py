"""HuggingFace BERT <-> fairseq ``b2b_bert``: config.json -> fairseq args, HF tensors -> fairseq
tensors (``b2b-import-hf``), fairseq tensors and args -> HF tensors and ``BertConfig``
(``b2b-export-hf``).

* The token-type embedding of type 0 is folded into the positional table, so the fairseq model
  equals HF's ``BertModel`` on single-segment input (token_type_ids all 0); export subtracts it
  again when the import's table is known.
* Learned positions are shifted by fairseq's offset (padding_idx + 1 = 2 rows, left zero).
* Post-LN, GELU and LayerNorm eps (``--layernorm-eps``, 1e-12 for BERT) carry over.
* The pooler (and an NSP head) has no place in fairseq's RoBERTa encoder and is dropped.  The
  MLM head (``cls.predictions``) is imported when present; otherwise the target arch keeps its
  own initialisation for ``encoder.lm_head`` and the command says so.
"""
from __future__ import annotations

import torch

from ..errors import B2BError
from .common import VocabMapping
from .state_dicts import (HFWeights, config_value, fairseq_activation, hf_activation, model_arg, normalise_keys,
                          refuse_unless, shared_arch_args, zero_pad_rows)

# HuggingFace BERT layer module -> fairseq TransformerEncoderLayer module (weights and biases)
BERT_LAYER_NAMES = {
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
    "output.dense": "fc2", "output.LayerNorm": "final_layer_norm",
}
E = "encoder.sentence_encoder."


def arch_args(config: dict, src: str) -> tuple[list, dict]:
    """fairseq args of ``b2b_bert`` for an HF BertConfig, and a summary of the shape."""
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise B2BError(f"'{src}' uses position_embedding_type={config['position_embedding_type']!r}: "
                       "only absolute (learned) positions are supported")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise B2BError(f"'{src}' is a BERT decoder (is_decoder/add_cross_attention): only encoders are supported")
    L, D, H = (config_value(config, k, src) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    F, P = config_value(config, "intermediate_size", src), config_value(config, "max_position_embeddings", src)
    act = fairseq_activation(config.get("hidden_act", "gelu"), src)
    eps = float(config.get("layer_norm_eps", 1e-12))
    drop, attn_drop = float(config.get("hidden_dropout_prob", 0.1)), float(config.get("attention_probs_dropout_prob", 0.1))
    args = ["--encoder-layers", L, "--encoder-embed-dim", D, "--encoder-attention-heads", H,
            "--encoder-ffn-embed-dim", F, "--max-positions", P]
    args += shared_arch_args(D, H, P, act, eps, drop, attn_drop, src)
    return args, {"layers": L, "dim": D, "heads": H, "ffn": F, "positions": P, "activation": act, "eps": eps}


def to_fairseq(hf: dict, config: dict, mapping: VocabMapping, src: str, notes: list) -> tuple[dict, dict]:
    """fairseq ``b2b_bert`` tensors from HF BERT tensors; returns (state, extra metadata)."""
    layers = int(config["num_hidden_layers"])
    w = HFWeights(normalise_keys(hf, "bert."), src, f"a {layers}-layer BERT")
    out = {}
    word = w.pop("embeddings.word_embeddings.weight")
    out[E + "embed_tokens.weight"] = mapping.rows_to_fairseq(word)
    pos = w.pop("embeddings.position_embeddings.weight")
    token_types = w.maybe("embeddings.token_type_embeddings.weight")
    if token_types is not None:
        pos = pos + token_types[0]
        notes.append("token type 0 folded into the positional embeddings: exact for single-segment input "
                     "(token_type_ids all 0); segment B embeddings are not part of the fairseq model")
    out[E + "embed_positions.weight"] = zero_pad_rows(pos)
    out[E + "layernorm_embedding.weight"] = w.pop("embeddings.LayerNorm.weight")
    out[E + "layernorm_embedding.bias"] = w.pop("embeddings.LayerNorm.bias")
    for i in range(layers):
        for hf_name, fs_name in BERT_LAYER_NAMES.items():
            for p in ("weight", "bias"):
                out[f"{E}layers.{i}.{fs_name}.{p}"] = w.pop(f"encoder.layer.{i}.{hf_name}.{p}")
    w.maybe("embeddings.position_ids")
    w.maybe("embeddings.token_type_ids")
    dropped = [k for k in list(w.sd) if k.startswith(("pooler.", "cls.seq_relationship."))]
    for k in dropped:
        w.sd.pop(k)
    if any(k.startswith("pooler.") for k in dropped):
        notes.append("pooler.dense dropped: fairseq's RoBERTa encoder has no pooler (BERT's [CLS] pooler/NSP head)")
    if any(k.startswith("cls.seq_relationship.") for k in dropped):
        notes.append("next-sentence-prediction head (cls.seq_relationship) dropped")
    has_head = "cls.predictions.transform.dense.weight" in w.sd
    if has_head:
        out["encoder.lm_head.dense.weight"] = w.pop("cls.predictions.transform.dense.weight")
        out["encoder.lm_head.dense.bias"] = w.pop("cls.predictions.transform.dense.bias")
        out["encoder.lm_head.layer_norm.weight"] = w.pop("cls.predictions.transform.LayerNorm.weight")
        out["encoder.lm_head.layer_norm.bias"] = w.pop("cls.predictions.transform.LayerNorm.bias")
        bias = w.maybe("cls.predictions.bias")
        decoder_bias = w.maybe("cls.predictions.decoder.bias")
        bias = bias if bias is not None else decoder_bias
        if bias is None:
            raise B2BError(f"the MLM head in '{src}' has no output bias (cls.predictions.bias): the weight file is incomplete")
        out["encoder.lm_head.bias"] = mapping.rows_to_fairseq(bias[:, None])[:, 0]
        decoder = w.maybe("cls.predictions.decoder.weight")
        if decoder is not None and not torch.equal(decoder, word):
            raise B2BError(f"the MLM decoder of '{src}' is not tied to the word embeddings: b2b_bert ties them; "
                           "untied BERT heads are not supported")
        notes.append("MLM head (cls.predictions) imported into encoder.lm_head")
    else:
        notes.append(f"no MLM head in '{src}' (cls.predictions.*): encoder.lm_head keeps the b2b_bert "
                     "initialisation (its output embedding is tied to the imported word embeddings)")
    w.no_leftovers("BERT")
    extra = {"mlm_head": has_head, "token_type_embeddings": None if token_types is None else token_types.clone()}
    return out, extra


def to_hf(sd: dict, args, L: int, mapping: VocabMapping, token_types, with_head: bool) -> dict:
    """HF ``BertForMaskedLM`` (``with_head``) or ``BertModel`` tensors of a ``b2b_bert`` state."""
    arch = str(model_arg(args, "_name", model_arg(args, "arch", "b2b_bert")))
    for ok, what in ((not model_arg(args, "encoder_normalize_before", False), "pre-LN layers (--encoder-normalize-before)"),
                     (model_arg(args, "layernorm_embedding", True), "no embedding LayerNorm"),
                     (model_arg(args, "no_scale_embedding", True), "scaled token embeddings"),
                     (not model_arg(args, "untie_weights_roberta", False), "an untied output embedding")):
        refuse_unless(ok, what, arch, "BERT")
    p = "bert." if with_head else ""
    out = {}
    out[p + "embeddings.word_embeddings.weight"] = mapping.rows_to_hf(sd[E + "embed_tokens.weight"])
    pos = sd[E + "embed_positions.weight"][2:]
    if token_types is not None:
        pos = pos - token_types[0]
        out[p + "embeddings.token_type_embeddings.weight"] = token_types.clone()
    else:
        out[p + "embeddings.token_type_embeddings.weight"] = pos.new_zeros(2, pos.shape[1])
    out[p + "embeddings.position_embeddings.weight"] = pos.clone()
    out[p + "embeddings.LayerNorm.weight"] = sd[E + "layernorm_embedding.weight"]
    out[p + "embeddings.LayerNorm.bias"] = sd[E + "layernorm_embedding.bias"]
    for i in range(L):
        for hf_name, fs_name in BERT_LAYER_NAMES.items():
            for w in ("weight", "bias"):
                out[f"{p}encoder.layer.{i}.{hf_name}.{w}"] = sd[f"{E}layers.{i}.{fs_name}.{w}"]
    if with_head:
        out["cls.predictions.transform.dense.weight"] = sd["encoder.lm_head.dense.weight"]
        out["cls.predictions.transform.dense.bias"] = sd["encoder.lm_head.dense.bias"]
        out["cls.predictions.transform.LayerNorm.weight"] = sd["encoder.lm_head.layer_norm.weight"]
        out["cls.predictions.transform.LayerNorm.bias"] = sd["encoder.lm_head.layer_norm.bias"]
        bias = mapping.rows_to_hf(sd["encoder.lm_head.bias"])
        out["cls.predictions.bias"] = bias
        out["cls.predictions.decoder.bias"] = bias
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    return out


def hf_config(tr, args, shape: dict, mapping: VocabMapping, base: dict, special_id, fairseq_mode: bool,
              cls_name: str, type_vocab: int):
    """``BertConfig`` of the export: ``base`` (the imported config.json) overridden by the
    checkpoint's shape; ``special_id(symbol)`` is the HF id of a fairseq special."""
    values = dict(vocab_size=len(mapping.hf_tokens), hidden_size=shape["dim"], num_hidden_layers=shape["layers"],
                  num_attention_heads=shape["heads"], intermediate_size=shape["ffn"], hidden_act=hf_activation(args),
                  max_position_embeddings=shape["positions"], type_vocab_size=type_vocab,
                  layer_norm_eps=float(model_arg(args, "layernorm_eps", 1e-5)),
                  hidden_dropout_prob=float(model_arg(args, "dropout", 0.1)),
                  attention_probs_dropout_prob=float(model_arg(args, "attention_dropout", 0.1)),
                  position_embedding_type="absolute", pad_token_id=special_id("<pad>"), architectures=[cls_name])
    if fairseq_mode:
        values.update(bos_token_id=special_id("<s>"), eos_token_id=special_id("</s>"))
    return tr.BertConfig(**{**base, **values})
