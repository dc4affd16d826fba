"""Training FLOPs of one update, counted from the shapes the update actually ran.

The paper's metric (Tables 2-5) is the FLOPs a run spends until its loss reaches a target; the
two-stage tasks log a cumulative ``train_flops`` after every update so that any two runs (stage
1 or 2, grown or from scratch) compare on FLOPs. FLOPs are matmul FLOPs, one multiply-add = 2.

Counts of one micro-batch (pads are never counted):

* ``N``  = real (non-pad) input tokens, ``S2`` = sum over sequences of n_i^2 (n_i real tokens
  of sequence i),
* ``M``  = positions the criterion scores: masked positions for masked LM (fairseq's
  ``RobertaLMHead`` projects only ``masked_tokens``; when nothing is masked fairseq projects
  every position and we count the real ones), non-pad targets for causal LM.

Per layer l of width D and FFN width F, forward:

* per token: ``2*(4*D^2 + 2*D*F)`` (Q, K, V, output projections, the two FFN matmuls),
* per sequence: ``2*2*n^2*D`` (attention scores Q K^T and context A V over its n real tokens),

so ``fwd_l = 2*(4*D^2 + 2*D*F)*N + 4*D*S2``. A LLaMA-family layer (``b2b_llama``: A = query
heads x head size, K = key/value heads x head size, three SwiGLU matrices) has
``2*(2*D*A + 2*D*K + 3*D*F)`` per token and ``2*2*n^2*A`` per sequence. Backward = 2 x forward for a trained layer,
0 for a layer run under ``torch.no_grad`` (Algorithm 2, lines 6-7: only the top ``lb`` layers of
the sub-model are trained). One exact correction: in stage 1 the input of the lowest trained
layer is constant (the layers below run without autograd; at the bottom the embedding output is
detached), so autograd skips the input gradient of the matmuls that read it directly. In a
post-LN layer (BERT) these are the Q, K, V projections: ``-3*2*D^2*N``. A pre-LN layer (GPT)
reads its input through a LayerNorm with trained parameters: no correction.

Head, per scored position, forward ``h = 2*D^2`` (BERT's dense, absent in GPT) ``+ 2*D*V`` (the
output projection, the tied embedding); it is always trained: ``3*h*M``.
Embedding lookups, LayerNorms, activations, softmax and bias adds have no matmul: 0.

An update costs the sum over its micro-batches and data-parallel ranks of::

    sum_{l < d} fwd_l  +  sum_{t <= l < d} 2*fwd_l  -  corr  +  3*h*M

with ``d`` the sub-model's depth and ``t`` its lowest trained layer (stage 2: ``d = Lt``,
``t = 0``, ``corr = 0``). ``tests/test_flops.py`` checks this against
``torch.utils.flop_counter.FlopCounterMode`` on pad-free batches, where the two agree exactly.

The baselines' schedules (:mod:`fairseq_b2b.tasks.schedules`) use the same formula with the shape
each update ran: StackBERT and MSLT's first stage ``d`` < ``Lt``, ``t = 0`` and a trained
embedding block (its output needs a gradient: ``corr = 0``); MSLT's later stages ``t = d - k``
with the layers below forward-only (``corr`` as in stage 1); share-then-unshare the full ``Lt``
applications of the shared layer, i.e. the full model's FLOPs. ``tests/test_baselines.py``
checks these against ``FlopCounterMode`` too (with attention dropout on: with p = 0 torch runs
attention as a fused SDPA kernel whose FLOPs the counter does not see on CPU).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple


@dataclass(frozen=True)
class LayerDims:
    """One layer's matmul shapes: hidden size ``dim``, FFN width ``ffn``; ``attn`` (query heads x
    head size) and ``kv`` (key/value heads x head size) default to ``dim``; ``ffn_matrices`` is 2
    (fc1, fc2) or 3 (SwiGLU's gate, up, down)."""

    dim: int
    ffn: int
    pre_ln: bool
    attn: int = 0
    kv: int = 0
    ffn_matrices: int = 2

    @property
    def per_token(self) -> int:
        attn, kv = self.attn or self.dim, self.kv or self.dim
        return 2 * (2 * self.dim * attn + 2 * self.dim * kv + self.ffn_matrices * self.dim * self.ffn)

    @property
    def per_square(self) -> int:
        return 2 * 2 * (self.attn or self.dim)


@dataclass(frozen=True)
class FlopsModel:
    """The shapes that matter for FLOPs: the layer stack and the head's per-position cost."""

    layers: Tuple[LayerDims, ...]
    head_per_position: int  # forward FLOPs of the head for one scored position

    @property
    def depth(self) -> int:
        return len(self.layers)

    def coefficients(self, depth: int | None = None, trainable_from: int = 0,
                     frozen_input: bool = False) -> Tuple[int, int, int]:
        """(c_N, c_S2, c_M) with update FLOPs = c_N*N + c_S2*S2 + c_M*M.

        ``frozen_input``: the lowest trained layer's input does not require grad (stage 1 of
        Algorithm 2, MSLT's later stages)."""
        depth = self.depth if depth is None else depth
        if not 0 <= trainable_from <= depth <= self.depth:
            raise ValueError(f"sub-model of depth {depth} from layer {trainable_from} does not fit {self.depth} layers")
        c_tok = c_sq = 0
        for i, layer in enumerate(self.layers[:depth]):
            passes = 3 if i >= trainable_from else 1
            c_tok += passes * layer.per_token
            c_sq += passes * layer.per_square
        if frozen_input and trainable_from < depth and not self.layers[trainable_from].pre_ln:
            c_tok -= 3 * 2 * self.layers[trainable_from].dim ** 2
        return c_tok, c_sq, 3 * self.head_per_position

    def update_flops(self, n_tokens: int, sum_sq: int, n_scored: int, depth: int | None = None,
                     trainable_from: int = 0, frozen_input: bool = False) -> int:
        c_tok, c_sq, c_head = self.coefficients(depth, trainable_from, frozen_input)
        return c_tok * int(n_tokens) + c_sq * int(sum_sq) + c_head * int(n_scored)

    @classmethod
    def from_model(cls, model) -> "FlopsModel":
        return cls(tuple(_layer_dims(layer) for layer in layer_stack(model)), _head_per_position(model))


def layer_stack_owner(model):
    """The module whose ``layers`` hold the Transformer layers (b2b, RoBERTa or transformer_lm)."""
    if hasattr(model, "layer_stack_owner"):
        return model.layer_stack_owner()
    encoder = getattr(model, "encoder", None)
    if encoder is not None and hasattr(getattr(encoder, "sentence_encoder", None), "layers"):
        return encoder.sentence_encoder
    decoder = getattr(model, "decoder", None)
    if decoder is not None and hasattr(decoder, "layers"):
        return decoder
    if encoder is not None and hasattr(encoder, "layers"):
        return encoder
    raise ValueError(f"cannot find the layer stack of {type(model).__name__}")


def layer_stack(model) -> Sequence:
    return list(layer_stack_owner(model).layers)


def _layer_dims(layer) -> LayerDims:
    inner = getattr(layer, "layer", layer)  # a sub-model's _NoGrad wrapper
    ffn = getattr(inner, "ffn", None)
    if ffn is not None and hasattr(ffn, "gate_proj"):  # b2b_llama: GQA and SwiGLU, pre-RMSNorm
        attn = inner.self_attn
        return LayerDims(int(ffn.gate_proj.in_features), int(ffn.gate_proj.out_features), True,
                         attn=int(attn.q_proj.out_features), kv=int(attn.k_proj.out_features), ffn_matrices=3)
    return LayerDims(int(inner.fc1.in_features), int(inner.fc1.out_features), bool(getattr(inner, "normalize_before", False)))


def _head_per_position(model) -> int:
    encoder = getattr(model, "encoder", None)
    lm_head = getattr(encoder, "lm_head", None) if encoder is not None else None
    if lm_head is not None:  # RoBERTa / BERT: dense D x D, then the (tied) projection to V
        dense = lm_head.dense
        vocab, dim = lm_head.weight.shape
        return 2 * dense.in_features * dense.out_features + 2 * int(dim) * int(vocab)
    decoder = getattr(model, "decoder", None)
    if decoder is not None and getattr(decoder, "output_projection", None) is not None:
        flops = 0
        project_out = getattr(decoder, "project_out_dim", None)
        if project_out is not None:
            flops += 2 * project_out.in_features * project_out.out_features
        vocab, dim = decoder.output_projection.weight.shape
        return flops + 2 * int(dim) * int(vocab)
    raise ValueError(f"cannot find the LM head of {type(model).__name__} (adaptive softmax is not metered)")
