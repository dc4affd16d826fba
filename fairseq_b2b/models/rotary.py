"""Rotary position embeddings (RoPE) in HuggingFace LLaMA's convention: each head's two halves
are rotated together (``rotate_half``), not interleaved pairs, so the q/k projections of a
``LlamaForCausalLM`` load key by key with no permutation of their rows."""
from __future__ import annotations

import torch


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple:
    """cos and sin of the rotation angles ``position * theta^(-2i/head_dim)``, each ``(..., T, head_dim)``
    (the ``head_dim/2`` frequencies repeated for both halves); computed in fp32, returned in ``dtype``."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head size, not {head_dim}")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (float(theta) ** exponents)
    angles = positions.float().unsqueeze(-1) * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the two halves of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x`` of shape ``(B, heads, T, head_dim)`` by ``cos``/``sin`` of shape
    ``(B, T, head_dim)``."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)
