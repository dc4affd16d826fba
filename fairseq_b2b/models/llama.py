"""The LLaMA family in fairseq: ``b2b_llama``, a decoder-only LM with pre-RMSNorm, rotary
positions (HuggingFace's convention), a SwiGLU FFN, grouped-query attention and no biases;
the output projection optionally tied to the input embedding.

State-dict keys (those of the import/export in ``fairseq_b2b.hf``)::

    decoder.embed_tokens.weight                          [V, D]   (no embedding scale, no positions)
    decoder.layers.{i}.attn_norm.weight                  [D]
    decoder.layers.{i}.self_attn.{q,k,v,o}_proj.weight   [Hq*hd, D], [Hkv*hd, D] x2, [D, Hq*hd]
    decoder.layers.{i}.ffn_norm.weight                   [D]
    decoder.layers.{i}.ffn.{gate,up,down}_proj.weight    [F, D] x2, [D, F]
    decoder.norm.weight                                  [D]
    decoder.output_projection.weight                     [V, D]   only when untied
"""
from __future__ import annotations

import math
import os

import torch
from fairseq.models import FairseqIncrementalDecoder, FairseqLanguageModel, register_model, register_model_architecture
from torch import nn

from .common import SubmodelMixin, WeightedLayerNormMixin, add_growth_args, finish_build
from .llama_layers import LlamaDecoderLayer
from .rms_norm import RMSNorm
from .rotary import rotary_cos_sin

INIT_STD = 0.02  # LLaMA's (HuggingFace initializer_range) normal init of every matrix
INHERITED = ("rms_norm_eps", "rope_theta")  # taken from an --init-from-small source when not given


class LlamaDecoder(FairseqIncrementalDecoder):
    def __init__(self, args, dictionary, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        dim = int(args.decoder_embed_dim)
        self.padding_idx = embed_tokens.padding_idx
        self.head_dim, self.rope_theta = int(args.decoder_head_dim), float(args.rope_theta)
        self.max_target_positions = int(args.max_target_positions)
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(float(args.dropout))
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(dim, int(args.decoder_attention_heads), int(args.decoder_kv_heads), self.head_dim,
                              int(args.decoder_ffn_embed_dim), float(args.rms_norm_eps), float(args.dropout),
                              float(args.attention_dropout))
            for _ in range(int(args.decoder_layers)))
        self.norm = RMSNorm(dim, float(args.rms_norm_eps))
        self.share_input_output_embed = bool(args.share_decoder_input_output_embed)
        self.output_projection = nn.Linear(dim, len(dictionary), bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        with torch.no_grad():
            embed_tokens.weight[self.padding_idx].zero_()
        if self.share_input_output_embed:
            # tied: one matrix, kept in the state dict once, as decoder.embed_tokens.weight
            self.output_projection.weight = embed_tokens.weight
            self._register_state_dict_hook(_drop_tied_output)
            self._register_load_state_dict_pre_hook(_tied_output_from_embedding)

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, features_only=False,
                src_lengths=None, return_all_hiddens=False, **kwargs):
        x, extra = self.extract_features(prev_output_tokens, incremental_state=incremental_state)
        return (x if features_only else self.output_layer(x)), extra

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        """Token positions count the non-pad tokens before them (left padding starts at 0);
        a pad attends only to itself, so no row of the attention is empty."""
        tokens = prev_output_tokens
        full_len = tokens.shape[1]
        pad = tokens.eq(self.padding_idx)
        has_pad = bool(pad.any())
        positions = ((~pad).long().cumsum(1) - 1).clamp(min=0) if has_pad else torch.arange(
            full_len, device=tokens.device).expand_as(tokens)
        if incremental_state is not None:  # fairseq's generator passes the whole prefix: run the last token
            tokens, positions = tokens[:, -1:], positions[:, -1:]
        t = tokens.shape[1]
        past = full_len - t
        attn_mask, is_causal = None, past == 0
        if has_pad or (past and t > 1):
            query_at = torch.arange(past, full_len, device=tokens.device)
            key_at = torch.arange(full_len, device=tokens.device)
            allowed = key_at[None, :] <= query_at[:, None]  # (T, S)
            allowed = allowed[None] & (~pad[:, None, :] | (key_at[None, None, :] == query_at[None, :, None]))
            attn_mask = allowed.unsqueeze(1)  # (B, 1, T, S)
        x = self.dropout(self.embed_tokens(tokens))
        cos, sin = rotary_cos_sin(positions, self.head_dim, self.rope_theta, x.dtype)
        inner_states = [x]
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask=attn_mask, is_causal=is_causal, incremental_state=incremental_state)
            inner_states.append(x)
        return self.norm(x), {"attn": [None], "inner_states": inner_states}

    def output_layer(self, features):
        return self.output_projection(features)

    def max_positions(self):
        return self.max_target_positions


def _drop_tied_output(module, state_dict, prefix, local_metadata):
    state_dict.pop(prefix + "output_projection.weight", None)


def _tied_output_from_embedding(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    out_key, embed_key = prefix + "output_projection.weight", prefix + "embed_tokens.weight"
    if embed_key not in state_dict:
        return
    given = state_dict.get(out_key)
    if given is not None and given is not state_dict[embed_key] and not torch.equal(given, state_dict[embed_key]):
        error_msgs.append(f"'{out_key}' is an untied output projection but this b2b_llama ties it to the input "
                          "embedding: build it without --share-decoder-input-output-embed")
        return
    state_dict[out_key] = state_dict[embed_key]


@register_model("b2b_llama")
class B2BLlamaModel(WeightedLayerNormMixin, SubmodelMixin, FairseqLanguageModel):
    """A LLaMA-family decoder (SmolLM2, LLaMA 2/3, Mistral-style shapes) with the bert2BERT options."""

    family = "llama"

    @staticmethod
    def add_args(parser):
        # no defaults: the b2b_llama_* architecture functions fill in what the user did not set
        parser.add_argument("--decoder-layers", type=int, metavar="N", help="number of decoder layers")
        parser.add_argument("--decoder-embed-dim", type=int, metavar="D", help="hidden size (residual stream)")
        parser.add_argument("--decoder-attention-heads", type=int, metavar="Hq", help="query heads")
        parser.add_argument("--decoder-kv-heads", type=int, metavar="Hkv",
                            help="key/value heads (grouped-query attention; must divide the query heads; "
                                 "default: as many as query heads)")
        parser.add_argument("--decoder-head-dim", type=int, metavar="hd",
                            help="size of one head (default: embed dim / query heads; growth keeps the source's)")
        parser.add_argument("--decoder-ffn-embed-dim", type=int, metavar="F", help="SwiGLU width")
        parser.add_argument("--rms-norm-eps", type=float, metavar="EPS",
                            help="RMSNorm epsilon (default 1e-5, or the --init-from-small source's)")
        parser.add_argument("--rope-theta", type=float, metavar="THETA",
                            help="rotary base (default 10000, or the --init-from-small source's)")
        parser.add_argument("--share-decoder-input-output-embed", action="store_true",
                            help="tie the output projection to the input embedding")
        parser.add_argument("--max-target-positions", type=int, metavar="N", help="longest sequence the model takes")
        parser.add_argument("--dropout", type=float, metavar="P", help="dropout on the embedding and residual branches")
        parser.add_argument("--attention-dropout", type=float, metavar="P", help="dropout on attention weights")
        add_growth_args(parser)

    @classmethod
    def build_model(cls, args, task):
        llama_architecture(args)
        inherit_from_source(args)
        if args.decoder_kv_heads < 1 or args.decoder_attention_heads % args.decoder_kv_heads:
            raise SystemExit(f"fairseq-b2b: error: --decoder-kv-heads {args.decoder_kv_heads} does not divide "
                             f"--decoder-attention-heads {args.decoder_attention_heads}: pass a divisor of it")
        if args.decoder_head_dim % 2:
            raise SystemExit(f"fairseq-b2b: error: --decoder-head-dim {args.decoder_head_dim} is odd: rotary "
                             "positions rotate pairs, pass an even head size")
        if getattr(args, "max_target_positions", None) is None:
            args.max_target_positions = getattr(args, "tokens_per_sample", 2048)
        dictionary = task.target_dictionary
        embed = nn.Embedding(len(dictionary), args.decoder_embed_dim, padding_idx=dictionary.pad())
        return finish_build(cls(LlamaDecoder(args, dictionary, embed)), args, task)

    def layer_stack_owner(self):
        return self.decoder

    def embed_scale_value(self) -> float:
        return 1.0


def inherit_from_source(args) -> None:
    """RMSNorm eps and rope theta the user did not set: the ``--init-from-small`` source's (a grown
    model computes its source's function only with them), else 1e-5 and 10000."""
    source = getattr(args, "init_from_small", None)
    recorded = {}
    if source and any(getattr(args, k, None) is None for k in INHERITED):
        if os.path.isfile(source):
            from ..growth_hook import checkpoint_model_args, load_checkpoint

            src_args = checkpoint_model_args(load_checkpoint(source, what="--init-from-small"))
            recorded = {k: (src_args.get(k) if isinstance(src_args, dict) else getattr(src_args, k, None))
                        for k in INHERITED} if src_args is not None else {}
    for key, default in zip(INHERITED, (1e-5, 10000.0)):
        if getattr(args, key, None) is None:
            setattr(args, key, float(recorded.get(key) or default))


@register_model_architecture("b2b_llama", "b2b_llama")
def llama_architecture(args):
    """Defaults of every b2b_llama arch; eps and theta stay unset here (see inherit_from_source)."""
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 64)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_kv_heads = getattr(args, "decoder_kv_heads", None) or args.decoder_attention_heads
    args.decoder_head_dim = getattr(args, "decoder_head_dim", None) or args.decoder_embed_dim // args.decoder_attention_heads
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", None) or _swiglu_width(args.decoder_embed_dim)
    args.rms_norm_eps = getattr(args, "rms_norm_eps", None)
    args.rope_theta = getattr(args, "rope_theta", None)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.max_target_positions = getattr(args, "max_target_positions", None)
    args.dropout = getattr(args, "dropout", 0.0)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)


def _swiglu_width(dim: int) -> int:
    """LLaMA's FFN width for hidden size ``dim``: 2/3 of 4*dim, rounded up to a multiple of 16."""
    return int(math.ceil(8 * dim / 3 / 16) * 16)


ARCHS = {
    # name: (layers, embed dim, query heads, kv heads, head size, FFN, tied, rope theta)
    "b2b_llama_tiny": (2, 64, 4, 2, 16, 176, True, None),
    "b2b_llama_tiny_wide": (2, 96, 6, 3, 16, 256, True, None),
    "b2b_llama_tiny_deep": (4, 96, 6, 3, 16, 256, True, None),
    "b2b_llama_mini": (4, 128, 8, 2, 16, 352, True, None),
    "b2b_llama_mini_wide": (4, 192, 12, 3, 16, 512, True, None),
    # SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M): eps 1e-5, theta 1e5, tied embeddings
    "b2b_llama_smollm2_135m": (30, 576, 9, 3, 64, 1536, True, 100000.0),
}


def _shape_fn(layers, dim, heads, kv_heads, head_dim, ffn, tied, theta):
    def set_shape(args):
        args.decoder_layers = getattr(args, "decoder_layers", layers)
        args.decoder_embed_dim = getattr(args, "decoder_embed_dim", dim)
        args.decoder_attention_heads = getattr(args, "decoder_attention_heads", heads)
        args.decoder_kv_heads = getattr(args, "decoder_kv_heads", kv_heads)
        if args.decoder_embed_dim == dim and args.decoder_attention_heads == heads:
            args.decoder_head_dim = getattr(args, "decoder_head_dim", head_dim)
        args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", ffn)
        args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", tied)
        if theta is not None:
            args.rope_theta = getattr(args, "rope_theta", theta)
        llama_architecture(args)
    return set_shape


for _name, _shape in ARCHS.items():
    register_model_architecture("b2b_llama", _name)(_shape_fn(*_shape))
