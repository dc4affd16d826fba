"""RMSNorm (Zhang & Sennrich 2019), as LLaMA uses it: ``x / sqrt(mean(x^2) + eps) * gain``, no
centring and no bias; the statistics in fp32 whatever the input's dtype (fp16/bf16 training),
as HuggingFace's ``LlamaRMSNorm`` computes them."""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.normalized_shape = (int(dim),)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x / sqrt(mean(x^2) + eps)`` in fp32 at least."""
        xf = x if x.dtype == torch.float64 else x.float()
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * self.normalize(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}"
