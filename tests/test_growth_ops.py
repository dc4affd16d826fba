"""Pure-torch tests of the growth operators: mappings, FPI (eqs. 5-13), AKI (eqs. 14-16),
Algorithm 1 and DirectCopy, on random state dicts of both families."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairseq_b2b.growth import BERT, GPT, GrowthError, ModelShape, grow_state_dict, stack_layer_order
from fairseq_b2b.growth.layout import FFN, HEAD, IN, OUT, RES
from fairseq_b2b.growth.mapping import MEAN, copy_counts, exact_stream_mapping, sample_mapping

from growth_helpers import LAYOUTS, random_state_dict

SMALL = ModelShape(layers=3, embed_dim=64, ffn_dim=256, heads=2)
BIG = ModelShape(layers=3, embed_dim=128, ffn_dim=512, heads=4)


def test_sample_mapping_identity_first_and_balanced_at_integer_ratio():
    g = sample_mapping(8, 24, torch.Generator().manual_seed(0))
    assert g[:8].tolist() == list(range(8))
    assert copy_counts(g, 8).tolist() == [3] * 8  # every neuron copied equally often
    g2 = sample_mapping(8, 13, torch.Generator().manual_seed(0))
    assert sorted(copy_counts(g2, 8).tolist()) == [1, 1, 1, 2, 2, 2, 2, 2]  # no neuron sampled twice in a round


def test_exact_stream_mapping_copies_then_means():
    assert exact_stream_mapping(4, 10).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, MEAN, MEAN]


def test_stack_layer_order_follows_algorithm_1_with_remainder():
    assert stack_layer_order(4, 10) == [0, 1, 2, 3, 0, 1, 2, 3, 2, 3]
    assert stack_layer_order(3, 12) == [0, 1, 2] * 4
    assert stack_layer_order(6, 12) == list(range(6)) * 2
    assert stack_layer_order(5, 5) == list(range(5))
    assert stack_layer_order(4, 7) == [0, 1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_depth_growth_copies_widened_layers_in_algorithm_1_order(family):
    layout = LAYOUTS[family]
    src = ModelShape(4, 64, 256, 2)
    tgt = ModelShape(10, 128, 512, 4)
    sd = random_state_dict(layout, src)
    grown = grow_state_dict(sd, layout, src, tgt, method="fpi", seed=3).state_dict
    wide = grow_state_dict(sd, layout, src, ModelShape(4, 128, 512, 4), method="fpi", seed=3).state_dict
    for i, j in enumerate([0, 1, 2, 3, 0, 1, 2, 3, 2, 3]):
        for p in layout.layer_params:
            assert torch.equal(grown[layout.layer_key(i, p.name)], wide[layout.layer_key(j, p.name)])
    # stacked copies do not share storage (training them must not update each other)
    a, b = grown[layout.layer_key(0, "fc1.weight")], grown[layout.layer_key(4, "fc1.weight")]
    assert a.data_ptr() != b.data_ptr()


def _neurons(width, maps):
    return maps[width]


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_fpi_expands_every_tensor_by_the_shared_mappings(family):
    """Eqs. 7-9, 11-13: out-dims copy rows by g_out, in-dims copy columns divided by C_g."""
    layout = LAYOUTS[family]
    sd = random_state_dict(layout, SMALL)
    res = grow_state_dict(sd, layout, SMALL, ModelShape(3, 96, 384, 3), method="fpi", seed=5)
    grown, maps = res.state_dict, res.maps
    src_sizes = {RES: 64, HEAD: 64, FFN: 256}
    for i in range(3):
        for p in layout.layer_params:
            w, u = sd[layout.layer_key(i, p.name)], grown[layout.layer_key(i, p.name)]
            expect = w
            for axis, (width, mode) in enumerate(p.axes):
                g = maps[width]
                expect = expect.index_select(axis, g)
                if mode == IN:
                    counts = copy_counts(g, src_sizes[width])[g].to(w.dtype)
                    expect = expect / counts.view([-1 if a == axis else 1 for a in range(w.dim())])
            assert torch.allclose(u, expect), p.name
    # the heads are copied whole: the neuron mapping of Q|K|V is head-wise (eq. 11)
    heads = maps["heads"]
    assert maps[HEAD].view(3, 32).tolist() == [[h * 32 + k for k in range(32)] for h in heads.tolist()]
    # embeddings: out-dimension only (eq. 9), no division
    emb = layout.embed_tokens
    assert torch.equal(grown[emb], sd[emb][:, maps[RES]])
    for alias, original in layout.tied.items():
        assert grown[alias] is grown[original]


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_aki_new_neurons_come_from_the_layer_above(family):
    """Eqs. 14-16: U^l = [ expanded W^l (first d_s outputs) ; expanded W^{l+1} (new outputs) ];
    the top layer has no upper layer and uses itself (= FPI)."""
    layout = LAYOUTS[family]
    sd = random_state_dict(layout, SMALL)
    aki = grow_state_dict(sd, layout, SMALL, BIG, method="aki", seed=7).state_dict
    fpi = grow_state_dict(sd, layout, SMALL, BIG, method="fpi", seed=7).state_dict
    sizes = {RES: 64, HEAD: 64, FFN: 256}
    for i in range(3):
        upper = min(i + 1, 2)
        for p in layout.layer_params:
            (axis, (width, _)), = [(a, s) for a, s in enumerate(p.axes) if s[1] == OUT]
            u = aki[layout.layer_key(i, p.name)]
            d = sizes[width]
            keep = u.narrow(axis, 0, d)
            new = u.narrow(axis, d, u.shape[axis] - d)
            assert torch.equal(keep, fpi[layout.layer_key(i, p.name)].narrow(axis, 0, d)), p.name
            assert torch.equal(new, fpi[layout.layer_key(upper, p.name)].narrow(axis, d, u.shape[axis] - d)), p.name
    assert not torch.equal(aki[layout.layer_key(0, "fc1.weight")], fpi[layout.layer_key(0, "fc1.weight")])
    for p in layout.layer_params:  # the top layer is plain FPI
        assert torch.equal(aki[layout.layer_key(2, p.name)], fpi[layout.layer_key(2, p.name)])


def test_direct_copy_fills_the_corner_and_keeps_the_target_init():
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(4, 128, 512, 4)
    sd = random_state_dict(BERT, src, seed=1)
    init = random_state_dict(BERT, tgt, seed=2)
    out = grow_state_dict(sd, BERT, src, tgt, method="direct_copy", target_init=init).state_dict
    w = out[BERT.layer_key(1, "fc1.weight")]
    assert torch.equal(w[:256, :64], sd[BERT.layer_key(1, "fc1.weight")])
    assert torch.equal(w[256:], init[BERT.layer_key(1, "fc1.weight")][256:])
    assert torch.equal(out[BERT.layer_key(3, "fc1.weight")], init[BERT.layer_key(3, "fc1.weight")])
    assert out["encoder.lm_head.weight"] is out[BERT.embed_tokens]


def test_direct_copy_refuses_a_source_tensor_larger_than_the_target():
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(2, 128, 512, 4)
    sd = random_state_dict(BERT, src)
    init = random_state_dict(BERT, tgt)
    init["encoder.sentence_encoder.embed_positions.weight"] = init["encoder.sentence_encoder.embed_positions.weight"][:10]
    with pytest.raises(GrowthError, match="max positions"):
        grow_state_dict(sd, BERT, src, tgt, method="direct_copy", target_init=init)


def test_exact_mode_layernorm_rescaling():
    """The standard-LayerNorm exact mode (--growth-anneal-updates 0): extras of the stream are
    its mean; LayerNorm gains * sqrt(k d / D), eps too."""
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(2, 96, 384, 3)
    sd = random_state_dict(GPT, src)
    res = grow_state_dict(sd, GPT, src, tgt, method="fpi", exact=True, weighted_layernorm=False)
    out = res.state_dict
    assert res.layernorm_eps_scale == pytest.approx(64 / 96)
    g = out[GPT.layer_key(0, "self_attn_layer_norm.weight")]
    assert torch.allclose(g[:64], sd[GPT.layer_key(0, "self_attn_layer_norm.weight")] * (64 / 96) ** 0.5)
    assert torch.equal(g[64:], torch.zeros(32))
    emb = out[GPT.embed_tokens]
    assert torch.allclose(emb[:, 64:], sd[GPT.embed_tokens].mean(1, keepdim=True).expand(-1, 32))
    fc2 = out[GPT.layer_key(1, "fc2.weight")]
    assert torch.equal(fc2[64:, :].abs().sum(0) > 0, torch.ones(384, dtype=torch.bool))  # mean rows


def test_exact_mode_is_exact_on_a_pre_ln_stream_in_float64():
    """The residual stream of a pre-LN model stays k copies + means through LayerNorm readers."""
    torch.manual_seed(0)
    d, D = 6, 15
    x = torch.randn(5, d, dtype=torch.float64)
    gain, bias = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    g = exact_stream_mapping(d, D)
    k = D // d
    big = torch.cat([x.repeat(1, k), x.mean(1, keepdim=True).expand(-1, D - k * d)], 1)
    s = k * d / D
    ln_small = torch.nn.functional.layer_norm(x, (d,), gain, bias, eps=1e-5)
    big_gain = torch.cat([gain.repeat(k) * s ** 0.5, torch.zeros(D - k * d, dtype=torch.float64)])
    big_bias = torch.cat([bias.repeat(k), torch.zeros(D - k * d, dtype=torch.float64)])
    ln_big = torch.nn.functional.layer_norm(big, (D,), big_gain, big_bias, eps=1e-5 * s)
    assert torch.allclose(ln_big[:, :d], ln_small, atol=1e-12)
    assert g.tolist()[-3:] == [MEAN] * 3


@pytest.mark.parametrize("bad,msg", [
    (dict(tgt=ModelShape(2, 32, 128, 1)), "smaller than the source"),
    (dict(tgt=ModelShape(1, 64, 256, 2)), "layers 1 is smaller"),
    (dict(tgt=ModelShape(2, 128, 512, 2)), "head size mismatch"),
    (dict(method="net2net"), "unknown growth method"),
    (dict(method="aki", exact=True), "fpi method only"),
])
def test_bad_shapes_and_methods_are_one_line_errors(bad, msg):
    kw = dict(tgt=ModelShape(2, 128, 512, 4), method="fpi", exact=False)
    kw.update(bad)
    src = ModelShape(2, 64, 256, 2)
    with pytest.raises(GrowthError, match=msg) as e:
        grow_state_dict(random_state_dict(BERT, src), BERT, src, kw["tgt"], method=kw["method"], exact=kw["exact"])
    assert "\n" not in str(e.value)


shapes = st.tuples(
    st.sampled_from(["bert", "gpt"]),
    st.integers(1, 3), st.integers(0, 4),  # Ls, extra layers
    st.integers(1, 3), st.integers(0, 4),  # source heads, extra heads (head size 8)
    st.integers(1, 3),  # FFN multiple
    st.sampled_from(["fpi", "aki"]),
    st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_property_shapes_and_residual_mapping_consistent(case):
    family, ls, dl, hs, dh, fm, method, exact = case
    exact = exact and method == "fpi"
    layout = LAYOUTS[family]
    src = ModelShape(ls, 8 * hs, 8 * hs * fm, hs)
    tgt = ModelShape(ls + dl, 8 * (hs + dh), 8 * (hs + dh) * fm + 8 * dh, hs + dh)
    sd = random_state_dict(layout, src, seed=ls * 100 + hs)
    res = grow_state_dict(sd, layout, src, tgt, method=method, exact=exact, seed=dl)
    grown = res.state_dict
    reference = random_state_dict(layout, tgt)
    assert set(grown) == set(reference)
    for k, v in reference.items():
        assert grown[k].shape == v.shape, k
    assert res.layer_order == stack_layer_order(ls, ls + dl)
    g = res.maps[RES]
    # one residual mapping for every module: embeddings, writers' rows, LayerNorms
    copies = (g >= 0).nonzero().flatten()
    emb = layout.embed_tokens
    assert torch.equal(grown[emb][:, copies], sd[emb][:, g[copies]])
    for i in range(ls + dl):
        j = res.layer_order[i]
        if method == "fpi":
            out_rows = grown[layout.layer_key(i, "fc2.bias")]
            assert torch.equal(out_rows[copies], sd[layout.layer_key(j, "fc2.bias")][g[copies]])
        # readers: summing the column copies of a source column gives the source column
        reader = grown[layout.layer_key(i, "fc1.weight")]
        ffn = res.maps[FFN]
        summed = torch.zeros(reader.shape[0], src.embed_dim).index_add_(1, g[copies], reader[:, copies])
        first = summed[: src.ffn_dim]
        assert torch.allclose(first, sd[layout.layer_key(j, "fc1.weight")][ffn[: src.ffn_dim]], atol=1e-5)


def test_a_source_parameter_outside_the_layout_is_refused():
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(2, 128, 512, 4)
    sd = random_state_dict(GPT, src)
    sd["decoder.project_in_dim.weight"] = torch.randn(64, 64)  # transformer_lm with input dim != embed dim
    with pytest.raises(GrowthError, match="project_in_dim.weight' is not part of the gpt layout"):
        grow_state_dict(sd, GPT, src, tgt, method="fpi")
