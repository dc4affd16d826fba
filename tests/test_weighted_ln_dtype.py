"""The statistics weights of exact growth's weighted LayerNorm stay fp32 under ``.half()`` and
bf16, and its statistics are computed in fp32 (issue 17, 3; models/weighted_layernorm.py)."""
import torch

from fairseq_b2b.growth.mapping import sample_mapping, stream_statistics_weights
from fairseq_b2b.models import weighted_layernorm as wln


def _weighted(d_src=384, d_tgt=576):
    g = sample_mapping(d_src, d_tgt, torch.Generator().manual_seed(d_tgt))
    holder = torch.nn.Sequential(torch.nn.LayerNorm(d_tgt))
    with torch.no_grad():
        holder[0].weight.normal_(1.0, 0.1, generator=torch.Generator().manual_seed(1))
        holder[0].bias.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(2))
    wln.install(holder, {"0": stream_statistics_weights(g, d_src)}, blend=0.25)
    return holder


def test_stat_buffers_stay_fp32_under_half_and_bf16():
    for cast in (lambda m: m.half(), lambda m: m.to(torch.bfloat16), lambda m: m.bfloat16(),
                 lambda m: m.to("cpu", torch.float16)):
        holder = cast(_weighted())
        ln = holder[0]
        assert ln.weight.dtype in (torch.float16, torch.bfloat16)  # the parameters are cast
        assert ln.stat_weights.dtype == torch.float32 and ln.stat_blend.dtype == torch.float64
        assert abs(float(ln.stat_weights.double().sum()) - 1.0) < 1e-6
        assert ln.blend == 0.25 and float(ln.stat_blend) == 0.25
        assert {k: v.dtype for k, v in holder.state_dict().items()}["0.stat_weights"] == torch.float32
        holder.float()  # back to fp32: the weights are the original ones, not an fp16 round trip
        assert torch.equal(holder[0].stat_weights, _weighted()[0].stat_weights)


def test_bf16_forward_matches_fp32():
    ref = _weighted()
    x = torch.randn(3, 5, 576, generator=torch.Generator().manual_seed(0)) * 3 + 1
    want = ref(x)
    low = _weighted().to(torch.bfloat16)
    got = low(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    # bf16 inputs and parameters (8 bits of mantissa), fp32 statistics: within bf16 rounding
    assert (got.float() - want).abs().max() < 0.05
    assert (got.float() - want).abs().mean() < 0.01
    # exactly the fp32 module (fp32 statistics weights) on the bf16 input and parameters, rounded to bf16
    with torch.no_grad():
        exact = _weighted()
        for p, q in zip(exact.parameters(), low.parameters()):
            p.copy_(q.float())
        assert torch.equal(got, exact(x.to(torch.bfloat16).float()).to(torch.bfloat16))
