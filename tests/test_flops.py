"""FLOPs metering: the logged FLOPs equal the formula of fairseq_b2b.flops on the shapes that
ran, and the formula equals the matmul FLOPs torch actually executes."""
import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("OMP_NUM_THREADS", "1")

import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import build_trainer, train_in_process  # noqa: E402
from fairseq_b2b.flops import FlopsModel  # noqa: E402

T, B = 32, 4  # tokens per sample, sequences per batch


def _subset_split(src_prefix, dst_prefix, n_tokens, vocab_size):
    """Exactly ``n_tokens`` tokens (the last sentence is cut)."""
    from fairseq.data import indexed_dataset as ids

    ds = ids.make_dataset(src_prefix, impl=ids.infer_dataset_impl(src_prefix))
    builder = ids.make_builder(ids.data_file_path(dst_prefix), impl="mmap", vocab_size=vocab_size)
    total = 0
    for i in range(len(ds)):
        item = ds[i][: n_tokens - total]
        builder.add_item(item)
        total += len(item)
        if total == n_tokens:
            break
    builder.finalize(ids.index_file_path(dst_prefix))
    assert total == n_tokens, "data-bin too small"


@pytest.fixture(scope="module")
def exact_bin(data_bin, tmp_path_factory):
    """Train set of exactly 6 batches of B x T tokens: with --sample-break-mode none every LM
    batch is B full sequences, no pads."""
    out = tmp_path_factory.mktemp("exact_bin")
    with open(os.path.join(data_bin, "dict.txt"), encoding="utf-8") as f:
        text = f.read()
    (out / "dict.txt").write_text(text, encoding="utf-8")
    vocab = len(text.splitlines()) + 8
    _subset_split(os.path.join(data_bin, "train"), str(out / "train"), 6 * B * T, vocab)
    valid = "valid" if os.path.exists(os.path.join(data_bin, "valid.idx")) else "train"
    _subset_split(os.path.join(data_bin, valid), str(out / "valid"), B * T, vocab)
    return str(out)


def _args(data, task, arch, *extra):
    return [data, "--task", task, "--arch", arch, "--optimizer", "adam", "--lr", "1e-3", "--batch-size", str(B),
            "--tokens-per-sample", str(T), "--sample-break-mode", "none", "--required-batch-size-multiple", "1",
            "--cpu", "--num-workers", "0", "--dropout", "0"] + list(extra)


def _full_batch(trainer, task):
    """A training batch of B sequences of T real tokens (no pads)."""
    pad = task.source_dictionary.pad()
    batch = next(b for b in trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False)
                 if b["net_input"]["src_tokens"].shape == (B, T) and b["net_input"]["src_tokens"].ne(pad).all())
    return trainer._prepare_sample(batch)[0]


def _layer(d, f):
    """Hand formula: forward matmul FLOPs per token of a layer (without attention)."""
    return 2 * (4 * d * d + 2 * d * f)


# --------------------------------------------------------------------------------------------


def test_formula_by_hand():
    """FlopsModel.coefficients against the docstring formula written out for a 3-layer model."""
    from fairseq_b2b.flops import LayerDims

    d, f, v = 8, 32, 100
    post = FlopsModel((LayerDims(d, f, False),) * 3, 2 * d * d + 2 * d * v)
    tok, sq, head = _layer(d, f), 4 * d, 2 * d * d + 2 * d * v
    assert post.coefficients() == (3 * 3 * tok, 3 * 3 * sq, 3 * head)  # stage 2
    # stage 1, depth 2 training layer 1: layer 0 forward only, layer 1 fwd+bwd minus its input grad of Q, K, V
    assert post.coefficients(2, 1, True) == (tok + 3 * tok - 6 * d * d, sq + 3 * sq, 3 * head)
    pre = FlopsModel((LayerDims(d, f, True),) * 3, 2 * d * v)
    assert pre.coefficients(2, 1, True) == (tok + 3 * tok, sq + 3 * sq, 3 * 2 * d * v)
    assert post.update_flops(10, 30, 2, 2, 1, True) == 10 * (4 * tok - 6 * d * d) + 30 * 4 * sq + 2 * 3 * head


@pytest.mark.parametrize("task,arch,lb", [
    ("b2b_masked_lm", "b2b_bert_tiny_deep", 1),
    ("b2b_masked_lm", "b2b_bert_tiny_deep", 3),
    ("b2b_language_modeling", "b2b_gpt_mini", 3),
])
def test_formula_equals_executed_matmul_flops(exact_bin, task, arch, lb):
    """On pad-free batches, the metered FLOPs of stage-1 and stage-2 updates equal what
    torch's FlopCounterMode counts for the forward + backward the task actually ran."""
    cfg, t, trainer = build_trainer(_args(exact_bin, task, arch, "--submodel-epochs", "1", "--submodel-layers",
                                          str(lb), "--max-epoch", "2"))
    batch = _full_batch(trainer, t)
    trainer.begin_epoch(1)
    seen = set()
    for u in range(12):
        for epoch in (1, 2):  # stage 1, then stage 2 for the same update number
            t.begin_epoch(epoch, trainer.get_model())
            sub = t.submodel_for(u)
            trainer.zero_grad()
            with FlopCounterMode(display=False) as counter:
                log = t.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, u)[2]
            before = t.train_flops
            t.reduce_metrics([log], trainer.get_criterion())
            assert t.train_flops - before == counter.get_total_flops(), (epoch, sub)
            seen.add(sub)
    assert None in seen and len(seen) >= 3


def test_logged_flops_equal_formula_for_known_shapes(exact_bin, tmp_path):
    """fairseq-train (GPT tiny: 2 layers, D=64, F=256, lb=1, every batch B x T without pads):
    each update's increment of the logged cumulative train_flops equals the hand formula."""
    trace = tmp_path / "trace"
    argv = _args(exact_bin, "b2b_language_modeling", "b2b_gpt_tiny", "--submodel-epochs", "1", "--submodel-layers",
                 "1", "--max-epoch", "2", "--log-format", "json", "--log-interval", "1", "--save-dir", str(tmp_path),
                 "--no-save", "--submodel-trace", str(trace))
    log = train_in_process(argv)
    lines = [json.loads(line.split(":", 2)[2]) for line in log.splitlines() if line.startswith("INFO:train_inner:")]

    with open(os.path.join(exact_bin, "dict.txt"), encoding="utf-8") as f:
        vocab = len(f.read().splitlines()) + 4  # + <s>, <pad>, </s>, <unk>
    d, ff = 64, 256
    n, s2, m = B * T, B * T * T, B * T  # real tokens, sum of squared lengths, scored positions

    def fwd(layers):
        return layers * (_layer(d, ff) * n + 4 * d * s2)

    head = 2 * d * vocab * m  # output projection (tied embedding); GPT has no dense in its head
    expected = {  # per (depth, trainable_from); pre-LN: no input-gradient correction
        (1, 0): fwd(1) * 3 + 3 * head,                  # stage 1, bottom layer trained
        (2, 1): fwd(1) + fwd(1) * 3 + 3 * head,         # stage 1, layer 0 forward only
        (2, 0): fwd(2) * 3 + 3 * head,                  # stage 2
    }
    with open(trace, encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert len(lines) == len(records) == 12  # 6 updates per epoch, 2 epochs, one log line each
    previous = 0.0
    for rec, line in zip(records, lines):
        key = (rec["depth"], rec["trainable_from"])
        assert (rec["stage"] == 2) == (key == (2, 0))
        assert line["train_flops"] - previous == expected[key], (rec, line)
        previous = line["train_flops"]
    assert {(r["depth"], r["trainable_from"]) for r in records} == set(expected)


def test_masked_lm_counts_real_tokens_and_masked_positions(exact_bin):
    """A padded masked-LM batch: N and S2 over the real tokens only, the head over the masked
    positions only (RobertaLMHead projects masked_tokens)."""
    cfg, t, trainer = build_trainer(_args(exact_bin, "b2b_masked_lm", "b2b_bert_tiny", "--submodel-epochs", "0"))
    d, ff = 64, 256
    vocab = len(t.source_dictionary)
    pad, mask = t.source_dictionary.pad(), t.mask_idx
    lengths = [32, 20, 7]
    src = torch.full((3, 32), pad, dtype=torch.long)
    tgt = torch.full((3, 32), pad, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, vocab - 1, (n,))
        tgt[i, 1:n:3] = src[i, 1:n:3]
        src[i, 1:n:3] = mask
    masked = int(tgt.ne(pad).sum())
    sample = {"id": torch.arange(3), "nsentences": 3, "ntokens": sum(lengths), "target": tgt,
              "net_input": {"src_tokens": src, "src_lengths": torch.tensor(lengths)}}
    t.begin_epoch(1, trainer.get_model())
    log = t.train_step(sample, trainer.model, trainer.criterion, trainer.optimizer, 0)[2]
    t.reduce_metrics([log], trainer.get_criterion())
    n, s2 = sum(lengths), sum(x * x for x in lengths)
    head = 2 * d * d + 2 * d * vocab
    assert t.train_flops == 2 * 3 * (_layer(d, ff) * n + 4 * d * s2) + 3 * head * masked


def test_stock_roberta_is_metered_in_full_training(exact_bin):
    """Plain full training (--submodel-epochs 0) of a stock arch is metered too."""
    cfg, t, trainer = build_trainer(_args(exact_bin, "b2b_masked_lm", "roberta", "--submodel-epochs", "0",
                                          "--encoder-layers", "2", "--encoder-embed-dim", "64",
                                          "--encoder-ffn-embed-dim", "256", "--encoder-attention-heads", "2"))
    batch = _full_batch(trainer, t)
    t.begin_epoch(1, trainer.get_model())
    with FlopCounterMode(display=False) as counter:
        log = t.train_step(batch, trainer.model, trainer.criterion, trainer.optimizer, 0)[2]
    t.reduce_metrics([log], trainer.get_criterion())
    assert t.train_flops == counter.get_total_flops() > 0
