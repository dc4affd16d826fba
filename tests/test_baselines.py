"""The paper's baselines in the same harness as bert2BERT: StackBERT (``--stacking-schedule``),
MSLT (``--mslt-layers``/``--mslt-stage-epochs``), share-then-unshare (``--share-layers-until``),
scratch and DirectCopy - one ``fairseq-train`` each, same tasks, same FLOPs meter, same logs.

Assertions are on the model: the per-update trace (``--submodel-trace``) carries a digest of
every layer's weights at the start of each update, the epoch checkpoints carry the weights and
the Adam state, and in-process runs look at the modules directly."""
import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("OMP_NUM_THREADS", "1")

from conftest import subset_bin  # noqa: E402
import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import build_trainer, parse_training_args, train_in_process  # noqa: E402
from fairseq_b2b.tasks.schedules import (MSLTSchedule, ShareThenUnshareSchedule, StackingSchedule,  # noqa: E402
                                         Submodel, parse_share_until, parse_stacking_schedule)
from fairseq_b2b.tasks.two_stage import layer_digests  # noqa: E402

D, FFN, LAYERS = 128, 512, 4  # b2b_bert_tiny_deep
ARCH = "b2b_bert_tiny_deep"
PREFIX = "encoder.sentence_encoder."


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def tiny_bin(data_bin, tmp_path_factory):
    """The first ~2000 train / ~300 valid tokens of the built-in corpus' data-bin: ~9 updates
    of 8 x 32 tokens per epoch (the full data_bin has ~256)."""
    return subset_bin(data_bin, tmp_path_factory.mktemp("baselines_bin"), 2000, 300)


def build_trainer_seeded(argv):
    return build_trainer(argv, seed=True)


def common(seed=3):
    return ["--optimizer", "adam", "--lr", "1e-3", "--weight-decay", "0.01", "--tokens-per-sample", "32",
            "--batch-size", "8", "--required-batch-size-multiple", "1", "--cpu", "--log-format", "json",
            "--log-interval", "1", "--num-workers", "0", "--dropout", "0", "--attention-dropout", "0",
            "--seed", str(seed)]


def base_args(data, *extra, arch=ARCH, task="b2b_masked_lm"):
    return [data, "--task", task, "--arch", arch, "--submodel-epochs", "0"] + common() + list(extra)


def initial_model(argv):
    """The model fairseq-train builds at start (same seed, same build order)."""
    from fairseq import tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(parse_training_args(argv))
    utils.set_torch_seed(cfg.common.seed)
    return tasks.setup_task(cfg.task).build_model(cfg.model)


def read_trace(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def json_logs(text, tag):
    return [json.loads(line.split(":", 2)[2]) for line in text.splitlines() if line.startswith(f"INFO:{tag}:{{")]


def load(path):
    return torch.load(path, weights_only=False)


def layer_sd(sd, i):
    key = f"{PREFIX}layers.{i}."
    return {k[len(key):]: v for k, v in sd.items() if k.startswith(key)}


def same_layer(sd_a, i, sd_b, j):
    a, b = layer_sd(sd_a, i), layer_sd(sd_b, j)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def adam_steps(ckpt, names):
    """name -> Adam step of that parameter in the checkpoint (None: no state)."""
    state = ckpt["last_optimizer_state"]["state"]
    return {n: (int(state[i]["step"]) if i in state else None) for i, n in enumerate(names)}


def by_epoch(trace):
    out = {}
    for r in trace:
        out.setdefault(r["epoch"], []).append(r)
    return out


def expected_flops(rec, vocab, d=D, ffn=FFN):
    """The docstring formula of fairseq_b2b.flops written out for a post-LN BERT layer stack."""
    n, s2, m = rec["ntok"], rec["sqtok"], rec["scored"]
    fwd = 2 * (4 * d * d + 2 * d * ffn) * n + 4 * d * s2
    total = sum((3 if layer >= rec["trainable_from"] else 1) * fwd for layer in range(rec["depth"]))
    if rec["frozen_input"]:
        total -= 3 * 2 * d * d * n  # no input gradient for Q, K, V of the lowest trained layer
    return total + 3 * (2 * d * d + 2 * d * vocab) * m


def check_flops(trace, log, vocab):
    """Every update's FLOPs equal the formula for the shape that ran; fairseq's json log carries
    the cumulative value."""
    total = 0
    for rec in trace:
        assert rec["update_flops"] == expected_flops(rec, vocab), rec
        total += rec["update_flops"]
        assert rec["train_flops"] == total
    inner = json_logs(log, "train_inner")
    assert len(inner) == len(trace)
    assert [int(x["train_flops"]) for x in inner] == [r["train_flops"] for r in trace]


def param_names(argv):
    """Parameter names in the optimizer's order (the trainer passes model.parameters())."""
    return [n for n, _ in initial_model(argv).named_parameters()]


# --------------------------------------------------------------------------------------------
# schedules: pure functions of (epoch, update)


def test_schedule_phases_follow_the_papers_settings():
    sb = StackingSchedule(12, parse_stacking_schedule("3:5,6:7,12:28"))
    assert [sb.submodel(e, 0) for e in (1, 5, 6, 12)] == [Submodel(3, 0, True)] * 2 + [Submodel(6, 0, True)] * 2
    assert sb.submodel(13, 0) is None and sb.submodel(40, 10**6) is None  # full model: the parent's step
    assert [sb.phase(e, 0) for e in (1, 5, 6, 12, 13, 40)] == [0, 0, 1, 1, 2, 2] and sb.epochs == 40
    assert sb.boundary(0) is None
    assert sb.boundary(1).copies == ((0, 3), (1, 4), (2, 5)) and sb.boundary(1).reset == (3, 4, 5)
    assert sb.boundary(2).copies == tuple((i, 6 + i) for i in range(6))
    assert [sb.eval_depth(p) for p in range(3)] == [3, 6, 12]

    mslt = MSLTSchedule(12, 3, 8, total_epochs=40)
    subs = [mslt.submodel(e, 0) for e in (1, 8, 9, 17, 25, 32)]
    assert subs == [Submodel(3, 0, True)] * 2 + [Submodel(6, 3, True), Submodel(9, 6, True), Submodel(12, 9, True),
                                                 Submodel(12, 9, True)]
    assert mslt.submodel(33, 0) is None and mslt.submodel(40, 0) is None
    assert mslt.boundary(1).copies == ((0, 3), (1, 4), (2, 5))  # the top 3 -> the next 3
    assert mslt.boundary(2).copies == ((3, 6), (4, 7), (5, 8))
    assert mslt.boundary(3).copies == ((6, 9), (7, 10), (8, 11))
    assert mslt.boundary(4).copies == () and mslt.boundary(4).reset == ()
    assert all(Submodel(d, t, True).frozen_input == (t > 0) for d, t in ((3, 0), (6, 3)))
    assert Submodel(3, 0).frozen_input  # Algorithm 2: embedding output detached

    share = ShareThenUnshareSchedule(12, *parse_share_until("3000"))
    assert share.submodel(1, 2999) == Submodel(12, 0, True, True) and share.submodel(1, 3000) is None
    assert share.boundary(0).copies == tuple((0, i) for i in range(1, 12)) and share.boundary(1).untie
    share = ShareThenUnshareSchedule(12, *parse_share_until("epoch:10"))
    assert share.phase(10, 10**6) == 0 and share.phase(11, 0) == 1


@pytest.mark.parametrize("text", ["", "3", "3:5,6", "a:b", "3:5;6:7", "6:5,3:7", "3:5,3:7", "0:5,6:7", "3:0,6:7",
                                  "3:5,,6:7"])
def test_malformed_stacking_schedules_are_refused(text):
    with pytest.raises(ValueError, match="--stacking-schedule"):
        parse_stacking_schedule(text)


def test_share_until_parsing():
    assert parse_share_until("3000") == ("update", 3000)
    assert parse_share_until("epoch:2") == ("epoch", 2)
    assert parse_share_until("updates:7") == ("update", 7)
    for bad in ("epoch:", "epoch:x", "2.5", "-3", "0", "epoch:0", "epochs 2"):
        with pytest.raises(ValueError, match="--share-layers-until"):
            parse_share_until(bad)


# --------------------------------------------------------------------------------------------
# each method on the built-in corpus, through fairseq-train


@pytest.fixture(scope="module")
def scratch_run(tiny_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch")
    log = train_in_process(base_args(tiny_bin, "--max-epoch", "3", "--save-dir", str(out / "ckpt"),
                                     "--submodel-trace", str(out / "trace")))
    return read_trace(out / "trace"), log


def test_stackbert(tiny_bin, tmp_path, scratch_run):
    """Depth 1 for an epoch, stacked to 2 (layer 1 <- layer 0), an epoch, stacked to 4 (layers
    2, 3 <- 0, 1), an epoch: depths, copies, untouched upper layers, Adam state reset, FLOPs."""
    argv = base_args(tiny_bin, "--stacking-schedule", "1:1,2:1,4:1", "--max-epoch", "3",
                     "--save-dir", str(tmp_path / "ckpt"), "--submodel-trace", str(tmp_path / "trace"))
    log = train_in_process(argv)
    trace = read_trace(tmp_path / "trace")
    epochs = by_epoch(trace)
    assert sorted(epochs) == [1, 2, 3] and all(len(v) >= 5 for v in epochs.values())
    for epoch, depth in ((1, 1), (2, 2), (3, 4)):
        assert {(r["depth"], r["trainable_from"], r["train_embeddings"], r["shared"]) for r in epochs[epoch]} \
            == {(depth, 0, True, False)}
    # the trace's first digests are the initial model's layers
    init = initial_model(argv)
    init_sd = init.state_dict()
    assert trace[0]["digests"] == layer_digests(init)
    first = trace[0]["digests"]
    # layers above the active depth stay bit-identical to their init until activated
    assert all(r["digests"][1:] == first[1:] for r in epochs[1])
    assert all(r["digests"][2:] == first[2:] for r in epochs[2])
    # boundaries: at the first update of epochs 2 and 3, and only there
    assert [(r["num_updates"], [b["index"] for b in r["boundaries"]]) for r in trace if r["boundaries"]] == \
        [(epochs[2][0]["num_updates"], [1]), (epochs[3][0]["num_updates"], [2])]
    b2, b3 = epochs[2][0], epochs[3][0]
    assert b2["boundaries"][0]["copies"] == [[0, 1]] and b3["boundaries"][0]["copies"] == [[0, 2], [1, 3]]
    assert b2["digests"][1] == b2["digests"][0] != first[1]  # layer n+i == layer i after the stacking
    assert b3["digests"][2:] == b3["digests"][:2] and b3["digests"][0] != b3["digests"][1]
    assert "StackBERT: stacked depth 1 -> 2" in log and "StackBERT: stacked depth 2 -> 4" in log
    assert "optimizer state of layers 2..3 reset" in log
    # the checkpoints: layers above the active depth are their init; the embeddings train
    ck1, ck2, ck3 = (load(tmp_path / "ckpt" / f"checkpoint{e}.pt") for e in (1, 2, 3))
    assert all(same_layer(ck1["model"], i, init_sd, i) for i in (1, 2, 3))
    assert not same_layer(ck1["model"], 0, init_sd, 0)
    assert all(same_layer(ck2["model"], i, init_sd, i) for i in (2, 3))
    pos = PREFIX + "embed_positions.weight"
    assert not torch.equal(ck1["model"][pos], init_sd[pos])
    # Adam state: none for layers not yet active; reset at the boundary (step counts from there)
    names = [n for n, _ in init.named_parameters()]
    n1, n2, n3 = (len(epochs[e]) for e in (1, 2, 3))
    for ck, epoch, expect in ((ck1, 1, [n1, None, None, None]), (ck2, 2, [n1 + n2, n2, None, None]),
                              (ck3, 3, [n1 + n2 + n3, n2 + n3, n3, n3])):
        steps = adam_steps(ck, names)
        for i, step in enumerate(expect):
            assert {steps[n] for n in names if n.startswith(f"{PREFIX}layers.{i}.")} == {step}, (epoch, i, steps)
        assert steps[pos] == sum(len(epochs[e]) for e in epochs if e <= epoch)  # embeddings train throughout
    assert ck2["extra_state"]["B2BMaskedLMTask"]["boundary"] == 1
    # FLOPs: the formula for the active shape; at full depth the same per-update FLOPs as scratch
    vocab = init_sd[PREFIX + "embed_tokens.weight"].shape[0]
    check_flops(trace, log, vocab)
    scratch = {r["num_updates"]: r for r in scratch_run[0]}
    assert all(r["update_flops"] == scratch[r["num_updates"]]["update_flops"] for r in epochs[3])
    assert all(r["update_flops"] < scratch[r["num_updates"]]["update_flops"] for r in epochs[1] + epochs[2])
    # the final checkpoint is a plain fairseq checkpoint of the full target arch
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ckpt" / "checkpoint3.pt")])
    assert cfg.model._name == ARCH and models[0].depth == LAYERS


def test_mslt(tiny_bin, tmp_path):
    """Stage 1: a 2-layer model, all trained; stage 2: layers 2, 3 <- copies of 0, 1, only they
    and the head train (layers 0, 1 and the embedding block frozen, bit-identical); then full."""
    argv = base_args(tiny_bin, "--mslt-layers", "2", "--mslt-stage-epochs", "1", "--max-epoch", "3",
                     "--save-dir", str(tmp_path / "ckpt"), "--submodel-trace", str(tmp_path / "trace"))
    log = train_in_process(argv)
    trace = read_trace(tmp_path / "trace")
    epochs = by_epoch(trace)
    shapes = {e: {(r["depth"], r["trainable_from"], r["frozen_input"]) for r in epochs[e]} for e in epochs}
    assert shapes == {1: {(2, 0, False)}, 2: {(4, 2, True)}, 3: {(4, 0, False)}}
    assert [r["stage"] for r in epochs[3]] == [2] * len(epochs[3])  # the parent's full-model step
    init = initial_model(argv)
    init_sd = init.state_dict()
    first = trace[0]["digests"]
    assert first == layer_digests(init)
    assert all(r["digests"][2:] == first[2:] for r in epochs[1])
    b2 = epochs[2][0]
    assert b2["boundaries"] == [{"index": 1, "copies": [[0, 2], [1, 3]], "reset": [2, 3], "untie": False}]
    assert b2["digests"][2:] == b2["digests"][:2]
    assert all(r["digests"][:2] == b2["digests"][:2] for r in epochs[2])  # frozen layers bit-identical
    assert epochs[3][0]["boundaries"] == [{"index": 2, "copies": [], "reset": [], "untie": False}]
    assert "MSLT: stage 2/2: layers 2..3 <- copies of the top layers 0..1" in log
    assert "MSLT: full-model training of all 4 layers" in log
    ck1, ck2, ck3 = (load(tmp_path / "ckpt" / f"checkpoint{e}.pt")["model"] for e in (1, 2, 3))
    assert all(same_layer(ck1, i, init_sd, i) for i in (2, 3))
    assert all(same_layer(ck2, i, ck1, i) for i in (0, 1)) and not any(same_layer(ck2, i, ck1, i) for i in (2, 3))
    frozen = [k for k in ck1 if "embed_positions" in k or "layernorm_embedding" in k]
    assert len(frozen) == 3 and all(torch.equal(ck1[k], ck2[k]) for k in frozen)
    assert not any(torch.equal(ck2[k], ck3[k]) for k in frozen)
    head = ["encoder.lm_head.dense.weight", PREFIX + "embed_tokens.weight"]  # the tied matrix is the head's output
    assert not any(torch.equal(ck1[k], ck2[k]) for k in head)
    assert not any(same_layer(ck3, i, ck2, i) for i in range(4))
    check_flops(trace, log, init_sd[PREFIX + "embed_tokens.weight"].shape[0])


def test_share_then_unshare(tiny_bin, tmp_path, scratch_run):
    """Epoch 1: all layers share layer 0's weights (checkpoint: 4 equal layers; no Adam state
    but layer 0's); epoch 2: untied - each layer continues from the shared weights and from
    layer 0's Adam state, and the layers diverge. FLOPs: those of the full model."""
    argv = base_args(tiny_bin, "--share-layers-until", "epoch:1", "--max-epoch", "2",
                     "--save-dir", str(tmp_path / "ckpt"), "--submodel-trace", str(tmp_path / "trace"))
    log = train_in_process(argv)
    trace = read_trace(tmp_path / "trace")
    epochs = by_epoch(trace)
    assert {(r["depth"], r["shared"]) for r in epochs[1]} == {(LAYERS, True)}
    assert {(r["depth"], r["shared"], r["stage"]) for r in epochs[2]} == {(LAYERS, False, 2)}
    assert trace[0]["boundaries"][0]["index"] == 0  # tied before the first update
    assert all(len(set(r["digests"])) == 1 for r in epochs[1] + epochs[2][:1])  # one set of weights
    assert epochs[2][0]["boundaries"] == [{"index": 1, "copies": [], "reset": [], "untie": True}]
    assert len(set(epochs[2][1]["digests"])) == LAYERS  # untied: they diverge from the next update on
    assert "share-then-unshare: layers untied after epoch 1" in log
    ck1, ck2 = (load(tmp_path / "ckpt" / f"checkpoint{e}.pt") for e in (1, 2))
    assert all(same_layer(ck1["model"], i, ck1["model"], 0) for i in range(1, LAYERS))
    names = param_names(argv)
    n1, n2 = len(epochs[1]), len(epochs[2])
    for ck, expect in ((ck1, [n1, None, None, None]), (ck2, [n1 + n2] * LAYERS)):
        steps = adam_steps(ck, names)
        for i, step in enumerate(expect):
            assert {steps[n] for n in names if n.startswith(f"{PREFIX}layers.{i}.")} == {step}, (i, steps)
    vocab = ck1["model"][PREFIX + "embed_tokens.weight"].shape[0]
    check_flops(trace, log, vocab)
    scratch = {r["num_updates"]: r for r in scratch_run[0]}
    assert all(r["update_flops"] == scratch[r["num_updates"]]["update_flops"] for r in trace)


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_untie_keeps_the_function(tiny_bin, family):
    """--share-layers-until 3 (an update count): gradients of all applications go to layer 0,
    the other layers mirror it, the untie changes no logit (|diff| <= 1e-6) and copies layer 0's
    Adam state to every layer; the next update makes the layers differ."""
    task_name, arch = ("b2b_masked_lm", ARCH) if family == "bert" else ("b2b_language_modeling", "b2b_gpt_mini")
    cfg, task, trainer = build_trainer_seeded(base_args(tiny_bin, "--share-layers-until", "3", "--max-epoch", "2",
                                                 arch=arch, task=task_name))
    model = trainer.get_model()
    owner = model.layer_stack_owner()
    itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)
    trainer.begin_epoch(1)
    batches = [trainer._prepare_sample(b)[0] for b, _ in zip(itr, range(5))]
    # one shared update by hand: only layer 0 (and the non-layer parameters) get gradients
    trainer.zero_grad()
    task.train_step(batches[0], trainer.model, trainer.criterion, trainer.optimizer, 0)
    assert all(p.grad is not None for p in owner.layers[0].parameters())
    assert all(p.grad is None for layer in owner.layers[1:] for p in layer.parameters())
    assert len(set(layer_digests(model))) == 1  # tied at the first update
    trainer.zero_grad()
    for b in batches[:3]:
        trainer.train_step([b])
    assert trainer.get_num_updates() == 3 and len(set(layer_digests(model))) == 1
    net_input = batches[3]["net_input"]

    def logits():
        model.eval()
        with torch.no_grad():
            return model(**net_input)[0].detach().clone()

    shared = logits()
    with model.shared_layers():  # the mirrored model computes the shared function
        assert torch.equal(logits(), shared)
    task._enter_phase(model, trainer.optimizer, 3)  # the untie, as train_step of update 4 does it
    assert (logits() - shared).abs().max().item() <= 1e-6
    state = trainer.optimizer.optimizer.state
    for layer in owner.layers[1:]:
        for p, p0 in zip(layer.parameters(), owner.layers[0].parameters()):
            assert state[p]["step"] == state[p0]["step"] == 3
            assert torch.equal(state[p]["exp_avg"], state[p0]["exp_avg"])
            assert torch.equal(state[p]["exp_avg_sq"], state[p0]["exp_avg_sq"])
            assert state[p]["exp_avg"] is not state[p0]["exp_avg"]
    trainer.train_step([batches[3]])
    assert len(set(layer_digests(model))) == len(owner.layers)
    assert task._applied == 1


# --------------------------------------------------------------------------------------------
# validation, FLOPs against torch's counter


def _count_layer_calls(model):
    calls = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
               for i, layer in enumerate(model.layer_stack_owner().layers)]
    return calls, handles


def _full_batch(trainer, task):
    pad = task.source_dictionary.pad()
    for b in trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False):
        if b["net_input"]["src_tokens"].shape == (8, 32) and b["net_input"]["src_tokens"].ne(pad).all():
            return trainer._prepare_sample(b)[0]
    raise AssertionError("no pad-free batch")


@pytest.mark.parametrize("method,opts,phases,family", [
    ("StackBERT", ["--stacking-schedule", "2:1,4:1"], [(1, 2, 0), (2, 4, 0)], "bert"),
    ("MSLT", ["--mslt-layers", "2", "--mslt-stage-epochs", "1"], [(1, 2, 0), (2, 4, 2), (3, 4, 0)], "bert"),
    ("share", ["--share-layers-until", "epoch:1"], [(1, 4, 0), (2, 4, 0)], "bert"),
    ("StackBERT", ["--stacking-schedule", "1:1,2:1,4:1"], [(1, 1, 0), (2, 2, 0), (3, 4, 0)], "gpt"),
    ("MSLT", ["--mslt-layers", "1", "--mslt-stage-epochs", "1"], [(1, 1, 0), (2, 2, 1), (4, 4, 3), (5, 4, 0)], "gpt"),
    ("share", ["--share-layers-until", "epoch:1"], [(1, 4, 0), (2, 4, 0)], "gpt"),
], ids=["stackbert-bert", "mslt-bert", "share-bert", "stackbert-gpt", "mslt-gpt", "share-gpt"])
def test_flops_equal_executed_and_validation_runs_the_active_depth(tiny_bin, method, opts, phases, family):
    """Per phase: the metered FLOPs equal the matmul FLOPs torch executes on a pad-free batch
    (layers below MSLT's trained block forward-only, no input gradient above them); validation
    in training runs the active depth; outside training the model has all its layers."""
    # attention dropout on: with p = 0 torch runs attention as one fused SDPA kernel, whose
    # FLOPs FlopCounterMode does not count on CPU (the meter does)
    arch, task_name = (ARCH, "b2b_masked_lm") if family == "bert" else ("b2b_gpt_mini", "b2b_language_modeling")
    cfg, task, trainer = build_trainer_seeded(base_args(tiny_bin, *opts, "--max-epoch", "5", "--sample-break-mode", "none",
                                                 "--attention-dropout", "0.1", arch=arch, task=task_name))
    model = trainer.get_model()
    batch = _full_batch(trainer, task)
    calls, handles = _count_layer_calls(model)
    try:
        task.valid_step(batch, model, trainer.criterion)  # no step taken yet: the whole model
        assert calls == [0, 1, 2, 3]
        for update, (epoch, depth, trainable_from) in enumerate(phases):
            task.begin_epoch(epoch, model)
            trainer.zero_grad()
            before = task.train_flops
            with FlopCounterMode(display=False) as counter:
                log = task.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, update)[2]
            task.reduce_metrics([log], trainer.get_criterion())
            assert task.train_flops - before == counter.get_total_flops() > 0, (method, family, epoch)
            sub = task.submodel_for(update)
            assert ((sub.depth, sub.trainable_from) if sub else (4, 0)) == (depth, trainable_from)
            del calls[:]
            task.valid_step(batch, model, trainer.criterion)
            assert calls == list(range(depth)), (method, epoch, calls)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("fp16", ["--fp16", "--memory-efficient-fp16"])
@pytest.mark.parametrize("method", ["stackbert", "share"])
def test_boundaries_with_fp16_optimizers(tiny_bin, fp16, method):
    """With --fp16 the optimizer updates fp32 master copies: a boundary writes those too (else
    the next step would copy the stale masters back over the stacked weights) and the untie
    copies the masters' Adam state."""
    opts = ["--stacking-schedule", "1:1,4:1"] if method == "stackbert" else ["--share-layers-until", "2"]
    cfg, task, trainer = build_trainer_seeded(base_args(tiny_bin, *opts, "--max-epoch", "2", fp16))
    assert fp16 == "--memory-efficient-fp16" or cfg.common.fp16_no_flatten_grads  # per-parameter masters
    opt = trainer.optimizer
    master = dict(zip(map(id, opt.fp16_params), opt.fp32_params)) if fp16 == "--fp16" else {}
    inner = opt.fp32_optimizer.optimizer if fp16 == "--fp16" else opt.optimizer
    model = trainer.get_model()
    layers = model.layer_stack_owner().layers
    itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)
    trainer.begin_epoch(1)
    batches = [b for b, _ in zip(itr, range(3))]
    for b in batches[:2]:
        trainer.train_step([b])
    if method == "stackbert":
        trainer.begin_epoch(2)
    init1 = [p.detach().float().clone() for p in layers[1].parameters()]
    w0 = [p.detach().float().clone() for p in layers[0].parameters()]
    task._enter_phase(model, opt, 2)
    for p, p0 in zip(layers[1].parameters(), layers[0].parameters()):
        assert torch.equal(p, p0)
        if master:
            assert torch.equal(master[id(p)], master[id(p0)])
        if method == "share":  # untie: layer 0's state (of the masters) copied
            st, st0 = inner.state[master.get(id(p), p)], inner.state[master.get(id(p0), p0)]
            assert st["step"] == st0["step"] == 2 and torch.equal(st["exp_avg_sq"], st0["exp_avg_sq"])
    trainer.train_step([batches[2]])
    # one Adam step (lr 1e-3) away from the copied weights (StackBERT: far from layer 1's own init)
    for p, a, b in zip(layers[1].parameters(), w0, init1):
        if p.dim() == 2:
            assert (p.float() - a).abs().max() < 5e-3
            assert method == "share" or (p.float() - b).abs().max() > 5e-3


@pytest.mark.parametrize("preset", ["cpu-full", "gpu"])
def test_the_experiment_runners_baseline_commands(tiny_bin, preset):
    """b2b-experiment's StackBERT / MSLT / share-then-unshare / scratch commands (its cpu-full and gpu
    presets) build the schedule they name."""
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from fairseq_b2b.experiment import PRESETS, plan

    expect = {"StackBERT": "StackBERT", "MSLT": "MSLT", "share-then-unshare": "share-then-unshare", "scratch": "full"}
    runs = [r for r in plan(PRESETS[preset], ("bert",), updates_per_epoch=10)
            if r.label in expect and r.group == "main" and r.seed == 1]
    assert sorted(r.label for r in runs) == sorted(expect)
    for run in runs:
        argv = [tiny_bin, *run.argv, "--cpu"]
        cfg = convert_namespace_to_omegaconf(parse_training_args(argv))
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        assert task._schedule.method == expect[run.label]
        if run.label in ("StackBERT", "MSLT"):
            assert task._schedule.phases[-1][0].depth == model.depth
            assert task._schedule.starts[-1] <= cfg.optimization.max_epoch


# --------------------------------------------------------------------------------------------
# resume


@pytest.mark.parametrize("method,opts,boundary,once,later,last", [
    ("StackBERT", ["--stacking-schedule", "1:1,2:1,4:1", "--max-epoch", "3"], 1, "stacked depth 1 -> 2",
     "stacked depth 2 -> 4", 2),
    ("MSLT", ["--mslt-layers", "2", "--mslt-stage-epochs", "1", "--max-epoch", "3"], 1, "MSLT: stage 2/2",
     "MSLT: full-model training", 2),
    ("share-then-unshare", ["--share-layers-until", "epoch:1", "--max-epoch", "2"], 1, "layers untied after", None, 1),
], ids=["stackbert", "mslt", "share"])
def test_resume_right_after_a_boundary(tiny_bin, tmp_path, method, opts, boundary, once, later, last):
    """Stopped one update after a boundary (StackBERT's 1 -> 2 stacking, MSLT's stage 2, the
    untie) and resumed: the same updates, losses, layer digests and FLOPs as the uninterrupted
    run and the same final weights; the boundary's copy is not applied a second time."""
    def args(name, *extra):
        return base_args(tiny_bin, *opts, "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4",
                         "--no-epoch-checkpoints", "--save-dir", str(tmp_path / name),
                         "--submodel-trace", str(tmp_path / f"{name}.trace"), *extra)

    train_in_process(args("a"))
    trace_a = read_trace(tmp_path / "a.trace")
    stop = next(r["num_updates"] for r in trace_a if any(b["index"] == boundary for b in r["boundaries"]))
    first = train_in_process(args("b", "--max-update", str(stop)))
    assert once in first
    second = train_in_process(args("b"))
    assert f"{method} boundary {boundary} already applied" in second
    assert once not in second and (later is None or later in second)
    assert "tied to layer 0's weights" not in second
    trace_b = read_trace(tmp_path / "b.trace")
    key = ("num_updates", "epoch", "depth", "trainable_from", "shared", "loss", "update_flops", "train_flops",
           "digests", "boundaries")
    assert [[r[k] for k in key] for r in trace_b] == [[r[k] for k in key] for r in trace_a]
    sd_a, sd_b = (load(tmp_path / n / "checkpoint_last.pt") for n in ("a", "b"))
    assert all(torch.equal(sd_a["model"][k], sd_b["model"][k]) for k in sd_a["model"])
    assert sd_b["extra_state"]["B2BMaskedLMTask"] == {"train_flops": trace_a[-1]["train_flops"],
                                                      "schedule": method, "boundary": last}


# --------------------------------------------------------------------------------------------
# scratch and DirectCopy: no schedule, same tasks, same meter


def test_scratch_and_directcopy_are_metered_alike(tiny_bin, tmp_path, small_bert, scratch_run):
    trace_s, log_s = scratch_run
    assert {(r["depth"], r["trainable_from"], r["stage"], r["method"]) for r in trace_s} == {(4, 0, 2, "full")}
    vocab = load(small_bert)["model"][PREFIX + "embed_tokens.weight"].shape[0]
    check_flops(trace_s, log_s, vocab)
    # the source was trained with 64-token samples: the same position table (FLOPs do not depend on it)
    log = train_in_process(base_args(tiny_bin, "--init-from-small", small_bert, "--growth-method", "direct_copy",
                                     "--max-positions", "64", "--max-epoch", "1", "--save-dir", str(tmp_path / "ckpt"),
                                     "--submodel-trace", str(tmp_path / "trace")))
    trace = read_trace(tmp_path / "trace")
    check_flops(trace, log, vocab)
    assert [r["update_flops"] for r in trace] == [r["update_flops"] for r in trace_s[:len(trace)]]
    assert "two-stage training off (--submodel-epochs 0): full-model training, FLOPs metered" in log


# --------------------------------------------------------------------------------------------
# bad input: one-line errors before training


def _cli_error(argv):
    from fairseq_b2b.cli import train

    with pytest.raises(SystemExit) as e:
        train.main(argv)
    return str(e.value.code)


@pytest.mark.parametrize("opts,needle", [
    (["--stacking-schedule", "1:1,2:1"], "ends at depth 2 but the target model has 4 layers"),
    (["--stacking-schedule", "1:2,4:2"], "needs 4 epochs but --max-epoch is 3"),
    (["--stacking-schedule", "1:1,4"], "is malformed at '4'"),
    (["--stacking-schedule", "2:1,1:1"], "depth 1 does not grow from 2"),
    (["--stacking-schedule", "1:1,4:1", "--submodel-epochs", "1"],
     "cannot be combined with stage-1 sub-model training (--submodel-epochs 1"),
    (["--mslt-layers", "2", "--submodel-epochs", "5"], "--mslt-layers 2 cannot be combined with stage-1"),
    (["--stacking-schedule", "1:1,4:1", "--mslt-layers", "2"], "are different training methods"),
    (["--stacking-schedule", "1:1,4:1", "--share-layers-until", "5"], "are different training methods"),
    (["--mslt-layers", "2", "--share-layers-until", "epoch:1"], "are different training methods"),
    (["--mslt-layers", "3"], "--mslt-layers 3 does not divide the target model's 4 layers"),
    (["--mslt-layers", "2", "--mslt-stage-epochs", "2"], "needs 2 stages = 4 epochs but --max-epoch is 3"),
    (["--mslt-stage-epochs", "2"], "--mslt-stage-epochs needs --mslt-layers"),
    (["--share-layers-until", "epoch:two"], "--share-layers-until 'epoch:two' is malformed"),
    (["--share-layers-until", "epoch:3"], "never unshares: the run stops at --max-epoch 3"),
    (["--share-layers-until", "40", "--max-update", "40"], "never unshares: the run stops at --max-update 40"),
])
def test_bad_schedules_are_one_line_errors(tiny_bin, tmp_path, opts, needle):
    argv = base_args(tiny_bin, "--max-epoch", "3", "--save-dir", str(tmp_path), *opts)
    message = _cli_error(argv)
    assert message.startswith("fairseq-b2b: error: ") and needle in message and "\n" not in message, message
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_bad_schedule_cli_prints_one_line(tiny_bin, tmp_path, capsys, monkeypatch):
    from conftest import b2b_train_main, exit_line

    last = exit_line(lambda argv: b2b_train_main(argv, monkeypatch),  # a non-zero exit, no traceback
                     base_args(tiny_bin, "--stacking-schedule", "3:5,6", "--save-dir", str(tmp_path)), capsys)
    assert last == (
        "fairseq-b2b: error: --stacking-schedule '3:5,6' is malformed at '6': pass depth:epochs pairs separated "
        "by commas with increasing depths, e.g. 3:5,6:7,12:28")
