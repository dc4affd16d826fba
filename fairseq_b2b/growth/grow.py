"""bert2BERT growth of a state dict: width (FPI eqs. 5-13, AKI eqs. 14-16), depth
(Algorithm 1), the exact variant, and the DirectCopy baseline.

Everything here maps a source state dict to a target state dict with plain torch; fairseq is
not imported.  The fairseq glue lives in ``fairseq_b2b.growth_hook``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .expand import expand_in, expand_out
from .layout import FFN, HEAD, IN, KV, OUT, RES, FamilyLayout, Param
from .mapping import (copy_counts, exact_stream_mapping, grouped_query_head_mappings, heads_to_neurons, sample_mapping,
                      stream_statistics_weights)

METHODS = ("fpi", "aki", "direct_copy")


class GrowthError(ValueError):
    """A source/target pair that cannot be grown; the message is one line and names the fix."""


@dataclass(frozen=True)
class ModelShape:
    """S(L, D) of the paper, plus the FFN width and the number of heads; grouped-query attention
    (the LLaMA family) also has its key/value heads and an explicit head size."""

    layers: int
    embed_dim: int
    ffn_dim: int
    heads: int
    kv_heads: int | None = None
    head_size: int | None = None

    @property
    def head_dim(self) -> float:
        return self.head_size if self.head_size is not None else self.embed_dim / self.heads

    @property
    def grouped_query(self) -> bool:
        return self.kv_heads is not None

    def __str__(self) -> str:
        gqa = f", kv_heads={self.kv_heads}, head_dim={self.head_dim:g}" if self.grouped_query else ""
        return f"(L={self.layers}, D={self.embed_dim}, FFN={self.ffn_dim}, heads={self.heads}{gqa})"


@dataclass
class GrowthResult:
    state_dict: dict
    maps: dict  # width -> neuron-level mapping used
    layer_order: list  # target layer i was stacked from width-expanded source layer layer_order[i]
    layernorm_eps_scale: float = 1.0  # the standard-LayerNorm exact mode scales LayerNorm's eps by this factor
    notes: list = field(default_factory=list)
    # weighted-statistics LayerNorm: module name (a LayerNorm parameter key without ".weight")
    # -> per-entry statistics weights over the target stream (empty: standard LayerNorms)
    layernorm_weights: dict = field(default_factory=dict)


def check_growable(src: ModelShape, tgt: ModelShape, method: str, exact: bool) -> None:
    """Raise GrowthError (one line) unless ``src`` can grow into ``tgt`` with ``method``."""
    if method not in METHODS:
        raise GrowthError(f"unknown growth method '{method}': choose one of {', '.join(METHODS)}")
    if exact and method != "fpi":
        raise GrowthError(f"--growth-exact applies to the fpi method only, not '{method}' (AKI is not function-preserving by design)")
    for what in ("layers", "embed_dim", "ffn_dim", "heads") + (("kv_heads",) if src.grouped_query else ()):
        if getattr(tgt, what) < getattr(src, what):
            raise GrowthError(
                f"target {what} {getattr(tgt, what)} is smaller than the source's {getattr(src, what)}: "
                f"growth only enlarges; choose a target arch at least as large as the source {src}"
            )
    if src.grouped_query:
        check_grouped_query(src, tgt)
        return
    if src.embed_dim % src.heads or tgt.embed_dim % tgt.heads or src.head_dim != tgt.head_dim:
        raise GrowthError(
            f"head size mismatch: source has {src.embed_dim}/{src.heads}={src.head_dim:g} dims per head, "
            f"target {tgt.embed_dim}/{tgt.heads}={tgt.head_dim:g}; set the target's attention heads to "
            f"embed_dim/{src.head_dim:g}"
        )


def check_grouped_query(src: ModelShape, tgt: ModelShape) -> None:
    """GQA head counts (one-line GrowthError): the head size (and with it rotary) stays the
    source's, key/value heads divide query heads, and every source query head can be copied into
    a target group whose key/value head copies its own (``grouped_query_head_mappings``): the
    target needs kv_heads >= source kv_heads * ceil(source group size / target group size)."""
    if tgt.head_dim != src.head_dim:
        raise GrowthError(f"head size mismatch: the source's heads have {src.head_dim:g} dims, the target's "
                          f"{tgt.head_dim:g}; growth keeps the source's head size and rotary: pass --decoder-head-dim "
                          f"{src.head_dim:g}")
    for shape, what in ((src, "source"), (tgt, "target")):
        if shape.heads % shape.kv_heads:
            raise GrowthError(f"the {what}'s {shape.kv_heads} key/value heads do not divide its {shape.heads} query "
                              "heads: pass a --decoder-kv-heads that divides --decoder-attention-heads")
    group, tgt_group = src.heads // src.kv_heads, tgt.heads // tgt.kv_heads
    needed = src.kv_heads * -(-group // tgt_group)
    if tgt.kv_heads < needed:
        raise GrowthError(
            f"query heads {src.heads} -> {tgt.heads} with key/value heads {src.kv_heads} -> {tgt.kv_heads} allow no "
            f"group-preserving head mapping: the target's groups of {tgt_group} query heads cannot hold the source's "
            f"groups of {group} with {tgt.kv_heads} key/value heads: give the target at least {needed} key/value "
            f"heads (dividing its query heads), e.g. keep the source's {group} query heads per key/value head")


def make_maps(src: ModelShape, tgt: ModelShape, seed: int, exact: bool = False) -> dict:
    """The mapping functions of one growth, at the neuron level, shared by all layers.

    The residual stream has one mapping for all modules (the constraints of eqs. 10-12:
    g_out^e = g_in^{qkv} = g_out^o = g_in^1 = g_out^2); heads and FFN neurons each have one.
    ``exact`` is the standard-LayerNorm exact mode (copies plus mean-filled entries).
    """
    gen = torch.Generator().manual_seed(seed)
    res = exact_stream_mapping(src.embed_dim, tgt.embed_dim) if exact else sample_mapping(src.embed_dim, tgt.embed_dim, gen)
    if src.grouped_query:
        heads, kv_heads = grouped_query_head_mappings(src.heads, src.kv_heads, tgt.heads, tgt.kv_heads, gen)
    else:
        heads = sample_mapping(src.heads, tgt.heads, gen)
    ffn = sample_mapping(src.ffn_dim, tgt.ffn_dim, gen)
    maps = {RES: res, HEAD: heads_to_neurons(heads, int(src.head_dim)), FFN: ffn, "heads": heads}
    if src.grouped_query:
        maps.update({KV: heads_to_neurons(kv_heads, int(src.head_dim)), "kv_heads": kv_heads})
    return maps


def stack_layer_order(src_layers: int, tgt_layers: int) -> list:
    """Algorithm 1: stack T1 floor(Lt/Ls) times, then the top Lt - Ls*floor(Lt/Ls) layers of T1.

    Returns, for every target layer (bottom first), the T1 layer it is a copy of.
    """
    k = tgt_layers // src_layers
    rest = tgt_layers - src_layers * k
    return [i % src_layers for i in range(src_layers * k)] + list(range(src_layers - rest, src_layers))


def widen_tensor(t: torch.Tensor, param: Param, maps: dict, stream_variance_ratio: float = 1.0) -> torch.Tensor:
    """EXPN of one tensor: in-dimension expansion (eq. 7) on every IN axis, then out-dimension
    expansion (eq. 8) on every OUT axis; LayerNorm parameters follow the stream (eq. 13)."""
    out = t
    # Out- and in-dimension expansions act on different axes and commute; the out-dimension
    # (a gather of contiguous rows) goes first because it is the cheaper copy.
    for axis, spec in enumerate(param.axes):
        if spec is not None and spec[1] == OUT:
            out = expand_out(out, axis, maps[spec[0]], mean_fill=param.norm is None)
    for axis, spec in enumerate(param.axes):
        if spec is not None and spec[1] == IN:
            out = expand_in(out, axis, maps[spec[0]])
    if param.norm == "weight" and stream_variance_ratio != 1.0:
        out = out * math.sqrt(stream_variance_ratio)  # exact mode: var of the stream scaled by k*d/D
    if param.feeds_tied_output:
        res = maps[RES]
        counts = copy_counts(res, t.shape[-1])[res.clamp(min=0)]
        out = out / counts.clamp(min=1).to(out.dtype)
    return out


def _out_width(param: Param):
    outs = [(axis, spec[0]) for axis, spec in enumerate(param.axes) if spec is not None and spec[1] == OUT]
    return outs[0] if outs else (None, None)


def widen_layer(layout: FamilyLayout, sd: dict, layer: int, upper: int | None, maps: dict, src_sizes: dict,
                stream_variance_ratio: float = 1.0) -> dict:
    """Width expansion of one source layer, keyed by parameter name.

    With ``upper`` (AKI, eqs. 14-16) the new out-dimension neurons (index >= the source size)
    are taken from the equally in-dim-expanded layer ``upper``; the first ones from ``layer``.
    """
    widened = {}
    for param in layout.layer_params:
        key = layout.layer_key(layer, param.name)
        if key not in sd:
            continue
        t = widen_tensor(sd[key], param, maps, stream_variance_ratio)
        axis, width = _out_width(param)
        if upper is not None and axis is not None:
            d = src_sizes[width]
            from_upper = widen_tensor(sd[layout.layer_key(upper, param.name)], param, maps, stream_variance_ratio)
            t.narrow(axis, d, t.shape[axis] - d).copy_(from_upper.narrow(axis, d, t.shape[axis] - d))
        widened[param.name] = t
    return widened


CARRIED_BUFFERS = ("version",)  # fairseq's state-dict version buffers: not learned, carried over unchanged


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape


def untied_outputs(layout: FamilyLayout, sd: dict) -> list:
    """The output projections of ``sd`` that are trained apart from the input embedding they
    alias in a tied model (roberta --untie-weights-roberta, a transformer_lm without
    --share-decoder-input-output-embed)."""
    return [alias for alias, original in layout.tied.items() if alias in sd and original in sd
            and not _shares_storage(sd[alias], sd[original]) and not torch.equal(sd[alias], sd[original])]


def _global_params(layout: FamilyLayout, untied: list) -> list:
    """The layout's global Params; an untied output projection reads the stream, an
    in-dimension (eq. 7), and the LayerNorm before it is then widened like any other (eq. 13)."""
    params = []
    for param in layout.globals:
        if param.name in untied:
            param = Param(param.name, (None, (RES, IN)))
        elif param.feeds_tied_output and untied:
            param = dataclasses.replace(param, feeds_tied_output=False)
        params.append(param)
    return params


def _unknown_layer_keys(layout: FamilyLayout, sd: dict) -> list:
    known = {p.name for p in layout.layer_params}
    prefix = layout.layer_prefix
    return [k for k in sd if k.startswith(prefix) and k[len(prefix):].split(".", 1)[1] not in known]


def grow_state_dict(
    source: dict,
    layout: FamilyLayout,
    src: ModelShape,
    tgt: ModelShape,
    method: str = "aki",
    exact: bool = False,
    seed: int = 1,
    target_init: dict | None = None,
    weighted_layernorm: bool | None = None,
) -> GrowthResult:
    """Grow ``source`` (shape ``src``) into a state dict of shape ``tgt``.

    ``method``: ``fpi`` (function-preserving, section 3.3.1), ``aki`` (section 3.3.2; the top
    layer has no upper layer and uses itself, i.e. FPI) or ``direct_copy`` (the source is
    copied into the top-left corner of ``target_init`` and its bottom ``Ls`` layers; the rest
    keeps the target's own initialisation).  Depth follows Algorithm 1 for fpi/aki.
    ``exact`` (fpi only) keeps the function at any width ratio.  With ``weighted_layernorm``
    (the default for ``exact``) the mapping is the paper's and every LayerNorm of the target gets
    the statistics weights ``1/(C_g(g(j)) * Ds)`` (``result.layernorm_weights``): its mean and
    variance are the source's, so every LayerNorm output is a copy of the source's and eqs. 7-13
    carry it through, for post-LN and pre-LN alike.  With ``weighted_layernorm=False`` the exact
    mode keeps standard LayerNorms: the stream is ``k`` full copies plus entries equal to its mean,
    LayerNorm gains and eps are rescaled (exact for pre-LN at any ratio, post-LN at integer ratios).
    ``weighted_layernorm`` with ``aki`` gives AKI the same weights (the source's statistics at
    the embedding LayerNorm; AKI is not function-preserving by design).
    """
    described = {p.name for p in layout.globals}
    unknown = _unknown_layer_keys(layout, source) or [
        k for k, v in source.items() if not layout.is_layer_key(k) and k not in described and torch.is_tensor(v)
        and v.is_floating_point() and k.rsplit(".", 1)[-1] not in CARRIED_BUFFERS]
    if unknown:
        raise GrowthError(f"source parameter '{unknown[0]}' is not part of the {layout.family} layout: the source arch is "
                          "not supported (e.g. a pre-LN roberta's final layer_norm, a transformer_lm with "
                          "--decoder-input-dim != --decoder-embed-dim, or adaptive/sinusoidal embeddings)")
    check_growable(src, tgt, method, exact)
    untied = untied_outputs(layout, source)
    if target_init is not None:
        untied_in_target = [a for a, o in layout.tied.items() if a in target_init and a not in source and o in source]
        if untied_in_target:  # a tied b2b_llama keeps no output projection key; an untied target has its own
            raise GrowthError(f"the source ties its output projection to '{layout.tied[untied_in_target[0]]}' but the "
                              f"target arch has its own '{untied_in_target[0]}': build the target tied too "
                              "(--share-decoder-input-output-embed)")
        tied_in_target = [a for a in untied if a in target_init and _shares_storage(target_init[a], target_init[layout.tied[a]])]
        if tied_in_target:
            raise GrowthError(f"the source's output projection '{tied_in_target[0]}' is trained apart from (untied) "
                              f"'{layout.tied[tied_in_target[0]]}' but the target ties them, which would drop one of the "
                              f"two: {layout.untie_hint}")
    weighted = exact if weighted_layernorm is None else bool(weighted_layernorm)
    if weighted and method == "direct_copy":
        raise GrowthError("the weighted-statistics LayerNorm needs a copy mapping: use it with fpi or aki, not direct_copy")
    if method == "direct_copy":
        if target_init is None:
            raise GrowthError("direct_copy needs the target's own initial state dict (target_init)")
        return _direct_copy(source, layout, src, tgt, target_init)

    mean_filled = exact and not weighted  # the standard-LayerNorm exact mode
    if mean_filled and layout.norm == "rmsnorm" and tgt.embed_dim != src.embed_dim:
        raise GrowthError(f"the exact mode of a {layout.family.upper()}-family model needs the weighted-statistics "
                          "RMSNorm (RMSNorm has no mean to fill the stream with): train the grown model with --task "
                          "b2b_language_modeling and --growth-anneal-updates > 0, or use b2b-grow --exact")
    maps = make_maps(src, tgt, seed, mean_filled)
    ratio = (tgt.embed_dim // src.embed_dim) * src.embed_dim / tgt.embed_dim if mean_filled else 1.0
    src_sizes = {RES: src.embed_dim, HEAD: src.heads * int(src.head_dim), FFN: src.ffn_dim}
    if src.grouped_query:
        src_sizes[KV] = src.kv_heads * int(src.head_dim)
    order = stack_layer_order(src.layers, tgt.layers)

    out = {}
    for param in _global_params(layout, untied):
        if param.name in source and (param.name not in layout.tied or param.name in untied):
            out[param.name] = widen_tensor(source[param.name], param, maps, ratio)
    for alias, original in layout.tied.items():
        if alias in source and original in out and alias not in untied:
            out[alias] = out[original]
    widened = {}
    for i, j in enumerate(order):
        if j not in widened:
            upper = (j + 1 if j + 1 < src.layers else j) if method == "aki" else None
            widened[j] = widen_layer(layout, source, j, upper, maps, src_sizes, ratio)
        for name, t in widened[j].items():
            # the first use of a T1 layer keeps its tensors; later copies get their own storage
            out[layout.layer_key(i, name)] = t if order.index(j) == i else t.clone()
    for key, value in source.items():
        if key not in out and key not in described and not layout.is_layer_key(key):
            out[key] = value  # buffers such as "version": carried over unchanged
    result = GrowthResult(out, maps, order, layernorm_eps_scale=ratio)
    if weighted:
        w = stream_statistics_weights(maps[RES], src.embed_dim)
        result.layernorm_weights = {key[:-len(".weight")]: w for key in _layernorm_weight_keys(layout, out)}
    result.notes.extend(_not_exact_notes(layout, source, src, tgt, method, exact, weighted))
    if target_init is not None:
        check_matches_target(out, target_init)
    return result


def _layernorm_weight_keys(layout: FamilyLayout, grown: dict) -> list:
    """The gain keys of every LayerNorm (eq. 13) in a grown state dict."""
    norms = {p.name for p in layout.globals if p.norm == "weight"}
    layer_norms = {p.name for p in layout.layer_params if p.norm == "weight"}
    return [k for k in grown if k in norms or (
        layout.is_layer_key(k) and k[len(layout.layer_prefix):].split(".", 1)[1] in layer_norms)]


def _not_exact_notes(layout, source, src, tgt, method, exact, weighted) -> list:
    """Every case in which a growth asked to be exact does not keep the source function (the
    growth log and report name them)."""
    if not exact:
        return []
    notes, ratio = [], f"{tgt.embed_dim}/{src.embed_dim}"
    if tgt.layers != src.layers:
        notes.append(f"exact mode with depth growth ({src.layers} -> {tgt.layers} layers): the width expansion is exact, "
                     "the stacked layers (Algorithm 1) change the function by design")
    if not weighted and tgt.embed_dim % src.embed_dim:
        if not layout.pre_ln:
            notes.append(f"standard-LayerNorm exact mode on a post-LN model at the non-integer width ratio {ratio}: "
                         "after a LayerNorm the mean-filled entries are constants, not the mean; not exact "
                         "(use the weighted-statistics LayerNorm, --growth-anneal-updates > 0)")
        norm_embed = [p.name for p in layout.globals if p.norm == "weight" and "embedding" in p.name]
        if layout.pre_ln and any(k in source for k in norm_embed):
            notes.append(f"standard-LayerNorm exact mode on a pre-LN model with an embedding LayerNorm at the "
                         f"non-integer width ratio {ratio}: its extra entries become 0, not the stream's mean; not exact "
                         "(use the weighted-statistics LayerNorm, --growth-anneal-updates > 0)")
    return notes


def _direct_copy(source, layout, src, tgt, target_init) -> GrowthResult:
    """DirectCopy (Table 1): the source fills the top-left corner of every matching tensor of
    the target's own initialisation, layer i from source layer i for i < Ls."""
    out = {k: v.clone() for k, v in target_init.items()}
    tied_in_target = {a for a, o in layout.tied.items() if a in target_init and o in target_init
                      and _shares_storage(target_init[a], target_init[o])}
    for key, value in source.items():
        if layout.is_layer_key(key) and int(key[len(layout.layer_prefix):].split(".")[0]) >= tgt.layers:
            continue
        if key in tied_in_target or key not in out:
            continue
        target = out[key]
        if target.dim() != value.dim() or any(a > b for a, b in zip(value.shape, target.shape)):
            raise GrowthError(f"'{key}' is {tuple(value.shape)} in the source but {tuple(target.shape)} in the target: "
                              "source and target must share the dictionary and max positions (--max-positions)")
        target[tuple(slice(0, n) for n in value.shape)] = value
    for alias, original in layout.tied.items():
        if alias in tied_in_target and original in out:
            out[alias] = out[original]
    check_matches_target(out, target_init)
    return GrowthResult(out, {}, list(range(src.layers)), notes=["direct_copy: layers >= Ls keep the target's init"])


def check_matches_target(grown: dict, target_init: dict) -> None:
    """The grown state dict must have exactly the target model's keys and shapes."""
    missing = [k for k in target_init if k not in grown]
    if missing:
        raise GrowthError(f"the grown model lacks '{missing[0]}' that the target arch has: source and target archs differ in structure")
    extra = [k for k in grown if k not in target_init]
    if extra:
        raise GrowthError(f"the source's '{extra[0]}' has no place in the target arch: source and target archs differ in "
                          "structure")
    for key, value in grown.items():
        if key in target_init and tuple(target_init[key].shape) != tuple(value.shape):
            raise GrowthError(
                f"'{key}' grew to {tuple(value.shape)} but the target arch has {tuple(target_init[key].shape)}: "
                "check that source and target use the same dictionary and max positions"
            )


def infer_shape(state_dict: dict, layout: FamilyLayout, heads: int) -> ModelShape:
    """ModelShape of a state dict (the query head count is not visible in the weights; with
    grouped-query attention the head size and key/value heads follow from it)."""
    layers = layout.num_layers(state_dict)
    embed_dim = state_dict[layout.embed_tokens].shape[1]
    ffn = state_dict[layout.layer_key(0, layout.ffn_in_key)].shape[0] if layers else 4 * embed_dim
    if not (layout.grouped_query and layers):
        return ModelShape(layers, embed_dim, ffn, heads)
    q_rows = state_dict[layout.layer_key(0, "self_attn.q_proj.weight")].shape[0]
    kv_rows = state_dict[layout.layer_key(0, "self_attn.k_proj.weight")].shape[0]
    if q_rows % heads or kv_rows % (q_rows // heads):
        raise GrowthError(f"the q/k projections ({q_rows}/{kv_rows} rows) do not fit {heads} query heads: the recorded "
                          "head count does not match the weights")
    head_size = q_rows // heads
    return ModelShape(layers, embed_dim, ffn, heads, kv_heads=kv_rows // head_size, head_size=head_size)
