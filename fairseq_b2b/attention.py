"""Attention patterns of a b2b model on one sentence (the paper's Figures 2 and 10-13)."""
from __future__ import annotations

import torch


@torch.no_grad()
def attention_maps(model, tokens: torch.Tensor) -> list:
    """Per layer, the attention probabilities ``[heads, T, T]`` for a 1-D token tensor.

    The query each self-attention receives is captured with a forward pre-hook, and the
    probabilities are recomputed from its q/k projections (fairseq's layers ask for no weights).
    """
    model.eval()
    owner = model.layer_stack_owner()
    captured = []

    def hook(module, args, kwargs):
        captured.append((module, args, kwargs))

    handles = [layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True) for layer in owner.layers]
    try:
        model(tokens.unsqueeze(0))
    finally:
        for h in handles:
            h.remove()
    maps = []
    for attn, args, kwargs in captured:
        if hasattr(attn, "probabilities"):  # the LLaMA family's attention: args are (x, cos, sin, attn_mask, ...)
            maps.append(attn.probabilities(*args[:3], args[3] if len(args) > 3 else None)[0])
            continue
        query, mask = kwargs.get("query", args[0] if args else None), kwargs.get("attn_mask")
        x = query[:, 0]  # T x C (fairseq layers run time-first)
        T, heads = x.shape[0], attn.num_heads
        q = (attn.q_proj(x) * attn.scaling).view(T, heads, -1).transpose(0, 1)
        k = attn.k_proj(x).view(T, heads, -1).transpose(0, 1)
        scores = q @ k.transpose(1, 2)
        if mask is not None:
            scores = scores + mask.to(scores.dtype)
        maps.append(scores.softmax(-1))
    return maps


def plot_attention_grid(rows: dict, words: list, path: str, layers: list | None = None, heads: int = 4) -> None:
    """One row per model (e.g. source, DirectCopy, FPI, AKI), ``heads`` heads of each chosen layer."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(rows.values()))
    layers = layers or sorted({0, len(first) - 1})
    cols = [(layer, h) for layer in layers for h in range(heads)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.8 * len(cols), 1.9 * len(rows)), squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        for c, (layer, h) in enumerate(cols):
            ax = axes[r][c]
            if layer < len(maps) and h < maps[layer].shape[0]:
                ax.imshow(maps[layer][h].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"L{layer + 1} H{h + 1}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(" ".join(words)[:120], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
