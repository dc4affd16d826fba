"""b2b_llama's forward: causal, GQA as explicitly repeated key/value heads, rotary in HuggingFace's
convention (equal to transformers' LlamaForCausalLM on the same weights), tied output, padding
and incremental decoding, FLOPs metered."""
import pytest
import torch
import torch.nn.functional as F

from llama_helpers import build_llama, randomize_norms, tokens
from fairseq_b2b.models.rotary import apply_rotary, rotary_cos_sin


def test_state_dict_keys_and_shapes():
    model = build_llama("b2b_llama_tiny")  # 2 layers, D 64, Hq 4, Hkv 2, hd 16, F 176, tied
    sd = model.state_dict()
    assert tuple(sd["decoder.layers.1.self_attn.q_proj.weight"].shape) == (64, 64)
    assert tuple(sd["decoder.layers.1.self_attn.k_proj.weight"].shape) == (32, 64)
    assert tuple(sd["decoder.layers.1.self_attn.o_proj.weight"].shape) == (64, 64)
    assert tuple(sd["decoder.layers.0.ffn.down_proj.weight"].shape) == (64, 176)
    assert "decoder.output_projection.weight" not in sd  # tied: one matrix
    assert not any(k.endswith(".bias") for k in sd)
    untied = build_llama("b2b_llama_tiny", share_decoder_input_output_embed=False).state_dict()
    assert tuple(untied["decoder.output_projection.weight"].shape) == (40, 64)


def test_tied_model_round_trips_its_state_dict():
    a, b = build_llama(seed=0), build_llama(seed=1)
    b.load_state_dict(a.state_dict())
    assert b.decoder.output_projection.weight is b.decoder.embed_tokens.weight
    x = tokens()
    assert torch.equal(a(x)[0], b(x)[0])
    untied = build_llama(share_decoder_input_output_embed=False).state_dict()
    with pytest.raises(RuntimeError, match="untied output projection"):
        build_llama().load_state_dict(untied)


def test_causal():
    model = build_llama()
    x = tokens(2, 10)
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1 - 4) % 36 + 4
    with torch.no_grad():
        a, b = model(x)[0], model(y)[0]
    assert torch.equal(a[:, :6], b[:, :6])
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3


def _explicit_attention(attn, x, cos, sin):
    """Every query head h attends with key/value head h // (Hq/Hkv), written out head by head."""
    b, t, _ = x.shape
    hd, group = attn.head_dim, attn.heads // attn.kv_heads
    q = attn.q_proj(x).view(b, t, attn.heads, hd).transpose(1, 2)
    k = attn.k_proj(x).view(b, t, attn.kv_heads, hd).transpose(1, 2)
    v = attn.v_proj(x).view(b, t, attn.kv_heads, hd).transpose(1, 2)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    heads = []
    for h in range(attn.heads):
        scores = q[:, h] @ k[:, h // group].transpose(-1, -2) / hd ** 0.5
        heads.append(scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v[:, h // group])
    return attn.o_proj(torch.stack(heads, 1).transpose(1, 2).reshape(b, t, -1))


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_gqa_equals_explicitly_repeated_key_value_heads(kv_heads):
    model = build_llama(decoder_kv_heads=kv_heads)
    attn = model.decoder.layers[0].self_attn
    x = torch.randn(2, 9, 64)
    cos, sin = rotary_cos_sin(torch.arange(9).expand(2, 9), 16, 10000.0, x.dtype)
    with torch.no_grad():
        got, want = attn(x, cos, sin), _explicit_attention(attn, x, cos, sin)
    assert (got - want).abs().max() < 1e-5


def test_right_padding_leaves_real_tokens_alone_and_left_padding_shifts_positions():
    model = build_llama()
    pad = model.decoder.padding_idx
    x = tokens(1, 8)
    with torch.no_grad():
        plain = model(x)[0]
        right = model(torch.cat([x, torch.full((1, 3), pad)], 1))[0]
        left = model(torch.cat([torch.full((1, 3), pad), x], 1))[0]
    assert (right[:, :8] - plain).abs().max() < 1e-5
    assert (left[:, 3:] - plain).abs().max() < 1e-5  # positions count real tokens only
    assert torch.isfinite(left).all()


def test_incremental_decoding_equals_the_full_forward():
    model = build_llama(decoder_layers=3)
    x = tokens(2, 7)
    with torch.no_grad():
        full = model(x)[0]
        state, steps = {}, []
        for t in range(1, 8):
            steps.append(model(x[:, :t], incremental_state=state)[0])
        order = torch.tensor([1, 0])
        model.decoder.reorder_incremental_state_scripting(state, order)
        again = model(torch.cat([x[order], x[order][:, :1]], 1), incremental_state=state)[0]
        reference = model(torch.cat([x[order], x[order][:, :1]], 1))[0]
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-5
    assert (again[:, -1] - reference[:, -1]).abs().max() < 1e-5


def test_flops_of_a_llama_layer():
    from fairseq_b2b.flops import FlopsModel

    flops = FlopsModel.from_model(build_llama())
    d, a, kv, f, v = 64, 64, 32, 176, 40
    assert flops.layers[0].per_token == 2 * (2 * d * a + 2 * d * kv + 3 * d * f)
    assert flops.layers[0].per_square == 4 * a
    assert flops.head_per_position == 2 * d * v


def test_equals_huggingface_llama_on_the_same_weights():
    """Key-by-key mapping with no permutation: rotate_half rotary, GQA grouping, SwiGLU, RMSNorm."""
    transformers = pytest.importorskip("transformers")
    model = build_llama(decoder_kv_heads=2, rope_theta=50000.0, rms_norm_eps=1e-6)
    randomize_norms(model)
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6,
                                   rope_theta=50000.0, tie_word_embeddings=True, max_position_embeddings=64,
                                   attention_bias=False, mlp_bias=False)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    sd = {k.replace("decoder.", "model.", 1).replace("attn_norm", "input_layernorm")
          .replace("ffn_norm", "post_attention_layernorm").replace(".ffn.", ".mlp."): v
          for k, v in model.state_dict().items()}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not missing and not unexpected
    x = tokens(2, 16)
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(input_ids=x).logits
    assert (ours - theirs).abs().max() < 1e-5  # measured 0.0 (transformers 5.23, CPU, fp32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward_keeps_norm_statistics_in_fp32(dtype):
    model = build_llama()
    randomize_norms(model)
    x = tokens(2, 12)
    with torch.no_grad():
        reference = model(x)[0]
        half = model.to(dtype)(x)[0]
    assert half.dtype == dtype and torch.isfinite(half).all()
    assert (half.float() - reference).abs().max() < 0.05
