"""The weighted-statistics LayerNorm (and RMSNorm) of exact growth, and its annealing to a standard one.

A LayerNorm over a grown stream weighs every entry ``1/Dt``.  ``WeightedLayerNorm`` weighs
entry ``j`` by ``w_j`` instead (``mu = sum_j w_j x_j``, ``var = sum_j w_j (x_j - mu)^2``).  With
the weights of ``growth.mapping.stream_statistics_weights`` (``1/(C_g(g(j)) * Ds)``) the grown
stream has the source's statistics, so paper FPI (eqs. 7-13) is exact at any width ratio.

Training blends the weights linearly to uniform, ``w(t) = (1 - t) w + t / Dt``; at ``t = 1`` the
module computes ``F.layer_norm`` itself (bit-identical to ``nn.LayerNorm``) and the annealing
replaces it by the LayerNorm class fairseq built, sharing the same parameters: from then on
the model and its checkpoints are ordinary ones.  While annealing, the weights and the blend are
buffers (``stat_weights``, ``stat_blend``) in the state dict, fp32 and fp64 whatever the model's
dtype (``.half()``, bf16); a ``b2b_`` model that loads such a state dict turns the matching
LayerNorms into weighted ones first (``sync_with_state_dict``).

``WeightedRMSNorm`` is the same for the LLaMA family's RMSNorm: a weighted second moment
``sum_j w_j x_j^2`` with the same weights, blended and replaced (by ``RMSNorm``) the same way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS, BLEND = "stat_weights", "stat_blend"


def layernorm_types() -> tuple:
    """Every LayerNorm class fairseq can build: ``torch.nn.LayerNorm`` (and its subclasses such as
    fairseq's ``Fp32LayerNorm``), and apex's ``FusedLayerNorm`` (fairseq's wrapper of it, used on
    CUDA when apex is installed), looked up when called."""
    from fairseq.modules import layer_norm

    types = [nn.LayerNorm]
    for name in ("FusedLayerNorm", "_FusedLayerNorm"):
        cls = getattr(layer_norm, name, None)
        if isinstance(cls, type):
            types.append(cls)
    return tuple(types)


def is_layernorm(module: nn.Module) -> bool:
    """A LayerNorm of any class fairseq can build (apex's ``MixedFusedLayerNorm`` and other
    ``*LayerNorm`` classes with ``eps`` and ``normalized_shape`` count too)."""
    if isinstance(module, layernorm_types()):
        return True
    return type(module).__name__.endswith("LayerNorm") and hasattr(module, "eps") and hasattr(module, "normalized_shape")


class _WeightedNormalize(torch.autograd.Function):
    """``(x - mu) / sqrt(var + eps)`` with weighted statistics, and its closed-form backward
    ``dx = r * (g - w * (sum(g) + y * sum(g * y)))`` (``r = (var + eps)^-1/2``): only ``y`` and
    ``r`` are kept for the backward, as a fused LayerNorm keeps its statistics."""

    @staticmethod
    def forward(ctx, x, w, eps):
        mean = x.matmul(w).unsqueeze(-1)
        centered = x - mean
        r = torch.rsqrt((centered * centered).matmul(w).unsqueeze(-1) + eps)
        y = centered.mul_(r)
        ctx.save_for_backward(y, r, w)
        return y

    @staticmethod
    def backward(ctx, g):
        y, r, w = ctx.saved_tensors
        inner = g.sum(-1, keepdim=True) + y * (g * y).sum(-1, keepdim=True)
        return r * (g - w * inner), None, None


class _StatisticsWeights:
    """The statistics weights of a weighted norm and their blend to uniform (``set_blend``);
    mixed into ``WeightedLayerNorm`` and ``WeightedRMSNorm`` before their torch base class."""

    def _init_statistics(self, weights: torch.Tensor) -> None:
        if tuple(weights.shape) != tuple(self.normalized_shape) or len(self.normalized_shape) != 1:
            raise ValueError(f"statistics weights of shape {tuple(weights.shape)} do not fit a norm over "
                             f"{tuple(self.normalized_shape)}")
        self.register_buffer(WEIGHTS, weights.detach().to(torch.float32).clone())
        self.register_buffer(BLEND, torch.zeros((), dtype=torch.float64))
        self._blend = 0.0  # mirror of the buffer: forward never reads a device tensor back

    @property
    def blend(self) -> float:
        return self._blend

    def set_blend(self, t: float) -> None:
        self._blend = min(max(float(t), 0.0), 1.0)
        self.stat_blend.fill_(self._blend)

    def effective_weights(self, dtype=torch.float32) -> torch.Tensor:
        t = self._blend
        return self.stat_weights.to(dtype) * (1.0 - t) + t / self.stat_weights.numel()

    def _apply(self, fn, recurse=True):
        """``.half()``, ``.to(torch.bfloat16)``, ... cast the parameters but not the statistics
        buffers: ``stat_weights`` stays fp32 and ``stat_blend`` fp64 (an fp16 copy of the weights
        no longer sums to 1), while still following the module to its device."""
        kept = {name: self._buffers[name] for name in (WEIGHTS, BLEND)}
        super()._apply(fn, recurse)
        for name, old in kept.items():
            new = self._buffers[name]
            if new is not None and new.dtype != old.dtype:
                self._buffers[name] = old.to(device=new.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._blend = float(self.stat_blend)


class WeightedLayerNorm(_StatisticsWeights, nn.LayerNorm):
    """LayerNorm with per-entry statistics weights, blended to uniform by ``set_blend``."""

    def __init__(self, normalized_shape, weights: torch.Tensor, eps: float = 1e-5, plain_class: type = nn.LayerNorm):
        super().__init__(normalized_shape, eps=eps, elementwise_affine=True)
        self._init_statistics(weights)
        self.plain_class = plain_class

    def plain(self) -> nn.Module:
        """The LayerNorm class fairseq built here, sharing this module's parameters and eps."""
        new = self.plain_class(self.normalized_shape, eps=self.eps, elementwise_affine=True)
        new.weight, new.bias = self.weight, self.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._blend >= 1.0:  # uniform: exactly nn.LayerNorm
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        xf = x if x.dtype == torch.float64 else x.float()  # statistics in fp32 at least (fp16/bf16 training)
        y = _WeightedNormalize.apply(xf, self.effective_weights(xf.dtype), self.eps)
        return torch.addcmul(self.bias.to(xf.dtype), y, self.weight.to(xf.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blend={self._blend:.4g}"


def is_rmsnorm(module: nn.Module) -> bool:
    """An RMSNorm with a gain (``models.rms_norm.RMSNorm``, ``torch.nn.RMSNorm``), by duck type: this
    module imports nothing of the package."""
    return (type(module).__name__.endswith("RMSNorm") and getattr(module, "weight", None) is not None
            and hasattr(module, "normalized_shape") and hasattr(module, "eps"))


class WeightedRMSNorm(_StatisticsWeights, nn.Module):
    """RMSNorm with a weighted second moment ``ms = sum_j w_j x_j^2``: with the weights of
    ``stream_statistics_weights`` a grown stream has the source's ``mean(x^2)``, so the output is a
    copy of the source's (the LLaMA family's exact growth); blended to uniform like the LayerNorm,
    then replaced by ``plain_class`` (the RMSNorm class the model built). Statistics in fp32 at
    least, as ``models.rms_norm.RMSNorm``."""

    def __init__(self, dim: int, weights: torch.Tensor, eps: float = 1e-5, plain_class: type | None = None):
        super().__init__()
        self.normalized_shape = (int(dim),)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))
        self._init_statistics(weights)
        self.plain_class = plain_class

    def plain(self) -> nn.Module:
        new = self.plain_class(self.normalized_shape[0], eps=self.eps)
        new.weight = self.weight
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x if x.dtype == torch.float64 else x.float()
        if self._blend >= 1.0:  # uniform: RMSNorm's own computation
            ms = xf.pow(2).mean(-1, keepdim=True)
        else:
            ms = (xf * xf).matmul(self.effective_weights(xf.dtype)).unsqueeze(-1)
        return self.weight * (xf * torch.rsqrt(ms + self.eps)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}, blend={self._blend:.4g}"


def _parent(model: nn.Module, name: str):
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def weighted_layernorms(model: nn.Module) -> list:
    """``(name, module)`` of every weighted norm (LayerNorm or RMSNorm) of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _StatisticsWeights)]


def install(model: nn.Module, weights: dict, blend: float = 0.0) -> None:
    """Turn the LayerNorms (or RMSNorms) named in ``weights`` (module name -> statistics weights)
    into weighted ones that share their parameters (optimizer state and wrappers keep pointing at
    them)."""
    for name, w in weights.items():
        parent, child = _parent(model, name)
        old = getattr(parent, child)
        if isinstance(old, _StatisticsWeights):
            with torch.no_grad():
                old.stat_weights.copy_(w)
            old.set_blend(blend)
            continue
        if is_rmsnorm(old):
            new = WeightedRMSNorm(old.normalized_shape[0], w.to(old.weight.device), eps=old.eps, plain_class=type(old))
            new.weight = old.weight
        elif is_layernorm(old) and old.weight is not None:
            new = WeightedLayerNorm(old.normalized_shape, w.to(old.weight.device), eps=old.eps, plain_class=type(old))
            new.weight, new.bias = old.weight, old.bias
        else:
            raise ValueError(f"'{name}' is a {type(old).__name__}, not a LayerNorm or RMSNorm with a gain: it cannot "
                             "take statistics weights")
        new.stat_blend = new.stat_blend.to(old.weight.device)
        new.set_blend(blend)
        new.train(old.training)
        setattr(parent, child, new)


def restore_standard(model: nn.Module) -> int:
    """Replace every weighted norm by its standard module (the LayerNorm class fairseq built
    there, or RMSNorm), with the same parameters and eps; returns how many were replaced."""
    found = weighted_layernorms(model)
    for name, old in found:
        parent, child = _parent(model, name)
        new = old.plain()
        new.train(old.training)
        setattr(parent, child, new)
    return len(found)


def sync_with_state_dict(model: nn.Module, state_dict) -> None:
    """Make ``model``'s LayerNorms weighted exactly where ``state_dict`` has statistics weights
    (a checkpoint saved while annealing), standard elsewhere."""
    suffix = "." + WEIGHTS
    wanted = {k[:-len(suffix)]: v for k, v in state_dict.items() if k.endswith(suffix)}
    have = {n for n, _ in weighted_layernorms(model)}
    if have - set(wanted):
        restore_standard(model)
    if wanted:
        install(model, {n: torch.as_tensor(v, dtype=torch.float32).cpu() for n, v in wanted.items()})


def anneal(model: nn.Module, update_num: int, total: int) -> tuple:
    """Set the blend for update ``update_num`` (0-based) of an annealing over ``total`` updates:
    ``t = min(1, (update_num + 1) / total)``, so update ``total - 1`` runs standard LayerNorms and
    the checkpoint after ``total`` updates is an ordinary model.  Returns ``(t, replaced)``:
    the blend set, and how many LayerNorms became standard modules at this update (0 before)."""
    found = weighted_layernorms(model)
    if not found:
        return 1.0, 0
    t = 1.0 if total <= 0 else min(1.0, (update_num + 1) / total)
    if t >= 1.0:
        return 1.0, restore_standard(model)
    for _, module in found:
        module.set_blend(t)
    return t, 0
