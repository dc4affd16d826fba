"""Pieces shared by the BERT and GPT families: growth options, LayerNorm eps, sub-models."""
from __future__ import annotations

import contextlib
import hashlib

import torch
from torch import nn

from ..growth import METHODS
from ..growth_hook import maybe_grow


def add_growth_args(parser):
    """Options of ``--init-from-small`` (grow a trained small model when the model is built)."""
    group = parser.add_argument_group("bert2BERT growth")
    group.add_argument("--init-from-small", metavar="PATH", default=None,
                       help="grow this trained small checkpoint into the new model when training starts fresh")
    group.add_argument("--growth-method", choices=METHODS, default="aki",
                       help="width expansion: fpi (function-preserving), aki (advanced knowledge init, the paper's default) "
                            "or direct_copy (baseline)")
    group.add_argument("--growth-exact", action="store_true", default=False,
                       help="fpi only: function-preserving at any width ratio, both families: LayerNorms weigh the "
                            "grown stream's entries by 1/copy count (annealed to standard over the task's "
                            "--growth-anneal-updates; with 0, or a task without annealing, the standard-LayerNorm "
                            "exact mode: mean-filled entries, exact for pre-LN or integer ratios; see README)")
    group.add_argument("--growth-weighted-layernorm", action="store_true", default=False,
                       help="give the grown model the weighted-statistics LayerNorms of --growth-exact (annealed the "
                            "same way) with --growth-method aki too, so that its LayerNorms start from the source's "
                            "statistics (default off; implied by --growth-exact)")
    group.add_argument("--growth-seed", type=int, default=1, help="seed of the mapping functions g_in/g_out")
    group.add_argument("--layernorm-eps", type=float, default=None,
                       help="epsilon of every LayerNorm (default 1e-5, or the source's when growing; the exact "
                            "growth mode rescales it)")


def register_shapes(model_name: str, side: str, archs: dict, base_architecture) -> None:
    """Register ``{arch name: (layers, embed dim, heads)}`` as fairseq architectures of
    ``model_name``; FFN is 4x the embed dim; options the user gave win (``side``: encoder or
    decoder)."""
    from fairseq.models import register_model_architecture

    def shape_fn(layers, dim, heads):
        def set_shape(args):
            setattr(args, f"{side}_layers", getattr(args, f"{side}_layers", layers))
            setattr(args, f"{side}_embed_dim", getattr(args, f"{side}_embed_dim", dim))
            setattr(args, f"{side}_attention_heads", getattr(args, f"{side}_attention_heads", heads))
            setattr(args, f"{side}_ffn_embed_dim", getattr(args, f"{side}_ffn_embed_dim", 4 * getattr(args, f"{side}_embed_dim")))
            base_architecture(args)
        return set_shape

    for name, shape in archs.items():
        register_model_architecture(model_name, name)(shape_fn(*shape))


def finish_build(model, args, task):
    """What every b2b model does once fairseq has built it: record the dictionary, set the
    LayerNorm eps, and grow from ``--init-from-small`` (which may inherit the source's eps)."""
    args.b2b_dictionary_checksum = dictionary_checksum(task.source_dictionary)
    inherit_eps = getattr(args, "layernorm_eps", None) is None
    if inherit_eps:
        args.layernorm_eps = 1e-5
    maybe_grow(model, model.family, args, task, inherit_eps=inherit_eps)
    set_layernorm_eps(model, args.layernorm_eps)  # the growth may have changed it (inherited, exact mode)
    return model


def set_layernorm_eps(model: nn.Module, eps: float) -> None:
    """The eps of every LayerNorm, of any class fairseq builds (nn.LayerNorm, apex's FusedLayerNorm)."""
    from .weighted_layernorm import is_layernorm

    for module in model.modules():
        if is_layernorm(module):
            module.eps = eps


class WeightedLayerNormMixin:
    """A ``b2b_`` model loads state dicts saved while its LayerNorms anneal (exact growth): the
    LayerNorms with statistics weights in the state dict become weighted ones first."""

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        from .weighted_layernorm import sync_with_state_dict

        sync_with_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def install_layernorm_weights(self, weights: dict) -> None:
        """Exact growth (``growth_hook.grow_into``): the LayerNorms named in ``weights`` (module name
        -> statistics weights) become weighted-statistics ones."""
        from .weighted_layernorm import install

        install(self, weights)


def dictionary_checksum(dictionary) -> str:
    """A short fingerprint of a fairseq dictionary's symbols, kept in the model args so that
    growth can refuse a source trained with another dictionary."""
    return hashlib.sha1("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()[:16]


class _NoGrad(nn.Module):
    """Runs a layer without autograd: no activations kept and no backward (stage 1)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.layer(*args, **kwargs)


class SubmodelMixin:
    """Sub-models of Algorithm 2 and of the training schedules (StackBERT, MSLT,
    share-then-unshare): the bottom ``depth`` layers and the shared LM head.

    Subclasses say where their layer stack lives: ``layer_stack_owner()`` returns the
    module whose ``layers`` ModuleList holds the Transformer layers.
    """

    @property
    def depth(self) -> int:
        return len(self.layer_stack_owner().layers)

    @contextlib.contextmanager
    def submodel(self, depth: int, trainable_from: int):
        """Within the block the model is its bottom ``depth`` layers; the layers below
        ``trainable_from`` run without autograd (Algorithm 2, lines 5-7)."""
        owner = self.layer_stack_owner()
        full = owner.layers
        if not 0 <= trainable_from <= depth <= len(full):
            raise ValueError(f"sub-model of depth {depth} training from layer {trainable_from} does not fit {len(full)} layers")
        active = [_NoGrad(layer) if i < trainable_from else layer for i, layer in enumerate(full[:depth])]
        owner.layers = nn.ModuleList(active)
        try:
            yield self
        finally:
            owner.layers = full

    @contextlib.contextmanager
    def shared_layers(self, depth: int | None = None):
        """Within the block every one of the bottom ``depth`` (default: all) layer positions runs
        layer 0's module: one set of weights, whose gradient accumulates over all applications
        (share-then-unshare). The other layers' parameters take no part."""
        owner = self.layer_stack_owner()
        full = owner.layers
        depth = len(full) if depth is None else depth
        if not 1 <= depth <= len(full):
            raise ValueError(f"{depth} shared layers do not fit {len(full)} layers")
        owner.layers = nn.ModuleList([full[0]] * depth)
        try:
            yield self
        finally:
            owner.layers = full
