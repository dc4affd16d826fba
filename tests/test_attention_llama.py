"""The attention picture of the LLaMA family (b2b-experiment's report, Figure 2 in miniature):
the probabilities attention_maps returns are the ones the grouped-query attention applies."""
import torch

from llama_helpers import build_llama, tokens

from fairseq_b2b.attention import attention_maps
from fairseq_b2b.models.llama_layers import repeat_kv


def test_llama_attention_maps_are_what_each_layer_applies():
    model = build_llama(decoder_kv_heads=2)  # 4 query heads in 2 groups
    seq = tokens(1, 12)[0]
    maps = attention_maps(model, seq)
    assert len(maps) == len(model.decoder.layers)
    inputs = []
    handles = [layer.self_attn.register_forward_hook(lambda m, a, out: inputs.append((a, out)))
               for layer in model.decoder.layers]
    with torch.no_grad():
        model(seq.unsqueeze(0))
    for h in handles:
        h.remove()
    for probs, ((x, cos, sin, *_), out), layer in zip(maps, inputs, model.decoder.layers):
        attn = layer.self_attn
        assert probs.shape == (4, 12, 12)
        assert torch.allclose(probs.sum(-1), torch.ones(4, 12), atol=1e-6)
        assert probs.triu(1).abs().max() == 0  # causal
        v = attn.v_proj(x).view(1, 12, attn.kv_heads, attn.head_dim).transpose(1, 2)
        mixed = probs.unsqueeze(0) @ repeat_kv(v, attn.heads // attn.kv_heads)
        again = attn.o_proj(mixed.transpose(1, 2).reshape(1, 12, -1))
        assert (again - out).abs().max() < 1e-5
