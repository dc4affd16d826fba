"""Exact growth at any width ratio (issue 11): the weighted-statistics LayerNorm, its annealing
to a standard one, and the cases the exact mode names as not exact (issue 12, 4a and 4e).

Real models trained a few updates on the built-in corpus, fp32, eval mode; the real
all-MiniLM-L6-v2 through fairseq's forward (skips without it, see tests/test_hf.py)."""
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

import fairseq_b2b  # noqa: F401  (registers the b2b_ archs and tasks)
from fairseq_b2b.checkpoints import load_model, train_in_process
from fairseq_b2b.cli import grow as grow_cli
from fairseq_b2b.growth import BERT, GPT, ModelShape, grow_state_dict, make_maps
from fairseq_b2b.growth.mapping import sample_mapping, stream_statistics_weights
from fairseq_b2b.models import weighted_layernorm as wln

from conftest import TINY
from growth_helpers import random_state_dict

TOL = 1e-5


def _report(name, value):
    print(f"[test_exact_growth] {name}: {value:.3g}")


def _arch(family, dim, heads):
    side = "encoder" if family == "bert" else "decoder"
    return [f"--{side}-embed-dim", str(dim), f"--{side}-attention-heads", str(heads), f"--{side}-ffn-embed-dim", str(4 * dim)]


@pytest.fixture(scope="module")
def wide_sources(tmp_path_factory, data_bin):
    """2-layer, 256-wide (8 heads of 32) BERT and GPT, trained a few updates on the corpus."""
    out = {}
    for family, task, arch in (("bert", "masked_lm", "b2b_bert_tiny"), ("gpt", "language_modeling", "b2b_gpt_tiny")):
        save = tmp_path_factory.mktemp(f"wide_{family}")
        train_in_process([data_bin, "--task", task, *(["--criterion", "masked_lm"] if family == "bert" else []),
                          "--arch", arch, *_arch(family, 256, 8), "--max-update", "20", "--save-dir", str(save), *TINY])
        out[family] = os.path.join(save, "checkpoint_last.pt")
    return out


# --------------------------------------------------------------------------------------------
# the mechanism, in pure torch

@pytest.mark.parametrize("d_src,d_tgt", [(64, 96), (4, 10), (384, 576), (6, 6)])
def test_weighted_statistics_of_any_copy_mapping_are_the_source_statistics(d_src, d_tgt):
    g = sample_mapping(d_src, d_tgt, torch.Generator().manual_seed(d_tgt))
    w = stream_statistics_weights(g, d_src).double()
    x = torch.randn(7, d_src, dtype=torch.float64)
    grown = x[:, g]
    mean = grown @ w
    var = ((grown - mean[:, None]) ** 2) @ w
    assert torch.allclose(mean, x.mean(-1), atol=1e-12) and torch.allclose(var, x.var(-1, unbiased=False), atol=1e-12)
    # the LayerNorm output is the copy of the source's: no mean-filled entries, eps unchanged
    ln = wln.WeightedLayerNorm(d_tgt, w.float(), eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(d_src)[g])
        ln.bias.copy_(torch.randn(d_src)[g])
    src_out = F.layer_norm(x.float(), (d_src,), ln.weight[:d_src], ln.bias[:d_src], 1e-5)
    assert (ln(x[:, g].float()) - src_out[:, g]).abs().max() < 1e-5


def test_weighted_layernorm_gradient_is_the_autograd_one():
    """The closed-form backward of the weighted normalization (float64 gradcheck), and the
    module's parameter gradients against a plain autograd formula."""
    torch.manual_seed(0)
    w = stream_statistics_weights(sample_mapping(5, 8, torch.Generator().manual_seed(2)), 5).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: wln._WeightedNormalize.apply(x, w, 1e-5), (x,))
    ln = wln.WeightedLayerNorm(8, w.float(), eps=1e-5).double()
    ln.set_blend(0.3)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    weights = 0.7 * w + 0.3 / 8
    mean = x @ weights
    centered = x - mean[..., None]
    reference = centered / torch.sqrt((centered ** 2) @ weights + 1e-5)[..., None] * ln.weight + ln.bias
    g = torch.randn_like(reference)
    got = torch.autograd.grad(ln(x), (x, ln.weight, ln.bias), g)
    want = torch.autograd.grad(reference, (x, ln.weight, ln.bias), g)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(got, want))


def test_uniform_blend_is_bit_identical_to_layernorm_and_anneal_replaces_it():
    torch.manual_seed(0)
    plain = torch.nn.LayerNorm(24, eps=1e-6)
    with torch.no_grad():
        plain.weight.normal_()
        plain.bias.normal_()
    holder = torch.nn.Sequential(plain)
    w = stream_statistics_weights(sample_mapping(16, 24, torch.Generator().manual_seed(1)), 16)
    wln.install(holder, {"0": w})
    weighted = holder[0]
    assert isinstance(weighted, wln.WeightedLayerNorm) and weighted.weight is plain.weight and weighted.eps == 1e-6
    x = torch.randn(5, 3, 24)
    assert not torch.allclose(weighted(x), plain(x), atol=1e-3)
    weighted.set_blend(1.0)
    assert torch.equal(weighted(x), plain(x))  # uniform weights: bit-identical to nn.LayerNorm
    # w blended to uniform at uniform-ish weights: the blend formula itself
    weighted.set_blend(0.25)
    assert torch.allclose(weighted.effective_weights(), 0.75 * w + 0.25 / 24)
    assert wln.anneal(holder, 1, 4) == (0.5, 0) and holder[0].blend == 0.5
    assert wln.anneal(holder, 3, 4) == (1.0, 1)  # update N-1 runs standard LayerNorms
    assert type(holder[0]) is torch.nn.LayerNorm and holder[0].weight is plain.weight
    assert not any(k.endswith(wln.WEIGHTS) for k in holder.state_dict())


# --------------------------------------------------------------------------------------------
# exact growth of trained models at non-integer ratios

def _grow_and_eval(tmp_path, source, family, dim, heads, data_bin, exact=True, arch=None):
    arch = arch or f"b2b_{family}_tiny"
    over = _arch(family, dim, heads)
    out = str(tmp_path / f"{family}_{dim}_{'exact' if exact else 'paper'}.pt")
    report = grow_cli.grow_checkpoint(source, arch, "fpi", exact, 1, out, data_bin, over)
    report.update(grow_cli.evaluate_growth(source, out, data_bin))
    report.update(grow_cli.evaluate_fpi_variants(report, source, arch, 1, data_bin, over))
    return report, out


@pytest.mark.parametrize("family", ["bert", "gpt"])
@pytest.mark.parametrize("src_dim,tgt_dim", [(64, 96), (256, 384)])
def test_exact_growth_is_exact_at_a_non_integer_ratio(tmp_path, data_bin, small_bert, small_gpt, wide_sources,
                                                      family, src_dim, tgt_dim):
    source = ({"bert": small_bert, "gpt": small_gpt} if src_dim == 64 else wide_sources)[family]
    report, out = _grow_and_eval(tmp_path, source, family, tgt_dim, tgt_dim // 32, data_bin)
    assert report["layernorm"] == "weighted" and report["layernorm_eps_scale"] == 1.0 and report["notes"] == []
    exact, paper = report["exact_fpi"], report["paper_fpi"]
    assert exact["max_abs_logit_diff"] == report["max_abs_logit_diff"] <= TOL
    assert abs(exact["grown_loss"] - report["source_loss"]) < 1e-5
    assert paper["max_abs_logit_diff"] > 1e-3  # paper FPI's LayerNorm gap, beside it
    _report(f"{family} {src_dim}->{tgt_dim}: exact FPI max |dlogit|", exact["max_abs_logit_diff"])
    _report(f"{family} {src_dim}->{tgt_dim}: paper FPI max |dlogit|", paper["max_abs_logit_diff"])
    model, _, _ = load_model(out, data_bin)  # the grown checkpoint reloads its weighted LayerNorms
    weighted = wln.weighted_layernorms(model)
    assert len(weighted) == 2 * 2 + (2 if family == "bert" else 1) and all(m.blend == 0.0 for _, m in weighted)
    # the fp32 residual is rounding: in fp64 the grown model computes the source function
    fp64 = _fp64_logit_diff(source, model, data_bin)
    _report(f"{family} {src_dim}->{tgt_dim}: exact FPI max |dlogit| in fp64", fp64)
    assert fp64 < 1e-10


def _fp64_logit_diff(source, grown, data_bin):
    from fairseq_b2b.evaluate import _batches

    src, task, cfg = load_model(source, data_bin)
    src.double(), grown.double()
    with torch.no_grad():
        return max(float((src(**b["net_input"])[0] - grown(**b["net_input"])[0]).abs().max())
                   for b in _batches(task, "valid", src, cfg, max_batches=1))


def test_the_real_minilm_grows_exactly_384_to_576(tmp_path, tr, minilm_dir, minilm_import):
    """all-MiniLM-L6-v2 (6 x 384, 12 heads, eps 1e-12) -> 6 x 576 with 18 heads, through
    fairseq's forward on real sentences: the grown hidden states are copies of the source's."""
    from test_hf import _hf_reference

    over = ["--encoder-layers", "6", "--encoder-embed-dim", "576", "--encoder-attention-heads", "18",
            "--encoder-ffn-embed-dim", "2304"]
    _, enc, _ = _hf_reference(tr, minilm_dir)
    ids = minilm_import["mapping"].translate(enc["input_ids"])
    mask = enc["attention_mask"].bool()
    src, _, _ = load_model(minilm_import["ckpt"], minilm_import["dir"])
    with torch.no_grad():
        ref, _ = src(ids, features_only=True)
    diffs = {}
    for exact in (True, False):
        out = str(tmp_path / f"minilm_{exact}.pt")
        report = grow_cli.grow_checkpoint(minilm_import["ckpt"], "b2b_bert", "fpi", exact, 1, out,
                                          minilm_import["dir"], over)
        grown, _, _ = load_model(out, minilm_import["dir"])
        eps = [m.eps for m in grown.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert eps and set(eps) == {1e-12}  # not all() of nothing
        with torch.no_grad():
            hid, _ = grown(ids, features_only=True)
        assert report["target_shape"] == "(L=6, D=576, FFN=2304, heads=18)"
        g = make_maps(ModelShape(6, 384, 1536, 12), ModelShape(6, 576, 2304, 18), 1)["res"]  # the growth's g
        diffs[exact] = (hid - ref[..., g])[mask].abs().max().item()
    _report("MiniLM 384->576 exact FPI, max |d hidden| (fairseq forward)", diffs[True])
    _report("MiniLM 384->576 paper FPI, max |d hidden| (fairseq forward)", diffs[False])
    assert diffs[True] <= 1e-4 < diffs[False]


# --------------------------------------------------------------------------------------------
# annealing to a standard model, resume, export

def _anneal_argv(data_bin, source, save, n, max_update, extra=()):
    argv = [data_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny", *_arch("bert", 96, 3),
            "--init-from-small", source, "--growth-method", "fpi", "--growth-exact", "--growth-anneal-updates", str(n),
            "--submodel-epochs", "0", "--max-update", str(max_update), "--save-dir", str(save), *map(str, TINY), *extra]
    return argv


@pytest.fixture(scope="module")
def annealed_runs(tmp_path_factory, data_bin, small_bert):
    """N = 6 anneal updates: run A uninterrupted (a checkpoint every 3 updates); run B resumed
    from A's checkpoint at update 3 (N/2) in a new training process."""
    root = tmp_path_factory.mktemp("anneal")
    n = 6
    log_a = train_in_process(_anneal_argv(data_bin, small_bert, root / "a", n, n, ["--save-interval-updates", "3"]))
    os.makedirs(root / "b")
    shutil.copy(root / "a" / "checkpoint_1_3.pt", root / "b" / "checkpoint_last.pt")
    log_b = train_in_process(_anneal_argv(data_bin, small_bert, root / "b", n, n))
    return {"root": root, "n": n, "log_a": log_a, "log_b": log_b}


def test_resume_in_the_middle_of_annealing_equals_the_uninterrupted_run(annealed_runs):
    root = annealed_runs["root"]
    assert "growth from" in annealed_runs["log_b"] and "skipped" in annealed_runs["log_b"]
    mid = torch.load(root / "a" / "checkpoint_1_3.pt", weights_only=False)["model"]
    blends = {k: float(v) for k, v in mid.items() if k.endswith(wln.BLEND)}
    assert len(blends) == 6 and set(blends.values()) == {0.5}  # after N/2 updates: halfway
    a = torch.load(root / "a" / "checkpoint_last.pt", weights_only=False)["model"]
    b = torch.load(root / "b" / "checkpoint_last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for log in (annealed_runs["log_a"], annealed_runs["log_b"]):
        assert "update 6: the 6 LayerNorms are standard from here on" in log
    assert '"ln_blend": "0.6667"' in annealed_runs["log_b"]  # the resumed run continues the same blend


def test_after_annealing_the_checkpoint_is_a_stock_model_and_exports(tr, annealed_runs, data_bin, tmp_path):
    from fairseq import checkpoint_utils

    from fairseq_b2b.hf.export_hf import export_hf

    ckpt = str(annealed_runs["root"] / "a" / "checkpoint_last.pt")
    state = checkpoint_utils.load_checkpoint_to_cpu(ckpt)
    assert not [k for k in state["model"] if ".stat_" in k]
    model, task, cfg = load_model(ckpt, data_bin)
    assert not wln.weighted_layernorms(model)
    stock = task.build_model(cfg.model)  # a plain b2b_bert build: standard LayerNorms, plain nn.Module load
    assert not wln.weighted_layernorms(stock)
    torch.nn.Module.load_state_dict(stock, state["model"], strict=True)
    stock.eval()
    ids = torch.randint(4, len(task.source_dictionary), (2, 20), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = task.source_dictionary.bos(), task.source_dictionary.eos()
    with torch.no_grad():
        before = model(ids)[0]
        assert torch.equal(stock(ids)[0], before)
    out = str(tmp_path / "hf")
    export_hf(ckpt, out, dict_path=os.path.join(data_bin, "dict.txt"), log=lambda *_: None)
    hf = tr.BertForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        diff = (hf(ids).logits - before).abs().max().item()
    _report("annealed exact growth -> b2b-export-hf, max |dlogit| HF vs fairseq", diff)
    assert diff < 1e-4


def test_a_checkpoint_saved_while_annealing_reloads_its_blend(annealed_runs, data_bin):
    model, _, _ = load_model(str(annealed_runs["root"] / "a" / "checkpoint_1_3.pt"), data_bin)
    weighted = wln.weighted_layernorms(model)
    assert len(weighted) == 6 and all(m.blend == 0.5 for _, m in weighted)


@pytest.mark.parametrize("n", [1000, 2])
def test_a_run_that_stops_while_annealing_says_so(tmp_path, small_bin, small_bert, n):
    """--max-epoch 1 (4 updates) with --growth-anneal-updates 1000: the run's last warning says the
    LayerNorms are still weighted and the checkpoint records it; with 2, neither (issue 17, 4)."""
    argv = _anneal_argv(small_bin, small_bert, tmp_path, n, 0, ["--max-epoch", "1"])
    log = train_in_process(argv)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=False)
    updates = state["optimizer_history"][-1]["num_updates"]
    record = state["extra_state"]["B2BMaskedLMTask"]
    blends = {float(v) for k, v in state["model"].items() if k.endswith(wln.BLEND)}
    warnings = [line for line in log.splitlines() if line.startswith("WARNING:")]
    if n > updates:
        assert blends == {updates / n} and record["layernorm_weighted_at_end"] is True
        assert record["anneal_progress"] == pytest.approx(updates / n)
        assert "still weighted" in warnings[-1] and f"blend t = {updates / n:.4g} < 1" in warnings[-1]
        assert getattr(state["cfg"]["model"], "layernorm_weighted_at_end") is True
    else:
        assert not blends and record["layernorm_weighted_at_end"] is False and record["anneal_progress"] == 1.0
        assert not any("still weighted" in line for line in log.splitlines())


def _train_error(argv):
    from fairseq_b2b.cli import train

    with pytest.raises(SystemExit) as e:
        train.main(argv)
    return str(e.value.code)


@pytest.mark.parametrize("n,max_update,needle", [
    (-1, 4, "--growth-anneal-updates -1 is negative"),
    (10, 4, "--growth-anneal-updates 10 is larger than --max-update 4"),
])
def test_bad_anneal_updates_are_one_line_errors(tmp_path, data_bin, small_bert, n, max_update, needle):
    message = _train_error(_anneal_argv(data_bin, small_bert, tmp_path, n, max_update))
    assert message.startswith("fairseq-b2b: error: ") and needle in message and "\n" not in message, message
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_bad_anneal_updates_from_the_command_line_print_one_line(tmp_path, data_bin, small_bert, capsys, monkeypatch):
    from conftest import b2b_train_main, exit_line

    last = exit_line(lambda argv: b2b_train_main(argv, monkeypatch),  # a non-zero exit, no traceback
                     _anneal_argv(data_bin, small_bert, tmp_path, 10, 4), capsys)
    assert last.startswith("fairseq-b2b: error: --growth-anneal-updates 10 is larger")


# --------------------------------------------------------------------------------------------
# issue 12, 4a: every LayerNorm class fairseq can build

class StandInFusedLayerNorm(torch.nn.Module):
    """apex's FusedLayerNorm interface (not an nn.LayerNorm), on CPU."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        self.weight = torch.nn.Parameter(torch.ones(self.normalized_shape))
        self.bias = torch.nn.Parameter(torch.zeros(self.normalized_shape))

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


@pytest.fixture
def fused_layernorm(monkeypatch):
    """fairseq builds FusedLayerNorm where apex and CUDA are there: make it build the stand-in."""
    from fairseq.modules import layer_norm

    monkeypatch.setattr(layer_norm, "has_fused_layernorm", True)
    monkeypatch.setattr(layer_norm, "FusedLayerNorm", StandInFusedLayerNorm, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return StandInFusedLayerNorm


def _build(data_bin, family, *extra):
    from fairseq_b2b.checkpoints import build_from_args, parse_training_args

    task = ["--task", "masked_lm", "--criterion", "masked_lm"] if family == "bert" else ["--task", "language_modeling"]
    if "--task" in extra:  # a later --task wins
        task = ["--criterion", "masked_lm"] if family == "bert" else []
    import tempfile

    args = parse_training_args([data_bin, *task, "--arch", f"b2b_{family}_tiny", "--cpu", "--tokens-per-sample", "64",
                                "--save-dir", tempfile.mkdtemp(prefix="b2b-build-"), *map(str, extra)])
    return args, build_from_args(args)


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_layernorm_eps_reaches_fused_layernorms(fused_layernorm, data_bin, small_bert, small_gpt, family):
    args, (cfg, task, model) = _build(data_bin, family, "--layernorm-eps", "1e-7", *_arch(family, 96, 3))
    norms = [m for m in model.modules() if isinstance(m, fused_layernorm)]
    assert norms and not [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.eps == 1e-7 for m in norms)
    source = small_bert if family == "bert" else small_gpt
    grow = ["--init-from-small", source, "--growth-method", "fpi", "--growth-exact", *_arch(family, 96, 3)]
    # a task without annealing: the standard-LayerNorm exact mode rescales the inherited eps (1e-5) by 64/96
    _, (cfg, task, model) = _build(data_bin, family, *grow)
    assert cfg.model.b2b_grown_from["layernorm"] == "standard"
    eps = [m.eps for m in model.modules() if isinstance(m, fused_layernorm)]
    assert len(eps) == len(norms) and eps == pytest.approx([1e-5 * 64 / 96] * len(eps))
    # the b2b task anneals: weighted LayerNorms, which come back to the class fairseq built
    b2b_task = ["--task", "b2b_masked_lm" if family == "bert" else "b2b_language_modeling", "--submodel-epochs", "0"]
    _, (cfg, task, model) = _build(data_bin, family, *grow, "--layernorm-eps", "1e-7", *b2b_task)
    weighted = wln.weighted_layernorms(model)
    assert len(weighted) == len(norms) and all(m.plain_class is fused_layernorm and m.eps == 1e-7 for _, m in weighted)
    params = {id(p) for p in model.parameters()}
    wln.restore_standard(model)
    assert {id(p) for p in model.parameters()} == params
    restored = [m for m in model.modules() if isinstance(m, fused_layernorm)]
    assert len(restored) == len(norms) and all(m.eps == 1e-7 for m in restored)


# --------------------------------------------------------------------------------------------
# issue 12, 4e: every non-exact case the exact mode can meet is named

def test_non_exact_cases_of_the_exact_mode_are_named():
    src, wide, deep = ModelShape(2, 64, 256, 2), ModelShape(2, 96, 384, 3), ModelShape(4, 96, 384, 3)
    gpt = random_state_dict(GPT, src)
    no_emb_ln = {k: v for k, v in gpt.items() if "layernorm_embedding" not in k}
    bert = random_state_dict(BERT, src)

    def notes(sd, layout, tgt, **kw):
        return grow_state_dict(sd, layout, src, tgt, method="fpi", exact=True, **kw).notes

    assert notes(gpt, GPT, wide) == notes(bert, BERT, wide) == []  # weighted LayerNorm: exact
    assert any("depth growth (2 -> 4 layers)" in n for n in notes(gpt, GPT, deep))
    assert any("depth growth" in n for n in notes(bert, BERT, deep))
    standard = dict(weighted_layernorm=False)
    assert any("embedding LayerNorm" in n for n in notes(gpt, GPT, wide, **standard))
    assert notes(no_emb_ln, GPT, wide, **standard) == []  # pre-LN without it: exact with standard LayerNorm
    assert any("post-LN" in n for n in notes(bert, BERT, wide, **standard))
    assert notes(bert, BERT, ModelShape(2, 128, 512, 4), **standard) == []  # integer ratio


def test_gpt_with_embedding_layernorm_exact_and_named(tmp_path, data_bin, caplog):
    """A GPT with --layernorm-embedding: exact with the weighted LayerNorm; the standard-LayerNorm
    exact mode says in the growth log that it is not exact, and it is not."""
    from fairseq_b2b.evaluate import logits, max_abs_logit_diff

    save = tmp_path / "src"
    train_in_process([data_bin, "--task", "language_modeling", "--arch", "b2b_gpt_tiny", "--layernorm-embedding",
                      "--max-update", "10", "--save-dir", str(save), *TINY])
    source = str(save / "checkpoint_last.pt")
    report, out = _grow_and_eval(tmp_path, source, "gpt", 96, 3, data_bin)
    assert report["max_abs_logit_diff"] <= TOL and report["notes"] == []
    with caplog.at_level("WARNING", logger="fairseq_b2b.growth"):  # a task without annealing: standard LayerNorms
        _, (cfg, task, model) = _build(data_bin, "gpt", "--layernorm-embedding", "--init-from-small", source,
                                       "--growth-method", "fpi", "--growth-exact", *_arch("gpt", 96, 3))
    standard = cfg.model.b2b_grown_from
    assert standard["layernorm"] == "standard" and any("does not anneal" in n for n in standard["notes"])
    assert any("embedding LayerNorm" in n for n in standard["notes"])
    assert any("embedding LayerNorm" in r.getMessage() for r in caplog.records)
    src_model, src_task, src_cfg = load_model(source, data_bin)
    residual = max_abs_logit_diff(logits(src_model, src_task, "valid", src_cfg), logits(model.eval(), src_task, "valid", src_cfg))
    _report("GPT with embedding LayerNorm 64->96, standard-LayerNorm exact mode residual", residual)
    assert residual > 1e-4


def test_exact_mode_with_depth_growth_is_named_in_the_report(tmp_path, data_bin, small_bert, caplog):
    with caplog.at_level("WARNING", logger="fairseq_b2b.growth"):
        report, _ = _grow_and_eval(tmp_path, small_bert, "bert", 96, 3, data_bin, arch="b2b_bert_tiny_deep")
    assert any("depth growth (2 -> 4 layers)" in n for n in report["notes"])
    assert any("depth growth" in r.getMessage() for r in caplog.records)


from test_hf import minilm_dir, minilm_import, tr  # noqa: E402,F401  (the real MiniLM fixtures)
