"""Growth of the LLaMA family (pure torch, tiny random models): exact mode with the weighted
RMSNorm, paper FPI beside it, grouped-query head mappings (and the naive one that breaks the
function), AKI, depth (Algorithm 1), DirectCopy, refused head counts."""
import pytest
import torch

from llama_helpers import build_llama, randomize_norms, tokens
from fairseq_b2b.growth import LLAMA, GrowthError, ModelShape, grow_state_dict, infer_shape
from fairseq_b2b.growth import grow as grow_module
from fairseq_b2b.growth.layout import detect_family
from fairseq_b2b.models.weighted_layernorm import install, weighted_layernorms

SOURCE = dict(decoder_embed_dim=64, decoder_attention_heads=4, decoder_kv_heads=2, decoder_ffn_embed_dim=176)
WIDE = dict(decoder_embed_dim=96, decoder_attention_heads=6, decoder_kv_heads=3, decoder_ffn_embed_dim=256)


def shape_of(model):
    return infer_shape(model.state_dict(), LLAMA, model.decoder.layers[0].self_attn.heads)


def grow(source, target_kwargs, method="fpi", exact=False, seed=1, layers=None):
    """Grow ``source`` into a fresh b2b_llama of ``target_kwargs``; returns (target model, result)."""
    target = build_llama(seed=7, decoder_layers=layers or len(source.decoder.layers), **target_kwargs)
    result = grow_state_dict(source.state_dict(), LLAMA, shape_of(source), shape_of(target), method=method,
                             exact=exact, seed=seed, target_init=target.state_dict())
    target.load_state_dict(result.state_dict)
    install(target, result.layernorm_weights)
    return target.eval(), result


def max_logit_diff(a, b, dtype=torch.float32, x=None):
    x = tokens(3, 16) if x is None else x
    with torch.no_grad():
        return float((a.to(dtype)(x)[0] - b.to(dtype)(x)[0]).abs().max())


def source_model(seed=0, **kwargs):
    model = build_llama(seed=seed, **{**SOURCE, **kwargs})
    randomize_norms(model, seed + 1)
    return model


def test_layout_is_detected_and_shape_inferred():
    model = source_model()
    assert detect_family(model.state_dict()) is LLAMA
    assert shape_of(model) == ModelShape(2, 64, 176, 4, kv_heads=2, head_size=16)


@pytest.mark.parametrize("tied", [True, False])
def test_exact_width_growth_keeps_the_logits_and_paper_fpi_does_not(tied, capsys):
    source = source_model(share_decoder_input_output_embed=tied)
    wide = dict(WIDE, share_decoder_input_output_embed=tied)
    exact, result = grow(source, wide, exact=True)
    assert len(weighted_layernorms(exact)) == 2 * 2 + 1 and result.layernorm_weights
    paper, _ = grow(source, wide, exact=False)
    exact_diff, paper_diff = max_logit_diff(source, exact), max_logit_diff(source, paper)
    exact64, _ = grow(source, wide, exact=True)
    fp64_diff = max_logit_diff(source, exact64, torch.float64)
    with capsys.disabled():
        print(f"\n[llama 64->96, Hq 4->6, Hkv 2->3, tied={tied}] exact max|dlogit| {exact_diff:.2e} (fp64 {fp64_diff:.1e})"
              f"  paper FPI {paper_diff:.3f}")
    assert exact_diff < 1e-4 and fp64_diff < 1e-10
    assert paper_diff > 1e-2  # the RMSNorm statistics of the grown stream differ from the source's


@pytest.mark.parametrize("src_heads,src_kv,tgt_heads,tgt_kv,head_dim", [
    (9, 3, 12, 4, 8),   # SmolLM2-135M's head counts 9/3 -> 12/4 at head size 8
    (4, 2, 8, 2, 16),   # group size 2 -> 4
    (8, 2, 12, 6, 8),   # group size 4 -> 2: each source group spread over two target groups
])
def test_exact_growth_with_grouped_query_head_counts(src_heads, src_kv, tgt_heads, tgt_kv, head_dim):
    source = source_model(decoder_embed_dim=src_heads * head_dim, decoder_attention_heads=src_heads,
                          decoder_kv_heads=src_kv, decoder_head_dim=head_dim)
    target_kwargs = dict(decoder_embed_dim=tgt_heads * head_dim, decoder_attention_heads=tgt_heads,
                         decoder_kv_heads=tgt_kv, decoder_head_dim=head_dim, decoder_ffn_embed_dim=256)
    grown, result = grow(source, target_kwargs, exact=True)
    q, kv = result.maps["heads"], result.maps["kv_heads"]
    g, tg = src_heads // src_kv, tgt_heads // tgt_kv
    assert all(int(q[h]) // g == int(kv[h // tg]) for h in range(tgt_heads))  # every head keeps its kv head
    assert sorted(set(q.tolist())) == list(range(src_heads))  # every source head is copied
    assert max_logit_diff(source, grown) < 1e-4


def naive_query_mapping(src_heads, src_kv, tgt_heads, tgt_kv, generator):
    """HyperCloning's bug: query heads copied without their groups (here: the new query heads copy
    source heads 2 and 3, of group 1, into target group 2, whose key/value head copies head 0)."""
    return torch.tensor([0, 1, 2, 3, 2, 3]), torch.tensor([0, 1, 0])


def test_naive_query_copies_change_the_function_and_ours_do_not(monkeypatch, capsys):
    source = source_model()
    ours, result = grow(source, WIDE, exact=True)
    with monkeypatch.context() as m:
        m.setattr(grow_module, "grouped_query_head_mappings", naive_query_mapping)
        naive, naive_result = grow(source, WIDE, exact=True)
    assert naive_result.maps["kv_heads"].tolist() == [0, 1, 0]
    ours_diff, naive_diff = max_logit_diff(source, ours), max_logit_diff(source, naive)
    with capsys.disabled():
        print(f"\n[GQA 4/2 -> 6/3, exact mode] ours max|dlogit| {ours_diff:.2e}  naive query copies {naive_diff:.3f}")
    assert ours_diff < 1e-4 and naive_diff > 1e-2


def test_aki_takes_new_neurons_from_the_layer_above():
    source = source_model()
    grown, result = grow(source, WIDE, method="aki")
    fpi, _ = grow(source, WIDE, method="fpi")
    sd, ref = grown.state_dict(), fpi.state_dict()
    for name, keep in (("ffn.gate_proj.weight", 176), ("ffn.up_proj.weight", 176), ("self_attn.q_proj.weight", 64),
                       ("self_attn.k_proj.weight", 32), ("self_attn.v_proj.weight", 32)):
        bottom, top = f"decoder.layers.0.{name}", f"decoder.layers.1.{name}"
        assert torch.equal(sd[bottom][:keep], ref[bottom][:keep])  # first d_s rows: layer 0 itself
        assert torch.equal(sd[bottom][keep:], ref[top][keep:])  # new rows: layer 1 (eq. 14-16)
        assert torch.equal(sd[top], ref[top])  # the top layer has no layer above: FPI
    assert tuple(sd["decoder.layers.0.self_attn.k_proj.weight"].shape) == (48, 96)
    assert max_logit_diff(source, grown) > 1e-2  # AKI is not function-preserving by design


def test_depth_growth_stacks_and_only_the_bottom_source_depth_keeps_the_function():
    """Algorithm 1 with the exact mode: the widened T1 is exact (growth-method.md), the stacked
    layers change the function by design and the growth says so."""
    source = source_model()
    deep, result = grow(source, WIDE, exact=True, layers=5)
    assert result.layer_order == [0, 1, 0, 1, 1]
    sd = deep.state_dict()
    assert torch.equal(sd["decoder.layers.2.ffn.down_proj.weight"], sd["decoder.layers.0.ffn.down_proj.weight"])
    assert any("depth growth" in note for note in result.notes)
    with deep.submodel(2, 0):
        assert max_logit_diff(source, deep) < 1e-4  # the bottom Ls layers: T1, exact
    assert max_logit_diff(source, deep) > 1e-2


def test_direct_copy_fills_the_top_left_corner():
    source = source_model()
    grown, _ = grow(source, WIDE, method="direct_copy", layers=3)
    sd, src = grown.state_dict(), source.state_dict()
    fresh = build_llama(seed=7, decoder_layers=3, **WIDE).state_dict()
    assert torch.equal(sd["decoder.layers.1.self_attn.k_proj.weight"][:32, :64], src["decoder.layers.1.self_attn.k_proj.weight"])
    assert torch.equal(sd["decoder.layers.1.self_attn.k_proj.weight"][32:], fresh["decoder.layers.1.self_attn.k_proj.weight"][32:])
    assert torch.equal(sd["decoder.layers.2.ffn.up_proj.weight"], fresh["decoder.layers.2.ffn.up_proj.weight"])


@pytest.mark.parametrize("source_kwargs,target_kwargs,needle", [
    (dict(decoder_attention_heads=8, decoder_kv_heads=2), dict(decoder_embed_dim=72, decoder_attention_heads=9,
                                                                decoder_kv_heads=3, decoder_head_dim=8),
     "query heads 8 -> 9 with key/value heads 2 -> 3 allow no group-preserving head mapping"),
    ({}, dict(decoder_embed_dim=128, decoder_attention_heads=4, decoder_kv_heads=2, decoder_head_dim=32),
     "head size mismatch: the source's heads have 16 dims, the target's 32"),
    (dict(decoder_attention_heads=4, decoder_kv_heads=4), dict(decoder_embed_dim=96, decoder_attention_heads=6,
                                                                decoder_kv_heads=3),
     "target kv_heads 3 is smaller than the source's 4"),
])
def test_bad_head_counts_are_one_line_growth_errors(source_kwargs, target_kwargs, needle):
    source = source_model(**source_kwargs)
    with pytest.raises(GrowthError) as err:
        grow(source, target_kwargs, exact=True)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_target_kv_heads_not_dividing_query_heads_is_refused():
    src = ModelShape(2, 64, 176, 4, kv_heads=2, head_size=16)
    tgt = ModelShape(2, 96, 256, 6, kv_heads=4, head_size=16)
    with pytest.raises(GrowthError, match="the target's 4 key/value heads do not divide its 6 query heads"):
        grow_module.check_growable(src, tgt, "fpi", True)


def test_exact_mode_without_weighted_rmsnorm_is_refused():
    source = source_model()
    target = build_llama(**WIDE)
    with pytest.raises(GrowthError, match="needs the weighted-statistics RMSNorm"):
        grow_state_dict(source.state_dict(), LLAMA, shape_of(source), shape_of(target), method="fpi", exact=True,
                        weighted_layernorm=False, target_init=target.state_dict())


def test_tied_source_into_an_untied_target_is_refused():
    source = source_model()
    with pytest.raises(GrowthError, match="build the target tied too"):
        grow(source, dict(WIDE, share_decoder_input_output_embed=False), exact=True)


def test_weighted_rmsnorm_anneals_to_a_plain_rmsnorm_and_reloads_midway():
    from fairseq_b2b.models.rms_norm import RMSNorm
    from fairseq_b2b.models.weighted_layernorm import anneal

    source = source_model()
    grown, _ = grow(source, WIDE, exact=True)
    x = tokens(2, 10)
    anneal(grown, 1, 4)  # t = 0.5: saved while annealing
    midway = grown.state_dict()
    assert float(midway["decoder.norm.stat_blend"]) == 0.5
    reloaded = build_llama(seed=3, **WIDE)
    reloaded.load_state_dict(midway)
    assert len(weighted_layernorms(reloaded)) == 5
    with torch.no_grad():
        assert torch.equal(reloaded(x)[0], grown(x)[0])
        for module in (m for _, m in weighted_layernorms(grown)):
            module.set_blend(1.0)
        uniform = grown(x)[0]
        assert anneal(grown, 3, 4) == (1.0, 5)
        assert not weighted_layernorms(grown) and all(type(grown.decoder.layers[i].attn_norm) is RMSNorm for i in (0, 1))
        assert torch.equal(grown(x)[0], uniform)  # blend 1 is bit for bit the plain RMSNorm
    assert "decoder.norm.stat_weights" not in grown.state_dict()
