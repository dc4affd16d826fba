"""Matrix expansion EXPN(W; g_in, g_out) of bert2BERT (eqs. 7-8), for any tensor axis.

Tensors are in torch layout (``nn.Linear.weight`` is ``[out, in]``); the caller says which axis
is an in-dimension and which an out-dimension.
"""
from __future__ import annotations

import torch

from .mapping import copy_counts


def expand_in(w: torch.Tensor, axis: int, mapping: torch.Tensor) -> torch.Tensor:
    """Eq. 7, in-dimension expansion: entry ``i`` of ``axis`` becomes ``W[g_in(i)] / C_g(g_in(i))``.

    Entries mapped to ``MEAN`` (exact mode) read nothing: they get zero weight.
    """
    d_src = w.shape[axis]
    counts = copy_counts(mapping, d_src).to(w.dtype)
    valid = mapping >= 0
    index = mapping.clamp(min=0)
    scale = torch.where(valid, 1.0 / counts[index].clamp(min=1), torch.zeros((), dtype=w.dtype))
    shape = [1] * w.dim()
    shape[axis] = -1
    return w.index_select(axis, index).mul_(scale.view(shape))


def expand_out(w: torch.Tensor, axis: int, mapping: torch.Tensor, mean_fill: bool = True) -> torch.Tensor:
    """Eq. 8, out-dimension expansion: entry ``j`` of ``axis`` copies ``W[g_out(j)]``.

    Entries mapped to ``MEAN`` get the mean over the source entries of that axis, which keeps
    an extra residual-stream entry equal to the mean of the stream (exact mode); with
    ``mean_fill=False`` they get zeros instead (LayerNorm parameters of the exact mode).
    """
    out = w.index_select(axis, mapping.clamp(min=0))
    extra = (mapping < 0).nonzero().flatten()
    if len(extra):
        fill = w.mean(dim=axis, keepdim=True) if mean_fill else torch.zeros_like(w.narrow(axis, 0, 1))
        out.index_copy_(axis, extra, fill.expand_as(out.index_select(axis, extra)).contiguous())
    return out
