"""Index mapping functions g_in / g_out of bert2BERT (eqs. 5, 6 and 11).

A mapping is a 1-D LongTensor ``g`` of the target size: target index ``j`` reuses source index
``g[j]``.  The value ``-1`` marks an entry that is not a copy but the *mean* of the source entries
(used only by the exact mode for the residual stream, see ``exact_stream_mapping``).
"""
from __future__ import annotations

import torch

MEAN = -1  # marker: "fill with the mean of the source entries" (exact mode only)


def sample_mapping(d_src: int, d_tgt: int, generator: torch.Generator) -> torch.Tensor:
    """Eqs. 5-6: identity on the first ``d_src`` entries, the new ones sampled uniformly.

    The new indices are drawn uniformly *without replacement, in rounds* (a fresh random
    permutation of the source indices each round).  Every new index is still uniform over the
    source, and at an integer ratio every source neuron is copied equally often, which keeps
    LayerNorm statistics unchanged (so FPI is exact there).
    """
    if d_tgt < d_src:
        raise ValueError(f"cannot map {d_src} source entries onto fewer ({d_tgt}) target entries")
    extra = d_tgt - d_src
    rounds = [torch.randperm(d_src, generator=generator) for _ in range(-(-extra // d_src))] if extra else []
    new = torch.cat(rounds)[:extra] if rounds else torch.empty(0, dtype=torch.long)
    return torch.cat([torch.arange(d_src), new])


def exact_stream_mapping(d_src: int, d_tgt: int) -> torch.Tensor:
    """Residual-stream mapping of the exact mode: ``k = d_tgt // d_src`` full copies, then
    ``d_tgt - k * d_src`` entries that hold the mean of the stream (marked ``MEAN``)."""
    k = d_tgt // d_src
    return torch.cat([torch.arange(d_src).repeat(k), torch.full((d_tgt - k * d_src,), MEAN)])


def copy_counts(mapping: torch.Tensor, d_src: int) -> torch.Tensor:
    """C_g(i) of eq. 7: how often source index ``i`` appears in ``mapping``."""
    return torch.bincount(mapping[mapping >= 0], minlength=d_src)


def stream_statistics_weights(mapping: torch.Tensor, d_src: int) -> torch.Tensor:
    """Per-entry weights of the weighted-statistics LayerNorm of an exactly grown model.

    ``w_j = 1 / (C_g(g(j)) * d_src)`` with C_g the copy counts of eq. 7: the ``C_g(i)`` copies of
    source entry ``i`` share the weight ``1/d_src`` that entry ``i`` has in the source's
    LayerNorm, so ``sum_j w_j f(x_g(j)) = mean_i f(x_i)`` for any ``f``: the grown stream has the
    source's mean and variance at any width ratio.  The weights sum to 1.
    """
    if (mapping < 0).any():
        raise ValueError("statistics weights need a copy mapping (no MEAN entries)")
    counts = copy_counts(mapping, d_src).to(torch.float64)
    return (1.0 / (counts[mapping] * d_src)).to(torch.float32)


def heads_to_neurons(head_mapping: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Head-wise expansion (eq. 11): a mapping over heads becomes one over their neurons, so
    that whole heads are copied and the head size stays fixed."""
    return (head_mapping[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def grouped_query_head_mappings(src_heads: int, src_kv: int, tgt_heads: int, tgt_kv: int,
                                generator: torch.Generator) -> tuple:
    """Head mappings (eq. 11) of grouped-query attention: ``(query map, key/value map)``.

    Key/value heads get their own mapping (eqs. 5-6).  Query head ``h`` belongs to group
    ``h // (heads / kv_heads)`` (fairseq and HuggingFace order).  Each target query head copies a
    query head of the source group whose key/value head its own group copies, so every grown head
    attends exactly as its source head does; the first query slots of each source group take its
    heads in order (identity when the group size is unchanged), the others are drawn uniformly in
    rounds.  Raises ValueError when some source query head would not be copied at all (the
    caller checks the counts first, see ``growth.grow.check_growable``).
    """
    kv = sample_mapping(src_kv, tgt_kv, generator)
    group, tgt_group = src_heads // src_kv, tgt_heads // tgt_kv
    slots = [[] for _ in range(src_kv)]
    for j in range(tgt_kv):
        slots[int(kv[j])].extend(range(j * tgt_group, (j + 1) * tgt_group))
    query = torch.empty(tgt_heads, dtype=torch.long)
    for i, targets in enumerate(slots):
        if len(targets) < group:
            raise ValueError(f"source key/value head {i} is copied into {len(targets)} query slots, fewer than its "
                             f"{group} query heads")
        members = torch.arange(i * group, (i + 1) * group)
        query[targets[:group]] = members
        extra = len(targets) - group
        if extra:
            rounds = torch.cat([torch.randperm(group, generator=generator) for _ in range(-(-extra // group))])
            query[targets[group:]] = members[rounds[:extra]]
    return query, kv
