"""The layers of the LLaMA family: grouped-query attention with rotary positions, the SwiGLU
feed-forward block, and the pre-RMSNorm decoder layer.  No biases anywhere; parameter names are
HuggingFace ``LlamaDecoderLayer``'s (``q_proj``, ``gate_proj``, ...) under fairseq-style modules."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import nn

from .rms_norm import RMSNorm
from .rotary import apply_rotary


def repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    """``(B, kv_heads, T, hd) -> (B, kv_heads * group, T, hd)``: query head ``h`` reads key/value head
    ``h // group`` (the query heads of one group are consecutive, as in HuggingFace)."""
    if group == 1:
        return x
    b, kv, t, hd = x.shape
    return x[:, :, None].expand(b, kv, group, t, hd).reshape(b, kv * group, t, hd)


@with_incremental_state
class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``heads`` query heads sharing ``kv_heads`` key/value heads
    (GQA; ``kv_heads == heads`` is multi-head attention), rotary positions on q and k, computed
    by ``F.scaled_dot_product_attention``."""

    def __init__(self, embed_dim: int, heads: int, kv_heads: int, head_dim: int, attention_dropout: float = 0.0):
        super().__init__()
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"{kv_heads} key/value heads do not divide {heads} query heads")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.attention_dropout = attention_dropout
        self.q_proj = nn.Linear(embed_dim, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(embed_dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(embed_dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, embed_dim, bias=False)

    def forward(self, x, cos, sin, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = True,
                incremental_state=None):
        """``x`` (B, T, D); ``attn_mask`` a boolean (B, 1, T, S) mask (True: may attend) or None with
        ``is_causal`` (plain causal attention over the T positions, or none after a cache)."""
        b, t, _ = x.shape
        q, k = self._rotated_qk(x, cos, sin)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if incremental_state is not None:
            cached = self.get_incremental_state(incremental_state, "kv")
            if cached is not None:
                k, v = torch.cat([cached["k"], k], dim=2), torch.cat([cached["v"], v], dim=2)
            self.set_incremental_state(incremental_state, "kv", {"k": k, "v": v})
        group = self.heads // self.kv_heads
        out = F.scaled_dot_product_attention(
            q, repeat_kv(k, group), repeat_kv(v, group), attn_mask=attn_mask,
            dropout_p=self.attention_dropout if self.training else 0.0, is_causal=attn_mask is None and is_causal)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    def _rotated_qk(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def probabilities(self, x, cos, sin, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attention probabilities ``(B, heads, T, T)`` that ``forward`` applies (no cache, no
        dropout): softmax(q k^T / sqrt(head size)) under the causal or the given boolean mask."""
        q, k = self._rotated_qk(x, cos, sin)
        scores = q @ repeat_kv(k, self.heads // self.kv_heads).transpose(-1, -2) / self.head_dim ** 0.5
        t = x.shape[1]
        allowed = attn_mask if attn_mask is not None else torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~allowed, float("-inf")).softmax(-1)

    def reorder_incremental_state(self, incremental_state, new_order: torch.Tensor):
        """Beam search: the cached keys and values follow their hypotheses."""
        cached = self.get_incremental_state(incremental_state, "kv")
        if cached is not None:
            self.set_incremental_state(incremental_state, "kv",
                                       {name: t.index_select(0, new_order) for name, t in cached.items()})
        return incremental_state


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` (Shazeer 2020), FFN width ``ffn_dim``."""

    def __init__(self, embed_dim: int, ffn_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.up_proj = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, embed_dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-RMSNorm layer: ``h = x + attn(norm(x))``, ``out = h + ffn(norm(h))``; ``dropout`` on both
    branches (0 in the LLaMA archs)."""

    def __init__(self, embed_dim: int, heads: int, kv_heads: int, head_dim: int, ffn_dim: int, eps: float,
                 dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        self.attn_norm = RMSNorm(embed_dim, eps)
        self.self_attn = GroupedQueryAttention(embed_dim, heads, kv_heads, head_dim, attention_dropout)
        self.ffn_norm = RMSNorm(embed_dim, eps)
        self.ffn = SwiGLU(embed_dim, ffn_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, cos, sin, attn_mask=None, is_causal=True, incremental_state=None):
        h = x + self.dropout(self.self_attn(self.attn_norm(x), cos, sin, attn_mask, is_causal, incremental_state))
        return h + self.dropout(self.ffn(self.ffn_norm(h)))
