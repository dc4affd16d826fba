"""Two-stage pre-training (Algorithm 2): sub-model sampling, restricted updates, resume,
data-parallel training and bad input, on real text with tiny models."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")

import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import build_trainer, parse_training_args, train_in_process  # noqa: E402
from fairseq_b2b.tasks.two_stage import Submodel, SubmodelSampler, submodels  # noqa: E402

TRAIN = [os.path.join(os.path.dirname(sys.executable), "b2b-train")]


# --------------------------------------------------------------------------------------------
# helpers


def run_train(argv, env=None, timeout=300):
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(TRAIN + argv, capture_output=True, text=True, env=full_env, timeout=timeout)


def read_trace(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def json_logs(text, tag):
    out = []
    for line in text.splitlines():
        if line.startswith(f"INFO:{tag}:{{"):
            out.append(json.loads(line.split(":", 2)[2]))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common(batch_size=8):
    return ["--optimizer", "adam", "--lr", "1e-3", "--weight-decay", "0.01", "--tokens-per-sample", "32",
            "--batch-size", str(batch_size), "--required-batch-size-multiple", "1", "--cpu", "--log-format", "json",
            "--log-interval", "1", "--num-workers", "0"]


COMMON = common()


# --------------------------------------------------------------------------------------------
# sub-models and the sampler (Algorithm 2, lines 2 and 5)


def test_submodels_divisible_and_not():
    assert submodels(6, 2) == (Submodel(2, 0), Submodel(4, 2), Submodel(6, 4))
    assert submodels(4, 4) == (Submodel(4, 0),)
    # Lt not divisible by lb: the last sub-model is the full Lt, whose top lb layers train
    assert submodels(5, 2) == (Submodel(2, 0), Submodel(4, 2), Submodel(5, 3))
    assert submodels(4, 3) == (Submodel(3, 0), Submodel(4, 1))
    with pytest.raises(ValueError):
        submodels(4, 5)
    with pytest.raises(ValueError):
        submodels(4, 0)


def test_sampler_is_a_pure_function_of_seed_and_update():
    a, b = SubmodelSampler(12, 3, seed=7), SubmodelSampler(12, 3, seed=7)
    seq = [a.sample(u) for u in range(400)]
    assert seq == [b.sample(u) for u in range(400)]
    assert [a.sample(u) for u in range(200, 400)] == seq[200:]  # no hidden state: resume-safe
    assert seq != [SubmodelSampler(12, 3, seed=8).sample(u) for u in range(400)]
    counts = {s: seq.count(s) for s in a.submodels}
    assert set(counts) == set(a.submodels) and min(counts.values()) > 60  # ~uniform over the 4


# --------------------------------------------------------------------------------------------
# restricted stage-1 updates (Algorithm 2, line 7)


def _active_names(family, names, sub):
    prefix = "encoder.sentence_encoder." if family == "bert" else "decoder."
    active = set()
    for n in names:
        if n.startswith(prefix + "layers."):
            if sub.trainable_from <= int(n[len(prefix + "layers."):].split(".")[0]) < sub.depth:
                active.add(n)
        elif n == prefix + "embed_tokens.weight":  # tied: the head's output projection
            active.add(n)
        elif family == "bert" and n.startswith("encoder.lm_head."):
            active.add(n)
        elif family == "gpt" and (n.startswith("decoder.layer_norm.") or n.startswith("decoder.output_projection.")):
            active.add(n)
    return active


def _snapshot(trainer):
    from fairseq.optim.fp16_optimizer import FP16Optimizer

    opt = trainer.optimizer
    mapping = {}
    if isinstance(opt, FP16Optimizer):
        mapping = {id(a): b for a, b in zip(opt.fp16_params, opt.fp32_params)}
    inner = opt.optimizer
    params, state = {}, {}
    for name, p in trainer.get_model().named_parameters():
        params[name] = p.detach().clone()
        held = mapping.get(id(p), p)
        st = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in inner.state.get(held, {}).items()}
        if mapping:
            st["fp32_master"] = held.detach().clone()
        state[name] = st
    return params, state


def _same_state(a, b):
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


ON_CUDA = "on-cuda"  # marker in ``extra``: run on the GPU (the test skips without one)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (real fp16 kernels)")


@pytest.mark.parametrize("family,arch,lb,extra", [
    ("bert", "b2b_bert_tiny_deep", 1, []),
    ("bert", "b2b_bert_tiny_deep", 3, ["--memory-efficient-fp16", "--lr", "5e-3"]),
    ("gpt", "b2b_gpt_mini", 3, ["--fp16", "--lr", "5e-3"]),
    pytest.param("bert", "b2b_bert_tiny_deep", 3, ["--fp16", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
    pytest.param("gpt", "b2b_gpt_mini", 3, ["--memory-efficient-fp16", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
    pytest.param("bert", "b2b_bert_tiny_deep", 3, ["--bf16", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
    pytest.param("gpt", "b2b_gpt_mini", 3, ["--bf16", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
    pytest.param("bert", "b2b_bert_tiny_deep", 3, ["--amp", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
    pytest.param("gpt", "b2b_gpt_mini", 3, ["--amp", "--lr", "5e-3", ON_CUDA], marks=needs_cuda),
], ids=["bert-fp32-lb1", "bert-memory-efficient-fp16-lb3", "gpt-fp16-lb3", "bert-cuda-fp16-lb3",
        "gpt-cuda-memory-efficient-fp16-lb3", "bert-cuda-bf16-lb3", "gpt-cuda-bf16-lb3", "bert-cuda-amp-lb3",
        "gpt-cuda-amp-lb3"])
def test_stage1_updates_only_the_active_parameters(small_bin, family, arch, lb, extra):
    """After every stage-1 update, parameters outside the sampled sub-model's top lb layers and
    the head are bit-identical, and so is their Adam state (moments, step; fp32 master copy);
    the updated ones changed. Weight decay is on and, as under legacy_ddp, inactive parameters
    get zero gradients, so a drifting update would show."""
    task_name = "b2b_masked_lm" if family == "bert" else "b2b_language_modeling"
    common_args = [a for a in COMMON if a != "--cpu"] if ON_CUDA in extra else COMMON
    extra = [a for a in extra if a != ON_CUDA]
    cfg, task, trainer = build_trainer([small_bin, "--task", task_name, "--arch", arch, "--submodel-epochs", "1",
                                        "--submodel-layers", str(lb), "--max-epoch", "2", "--seed", "3"] + common_args
                                       + extra)
    if "--fp16" in extra or "--bf16" in extra:  # forced per-parameter master copies, logged
        assert cfg.common.fp16_no_flatten_grads and not trainer.optimizer.has_flat_params
    itr = trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=True)
    trainer.begin_epoch(1)
    names = [n for n, _ in trainer.get_model().named_parameters()]

    def all_reduce_grads(module):  # what legacy_ddp does: zero gradients for unused parameters
        for p in module.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)

    trainer.optimizer.all_reduce_grads = all_reduce_grads
    seen, updates = set(), 0
    for u, batch in zip(range(8), itr):
        sub = task.submodel_for(trainer.get_num_updates())
        assert sub is not None and sub == task._sampler.sample(trainer.get_num_updates())
        before_p, before_s = _snapshot(trainer)
        n0 = trainer.get_num_updates()
        trainer.train_step([batch])
        if trainer.get_num_updates() == n0:  # fp16 overflow: skipped update, nothing may move
            after_p, after_s = _snapshot(trainer)
            assert all(torch.equal(before_p[n], after_p[n]) for n in names)
            continue
        updates += 1
        seen.add(sub)
        after_p, after_s = _snapshot(trainer)
        active = _active_names(family, names, sub)
        assert len(active) < len(names)
        for n in names:
            if n in active:
                assert not _same_state(before_s[n], after_s[n]), f"{n} was not stepped at update {n0} ({sub})"
                # the key bias has an exactly-zero gradient (softmax is shift-invariant): it may stay
                if not n.endswith("k_proj.bias"):
                    assert not torch.equal(before_p[n], after_p[n]), f"{n} did not change at update {n0} ({sub})"
            else:
                assert torch.equal(before_p[n], after_p[n]), f"{n} changed at update {n0} ({sub})"
                assert _same_state(before_s[n], after_s[n]), f"optimizer state of {n} changed at update {n0} ({sub})"
    assert updates >= 6 and len(seen) >= 2
    # Positional embeddings never move in stage 1 and never acquire Adam state.
    pos = next(n for n in names if "embed_positions" in n)
    assert not any(k for k in _snapshot(trainer)[1][pos] if k != "fp32_master")


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_stage1_runs_lower_layers_without_autograd(small_bin, family):
    """Layers below the top lb and the embedding block take no part in the backward pass (no
    gradient at all, before any DDP or optimizer); the tied embedding gets its gradient through
    the head's output projection only; the model is whole again after the update."""
    task_name, arch = ("b2b_masked_lm", "b2b_bert_tiny_deep") if family == "bert" else \
        ("b2b_language_modeling", "b2b_gpt_mini")
    cfg, task, trainer = build_trainer([small_bin, "--task", task_name, "--arch", arch, "--submodel-epochs", "1",
                                        "--submodel-layers", "1", "--max-epoch", "2"] + COMMON)
    batch = next(iter(trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)))
    batch = trainer._prepare_sample(batch)[0]
    trainer.begin_epoch(1)
    model = trainer.get_model()
    owner = model.encoder.sentence_encoder if family == "bert" else model.decoder
    layers = owner.layers
    for depth in (3, 1):  # trains layer 2 (layers 0, 1 under no_grad); trains layer 0 (embedding detached)
        u = next(u for u in range(100) if task.submodel_for(u).depth == depth)
        trainer.zero_grad()
        task.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, u)
        for i in range(4):
            grads = [p.grad is not None for p in layers[i].parameters()]
            assert all(grads) if i == depth - 1 else not any(grads), (depth, i)
        assert owner.embed_positions.weight.grad is None
        assert owner.embed_tokens.weight.grad is not None  # tied: the head's output projection
        assert len(owner.layers) == 4 and all(type(x).__name__ != "_NoGrad" for x in owner.layers)
    # stage 2: the parent task's step, every parameter gets a gradient
    task.begin_epoch(2, model)
    assert task.submodel_for(u) is None
    trainer.zero_grad()
    task.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, u)
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# resume


def _events_with_tag(logdir, tag):
    """Values of ``tag`` in the tensorboard event files under ``logdir`` (TFRecord framing)."""
    import struct

    from tensorboardX.proto import event_pb2

    values = []
    for root, _, files in os.walk(logdir):
        for fn in files:
            if "tfevents" not in fn:
                continue
            with open(os.path.join(root, fn), "rb") as f:
                data = f.read()
            pos = 0
            while pos + 12 <= len(data):
                (length,) = struct.unpack("<Q", data[pos:pos + 8])
                event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
                pos += 12 + length + 4
                for v in event.summary.value:
                    if v.tag == tag:
                        values.append((event.step, v.simple_value))
    return values


def test_resume_in_stage1_equals_uninterrupted_run(small_bin, tmp_path):
    base = [small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_deep", "--submodel-epochs", "2",
            "--submodel-layers", "1", "--max-epoch", "3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "4",
            "--seed", "5", "--no-epoch-checkpoints"] + COMMON
    full = train_in_process(base + ["--save-dir", str(tmp_path / "a"), "--submodel-trace", str(tmp_path / "a.trace"),
                                    "--tensorboard-logdir", str(tmp_path / "tb")])
    trace_a = read_trace(tmp_path / "a.trace")
    per_epoch = sum(1 for r in trace_a if r["epoch"] == 1)
    stop = per_epoch + per_epoch // 2  # mid-epoch 2, still stage 1
    assert trace_a[stop]["stage"] == 1 and trace_a[-1]["stage"] == 2
    train_in_process(base + ["--save-dir", str(tmp_path / "b"), "--submodel-trace", str(tmp_path / "b.trace"),
                             "--max-update", str(stop)])
    assert len(read_trace(tmp_path / "b.trace")) == stop
    second = train_in_process(base + ["--save-dir", str(tmp_path / "b"), "--submodel-trace", str(tmp_path / "b.trace")])
    assert "resumed train_flops" in second
    trace_b = read_trace(tmp_path / "b.trace")
    key = lambda r: (r["num_updates"], r["depth"], r["trainable_from"], r["loss"], r["update_flops"], r["train_flops"])  # noqa: E731
    assert [key(r) for r in trace_b] == [key(r) for r in trace_a]  # same sub-models, same exact losses
    # the cumulative FLOPs in fairseq's json log survive the resume
    last_a = json_logs(full, "train_inner")[-1]
    last_b = json_logs(second, "train_inner")[-1]
    assert last_a["num_updates"] == last_b["num_updates"]
    assert last_a["train_flops"] == last_b["train_flops"] == float(trace_a[-1]["train_flops"])
    valid_a, valid_b = json_logs(full, "valid"), json_logs(second, "valid")  # validation records carry it too
    assert valid_a[-1]["valid_train_flops"] == valid_b[-1]["valid_train_flops"] == last_a["train_flops"]
    sd_a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=False)
    sd_b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)
    assert all(torch.equal(sd_a["model"][k], sd_b["model"][k]) for k in sd_a["model"])
    assert sd_b["extra_state"]["B2BMaskedLMTask"]["train_flops"] == trace_a[-1]["train_flops"]
    # tensorboard carries the cumulative value too (fairseq's in-process writers are closed
    # at exit only: close them here so that every event is on disk)
    from fairseq.logging import progress_bar

    for writer in progress_bar._tensorboard_writers.values():
        writer.close()
    progress_bar._tensorboard_writers.clear()
    tb = dict(_events_with_tag(str(tmp_path / "tb"), "train_flops"))
    assert tb and tb[max(tb)] == pytest.approx(trace_a[-1]["train_flops"], rel=1e-6)


# --------------------------------------------------------------------------------------------
# data-parallel training (2 processes, gloo)

_CPU_DDP_SHIM = textwrap.dedent("""
    # Test-only: fairseq's pytorch_ddp passes device_ids, which DDP rejects for CPU modules.
    import torch
    import fairseq.models.distributed_fairseq_model as dfm

    class CPUDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
        def __init__(self, module, device_ids=None, output_device=None, **kwargs):
            super().__init__(module, **kwargs)

    dfm.DistributedDataParallel = CPUDistributedDataParallel
    from fairseq_b2b.cli.train import main
    main()
""")


def _run_two_ranks(argv, tmp_path, backend, trace):
    port = free_port()
    shim = tmp_path / "cpu_ddp_train.py"
    shim.write_text(_CPU_DDP_SHIM)
    cmd = [sys.executable, str(shim)] if backend == "pytorch_ddp" else TRAIN
    procs = []
    for rank in range(2):
        args = argv + ["--distributed-world-size", "2", "--distributed-rank", str(rank), "--distributed-no-spawn",
                       "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-backend", "gloo",
                       "--ddp-backend", backend, "--device-id", "0", "--submodel-trace", trace]
        procs.append(subprocess.Popen(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=dict(os.environ, OMP_NUM_THREADS="1")))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


def _dp_args(small_bin):
    return [small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_deep", "--submodel-epochs", "1",
            "--submodel-layers", "1", "--max-epoch", "2", "--seed", "2", "--dropout", "0", "--attention-dropout", "0",
            "--no-last-checkpoints", "--no-save-optimizer-state"] + common(batch_size=4)


@pytest.fixture(scope="module")
def dp_reference(small_bin, tmp_path_factory):
    """One process, the same global batch as 2 ranks x 4 (two micro-batches of 4 per update)."""
    out = tmp_path_factory.mktemp("dp_reference")
    train_in_process(_dp_args(small_bin) + ["--update-freq", "2", "--save-dir", str(out),
                                            "--submodel-trace", str(out / "one.trace")])
    return read_trace(out / "one.trace")


def _initial_model(small_bin, seed):
    """The model fairseq-train builds at start (same seed, same build order)."""
    from fairseq import tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = parse_training_args(_dp_args(small_bin))
    cfg = convert_namespace_to_omegaconf(args)
    utils.set_torch_seed(seed)
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model)


@pytest.mark.parametrize("backend", ["legacy_ddp", "pytorch_ddp"])
def test_two_process_data_parallel_matches_one_process(small_bin, tmp_path, backend, dp_reference):
    outs = _run_two_ranks(_dp_args(small_bin) + ["--save-dir", str(tmp_path / "ckpt")], tmp_path, backend,
                          str(tmp_path / "dp.trace"))
    assert "training on 2 devices" in outs[0]
    ranks = [read_trace(tmp_path / "dp.trace"), read_trace(tmp_path / "dp.trace.rank1")]
    assert all(r["world_size"] == 2 for t in ranks for r in t)
    assert [r["rank"] for r in ranks[1]] == [1] * len(ranks[1])
    # both ranks sampled the same sub-model at every update; stages 1 and 2 both ran
    seq = [(r["num_updates"], r["depth"], r["trainable_from"]) for r in ranks[0]]
    assert seq == [(r["num_updates"], r["depth"], r["trainable_from"]) for r in ranks[1]]
    assert {r["stage"] for r in ranks[0]} == {1, 2} and len({r["depth"] for r in ranks[0] if r["stage"] == 1}) > 1
    ref = dp_reference
    assert [(r["num_updates"], r["depth"], r["trainable_from"]) for r in ref] == seq
    for a, b in zip(ranks[0][:6], ref[:6]):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
        assert a["update_flops"] == b["update_flops"]
    assert ranks[0][-1]["train_flops"] == ref[-1]["train_flops"]
    # The embedding block is outside every stage-1 sub-model: although DDP hands it zero
    # gradients and weight decay is on, it is bit-identical at the end of stage 1 (epoch 1)
    # and moves in stage 2.
    init = _initial_model(small_bin, seed=2).state_dict()
    ep1 = torch.load(tmp_path / "ckpt" / "checkpoint1.pt", weights_only=False)["model"]
    ep2 = torch.load(tmp_path / "ckpt" / "checkpoint2.pt", weights_only=False)["model"]
    frozen = [k for k in init if "embed_positions" in k or "layernorm_embedding" in k]
    assert len(frozen) == 3
    for k in frozen:
        assert torch.equal(init[k], ep1[k]), k
        assert not torch.equal(ep1[k], ep2[k]), k
    assert not torch.equal(init["encoder.lm_head.dense.weight"], ep1["encoder.lm_head.dense.weight"])


# --------------------------------------------------------------------------------------------
# options and bad input


def _cli_error(argv):
    from fairseq_b2b.cli import train

    with pytest.raises(SystemExit) as e:
        train.main(argv)
    return str(e.value.code)


@pytest.mark.parametrize("opts,needle", [
    (["--submodel-layers", "0"], "--submodel-layers 0 must be >= 1"),
    (["--submodel-layers", "5", "--submodel-epochs", "1", "--max-epoch", "2"],
     "--submodel-layers 5 exceeds the model's 4 layers"),
    (["--submodel-epochs", "-1"], "--submodel-epochs -1 is negative"),
    (["--submodel-epochs", "3", "--max-epoch", "3"], "leaves no full-model epoch with --max-epoch 3"),
    (["--criterion", "cross_entropy"], "needs --criterion masked_lm"),
    (["--submodel-epochs", "1", "--max-epoch", "2", "--ddp-backend", "fully_sharded"],
     "does not support --ddp-backend fully_sharded"),
    (["--submodel-epochs", "1", "--max-epoch", "2", "--ddp-backend", "slowmo"], "does not support --ddp-backend slowmo"),
])
def test_bad_input_is_a_one_line_error(small_bin, tmp_path, opts, needle):
    argv = [small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_deep", "--save-dir", str(tmp_path)] \
        + COMMON + opts
    message = _cli_error(argv)
    assert message.startswith("fairseq-b2b: error: ") and needle in message and "\n" not in message
    assert not os.path.exists(tmp_path / "checkpoint_last.pt")


def test_bad_input_cli_prints_one_line(small_bin, tmp_path, capsys, monkeypatch):
    from conftest import b2b_train_main, exit_line

    last = exit_line(lambda argv: b2b_train_main(argv, monkeypatch), [
        small_bin, "--task", "b2b_language_modeling", "--arch", "b2b_gpt_tiny", "--save-dir", str(tmp_path),
        "--submodel-epochs", "1", "--max-epoch", "2"] + COMMON, capsys)  # default lb 3 > 2 layers; no traceback
    assert last.startswith("fairseq-b2b: error: --submodel-layers 3 exceeds")


def test_masked_lm_criterion_is_the_default(small_bin):
    cfg, task, trainer = build_trainer([small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny",
                                        "--submodel-epochs", "0"] + COMMON)
    assert type(trainer.get_criterion()).__name__ == "MaskedLmLoss"
    cfg, task, trainer = build_trainer([small_bin, "--task", "b2b_language_modeling", "--arch", "b2b_gpt_tiny",
                                        "--submodel-epochs", "0"] + COMMON)
    assert type(trainer.get_criterion()).__name__ == "CrossEntropyCriterion"


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_stage1_can_train_the_embedding_block(small_bin, family):
    """--submodel-train-embeddings (Algorithm 2 line 6 read as forward and backward of the whole
    sub-model): the bottom sub-model's update also trains token lookup, positions and the
    embedding LayerNorm; the higher sub-models still leave the embedding block alone."""
    task_name, arch = ("b2b_masked_lm", "b2b_bert_tiny_deep") if family == "bert" else \
        ("b2b_language_modeling", "b2b_gpt_mini")
    cfg, task, trainer = build_trainer([small_bin, "--task", task_name, "--arch", arch, "--submodel-epochs", "1",
                                        "--submodel-layers", "2", "--max-epoch", "2", "--submodel-train-embeddings"]
                                       + COMMON)
    assert all(s.train_embeddings for s in task._sampler.submodels)
    batch = next(iter(trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)))
    batch = trainer._prepare_sample(batch)[0]
    trainer.begin_epoch(1)
    model = trainer.get_model()
    owner = model.encoder.sentence_encoder if family == "bert" else model.decoder
    for depth, embeddings_trained in ((2, True), (4, False)):
        u = next(u for u in range(100) if task.submodel_for(u).depth == depth)
        trainer.zero_grad()
        task.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, u)
        assert (owner.embed_positions.weight.grad is not None) == embeddings_trained, depth
        sub = task.submodel_for(u)
        active = {id(p) for p in task._active_params(model, sub)}
        assert (id(owner.embed_positions.weight) in active) == embeddings_trained
        assert sub.frozen_input == (not embeddings_trained)
