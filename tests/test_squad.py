"""SQuAD v1.1 in fairseq (issue 18): offsets, windows, the official metric, the span
criterion, bad input, and a fine-tuning run end to end on the built-in speaker-attribution set
(real text from the built-in corpus; tiny shapes)."""
import json
import math
from pathlib import Path

import pytest
import torch

from fairseq_b2b.eval import squad_metric
from fairseq_b2b.eval.squad_data import (Example, QATokenizer, best_span, build_features, char_to_token_span,
                                         decode, read_squad, token_span_text)


# ------------------------------------------------------------------------------ metric

def test_em_f1_equal_the_official_formula_on_hand_made_cases():
    n = squad_metric.normalize_answer
    assert n("The  Eiffel-Tower!") == "eiffeltower"
    assert n("an apple, a pear and THE plum.") == "apple pear and plum"
    gold = {
        "q1": ["Eiffel Tower", "the Eiffel Tower"],   # articles and case: exact
        "q2": ["the red dog"],                         # 'a big red dog' -> 'big red dog' vs 'red dog'
        "q3": ["Paris", "in Paris, France"],            # max over gold answers: F1 of the second
        "q4": ["nothing"],                             # no overlap
        "q5": ["1,000 men."],                          # punctuation removed: '1000 men'
    }
    preds = {"q1": "eiffel tower.", "q2": "a big red dog", "q3": "Paris France", "q4": "something", "q5": "1000 Men"}
    # by hand: q1 EM 1 F1 1; q2 EM 0, P 2/3 R 1 -> F1 0.8; q3 vs 'Paris': P 1/2 R 1 -> 2/3, vs
    # 'in paris france': P 1 R 2/3 -> 0.8 -> max 0.8, EM 0; q4 0/0; q5 EM 1 F1 1
    got = squad_metric.evaluate(gold, preds)
    assert got["exact_match"] == pytest.approx(100 * 2 / 5)
    assert got["f1"] == pytest.approx(100 * (1 + 0.8 + 0.8 + 0 + 1) / 5)
    assert squad_metric.f1_score("a the", "the") == 0.0  # both normalize to nothing: no common token
    missing = squad_metric.evaluate(gold, {"q1": "Eiffel Tower"})
    assert missing["unanswered"] == 4 and missing["exact_match"] == pytest.approx(20.0)


# ------------------------------------------------------------------------------ data

@pytest.fixture(scope="module")
def qa_sets():
    from fairseq_b2b.data import DataError, qa_builtin

    try:
        return qa_builtin.build(train_questions=400, dev_questions=150, seed=3)
    except DataError as e:
        pytest.skip(f"built-in corpus unavailable: {e}")


@pytest.fixture(scope="module")
def qa_files(qa_sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    for split, squad in qa_sets.items():
        (root / f"{split}.json").write_text(json.dumps(squad), encoding="utf-8")
    return {"train": root / "train.json", "dev": root / "dev.json"}


@pytest.fixture(scope="module")
def tokenizer(bpe_corpus):
    from fairseq.data import Dictionary

    d = Dictionary.load(str(bpe_corpus["dict"]))
    d.add_symbol("<mask>")
    return QATokenizer(bpe_corpus["codes"], d)


def test_builtin_set_is_squad_v11_with_speaker_answers(qa_sets, qa_files):
    from fairseq_b2b.data.qa_builtin import first_name_baseline
    from fairseq_b2b.eval.squad_data import gold_answers

    train, dev = read_squad(qa_files["train"]), read_squad(qa_files["dev"])  # checks every answer_start
    assert len(train) >= 400 and len(dev) >= 150
    assert not {e.context for e in train} & {e.context for e in dev}
    for ex in train[:50]:
        (text, start), = ex.answers
        assert ex.context[start:start + len(text) + 2] == text + ".\n"   # a speaker heading
        assert ex.context.count(ex.question) == 1                         # the line is in the passage
        assert ex.context.index(ex.question) == start + len(text) + 2     # right after its heading
    base = squad_metric.evaluate(gold_answers(dev), first_name_baseline(qa_sets["dev"]))
    assert 20 < base["exact_match"] < 70  # several speakers per passage: the first name is often wrong


def test_every_builtin_answer_maps_to_pieces_and_back_or_is_counted(qa_files, tokenizer, bpe_corpus, tmp_path):
    examples = read_squad(qa_files["train"]) + read_squad(qa_files["dev"])
    fs = build_features(examples, tokenizer, max_positions=512, doc_stride=128, max_query_length=64, training=False)
    unmappable = 0
    for ex, ctx, spans in zip(fs.examples, fs.contexts, fs.answer_spans):
        assert [ctx.text[a:b] for a, b in ctx.spans] == [p[:-2] if p.endswith("@@") else p for p in ctx.pieces]
        for (text, start), span in zip(ex.answers, spans):
            if span is None:
                unmappable += 1
                continue
            assert token_span_text(ctx, *span) == text
            assert ctx.spans[span[0]][0] == start and ctx.spans[span[1]][1] == start + len(text)
    assert unmappable == fs.stats["unmappable_answers"]
    assert fs.stats["answers"] == sum(len(e.answers) for e in examples)
    # the pieces are the pre-training pipeline's (b2b-preprocess apply), unit for unit
    from fairseq_b2b.eval.common import bpe_lines

    some = sorted({ex.context for ex in examples})[:12] + [ex.question for ex in examples[:12]]
    assert bpe_lines(some, bpe_corpus["codes"], tmp_path) == [" ".join(tokenizer.encode(t).pieces) for t in some]


def test_unmappable_answers_are_counted_not_dropped(tokenizer):
    context = "SPEAKER.\nThe nightingale sings tonight."
    # 'ightingal' starts and ends inside BPE pieces / inside a Moses token
    exs = [Example("a", "What sings?", context, [("nightingale", 13)]),
           Example("b", "What sings?", context, [("ightingal", 14)])]
    fs = build_features(exs, tokenizer, 64, 32, 16, training=True)
    assert fs.answer_spans[0][0] is not None and token_span_text(fs.contexts[0], *fs.answer_spans[0][0]) == "nightingale"
    assert fs.answer_spans[1][0] is None
    assert fs.stats["unmappable_answers"] == 1 and fs.stats["unmappable_train_questions"] == 1
    assert {f.example_index for f in fs.features} == {0}  # b has no training windows, and says so


def test_long_context_is_windowed_and_the_answer_found_in_the_right_window(qa_files, tokenizer):
    examples = read_squad(qa_files["train"])
    # the question at the end: one whose answer is a name of several BPE pieces
    last = next(ex for ex in examples if len(tokenizer.encode(ex.answers[0][0]).ids) >= 3)
    paras = []
    for ex in examples:
        if ex.context not in paras and ex.context != last.context:
            paras.append(ex.context)
        if len(paras) == 5:
            break
    paras.append(last.context)
    context = "\n\n".join(paras)
    (name, start), = last.answers
    shift = len("\n\n".join(paras[:-1])) + 2
    ex = Example("long", last.question, context, [(name, start + shift)])
    assert context[start + shift:start + shift + len(name)] == name
    fs = build_features([ex], tokenizer, max_positions=64, doc_stride=24, max_query_length=16, training=True)
    n_pieces = len(fs.contexts[0].ids)
    assert n_pieces > 64 and len(fs.features) > 2 and all(len(f.source) <= 64 for f in fs.features)
    s, e = fs.answer_spans[0][0]
    with_answer = [k for k, f in enumerate(fs.features) if f.start != 0]
    assert with_answer and all(fs.features[k].window_start <= s and e < fs.features[k].window_start
                               + fs.features[k].context_length for k in with_answer)
    assert fs.features[0].start == fs.features[0].end == 0  # the answer is near the end: not in window 0
    # decoding: logits that point at the target of one answer window; the others prefer other spans
    logits = {}
    for k, f in enumerate(fs.features):
        start_l, end_l = torch.zeros(len(f.source)), torch.zeros(len(f.source))
        if k == with_answer[-1]:
            start_l[f.start], end_l[f.end] = 10.0, 10.0
        else:
            start_l[f.context_offset], end_l[f.context_offset] = 3.0, 3.0
        logits[k] = (start_l, end_l)
    assert decode(fs, logits, max_answer_length=30) == {"long": name}
    # windows are compared by probability (log-softmax per window, as the loss trains them): a window
    # with larger raw span logits that puts its mass on <s> ("not here") loses to the answer window
    decoy = next(k for k in range(len(fs.features)) if k not in with_answer)
    start_l, end_l = logits[decoy]
    start_l[0] = end_l[0] = 30.0
    start_l[fs.features[decoy].context_offset] = end_l[fs.features[decoy].context_offset] = 12.0
    assert decode(fs, logits, max_answer_length=30) == {"long": name}
    # a span longer than max_answer_length is never chosen: one piece, the name's first
    f = fs.features[with_answer[-1]]
    _, a, b = best_span(*logits[with_answer[-1]], f.context_offset, f.context_length, max_answer_length=1)
    assert e > s and a == b == f.start - f.context_offset


# ------------------------------------------------------------------------------ criterion

class _FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, src_tokens, features_only=False, classification_head_name=None, **kwargs):
        assert features_only and classification_head_name == "squad_span_head"
        return self.logits, None


def test_span_loss_is_the_mean_of_start_and_end_cross_entropy_by_hand():
    from types import SimpleNamespace

    from fairseq_b2b.criterions.span import SpanCriterion

    pad = 1
    src = torch.tensor([[0, 5, 2, 2, 7, 8, 2], [0, 6, 2, 2, 9, 2, 1]])  # second row: one pad
    start_l = torch.tensor([[0.0, 1.0, 0.0, 0.0, 2.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 3.0, 9.0]])
    end_l = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0], [2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 9.0]])
    logits = torch.stack([start_l, end_l], dim=-1)
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([7, 6])},
              "target": {"start": torch.tensor([4, 0]), "end": torch.tensor([5, 4])}, "ntokens": 13}

    def ce(row, target, length):
        z = sum(math.exp(v) for v in row[:length])
        return math.log(z) - row[target]

    hand = [(ce(start_l[0].tolist(), 4, 7) + ce(end_l[0].tolist(), 5, 7)) / 2,
            (ce(start_l[1].tolist(), 0, 6) + ce(end_l[1].tolist(), 4, 6)) / 2]  # pad position excluded
    crit = SpanCriterion(SimpleNamespace(target_dictionary=SimpleNamespace(pad=lambda: pad)))
    loss, sample_size, log = crit(_FixedLogits(logits), sample)
    assert sample_size == 2
    assert loss.item() == pytest.approx(sum(hand), rel=1e-6)
    assert log["ncorrect"].item() == 1  # row 0: argmax start 4, end 5; row 1: start 5 != 0


# ------------------------------------------------------------------------------ command

def _fail(argv, capsys=None):
    from fairseq_b2b.cli.squad import run

    with pytest.raises(SystemExit) as e:
        run([str(a) for a in argv])
    msg = str(e.value)
    assert msg.startswith("b2b-squad: error: ") and "\n" not in msg, msg
    return msg


def test_bad_input_is_one_line_and_writes_nothing(qa_files, small_bert, small_gpt, tmp_path):
    out = tmp_path / "out"
    common = ["--dev", qa_files["dev"], "--output", out]
    not_json = tmp_path / "notjson.json"
    not_json.write_text("title\tcontext\n")
    assert "is not SQuAD v1.1 JSON" in _fail(["fine-tune", "--checkpoint", small_bert, "--train", not_json, *common])
    v2 = json.loads(qa_files["dev"].read_text())
    v2["version"] = "v2.0"
    (tmp_path / "v2.json").write_text(json.dumps(v2))
    assert "not v1.1" in _fail(["fine-tune", "--checkpoint", small_bert, "--train", tmp_path / "v2.json", *common])
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"context": "x"}]))
    assert "is not SQuAD v1.1 JSON" in _fail(["prepare", "--checkpoint", small_bert, "--train", listed, *common])
    moved = json.loads(qa_files["dev"].read_text())
    moved["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 1
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    msg = _fail(["fine-tune", "--checkpoint", small_bert, "--train", tmp_path / "moved.json", *common])
    assert "does not stand at answer_start" in msg
    msg = _fail(["fine-tune", "--checkpoint", small_gpt, "--train", qa_files["train"], *common])
    assert "GPT-family" in msg and "BERT-family" in msg
    assert "exceeds the checkpoint" in _fail(["fine-tune", "--checkpoint", small_bert, "--train", qa_files["train"],
                                              "--max-positions", "100000", *common])
    assert not out.exists()


def _subset(squad, questions):
    """The first passages of a SQuAD dict, up to ``questions`` questions."""
    out, n = {**squad, "data": []}, 0
    for article in squad["data"]:
        paras = []
        for para in article["paragraphs"]:
            if n >= questions:
                break
            paras.append(para)
            n += len(para["qas"])
        if paras:
            out["data"].append({**article, "paragraphs": paras})
    return out


@pytest.fixture(scope="module")
def fine_tuned(qa_sets, small_bert, tmp_path_factory):
    """small_bert fine-tuned for one short epoch (tiny: checks the plumbing, not the quality)."""
    from fairseq_b2b.cli.squad import run

    root = tmp_path_factory.mktemp("squad")
    files = {}
    for split, n in (("train", 96), ("dev", 40)):
        files[split] = root / f"{split}.json"
        files[split].write_text(json.dumps(_subset(qa_sets[split], n)), encoding="utf-8")
    out = root / "run"
    report = run(["fine-tune", "--checkpoint", small_bert, "--train", str(files["train"]), "--dev",
                  str(files["dev"]), "--output", str(out), "--max-positions", "40", "--doc-stride", "16",
                  "--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--cpu", "--keep-checkpoint"])
    return out, report, files


def test_fine_tune_writes_official_predictions_and_results_with_the_digest(fine_tuned, small_bert):
    from fairseq_b2b.data.steps import file_digest

    out, report, files = fine_tuned
    preds = json.loads((out / "predictions.json").read_text())
    dev = read_squad(files["dev"])
    assert set(preds) == {ex.qid for ex in dev} and all(isinstance(v, str) for v in preds.values())
    assert all(v in ex.context for ex in dev for v in [preds[ex.qid]])  # extractive: spans of the context
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint_sha256"] == file_digest(Path(small_bert))
    gold = {ex.qid: [t for t, _ in ex.answers] for ex in dev}
    assert results["f1"] == pytest.approx(squad_metric.evaluate(gold, preds)["f1"])
    assert "first_name_baseline" in results and results["hyperparameters"]["epochs"] == 1
    assert "--task b2b_squad --criterion b2b_span --restore-file" in results["train_command"]
    assert results["dev_stats"]["windows"] > results["questions"]  # 40 positions: passages windowed


def test_evaluate_reloads_the_span_head(fine_tuned, small_bert, tmp_path):
    from fairseq_b2b.cli.squad import run

    out, report, files = fine_tuned
    model = out / "run" / "checkpoint_last.pt"
    again = run(["evaluate", "--model", str(model), "--dev", str(files["dev"]), "--output", str(tmp_path / "ev"),
                 "--cpu"])
    assert again["f1"] == pytest.approx(report["f1"]) and again["exact_match"] == pytest.approx(report["exact_match"])
    assert "has no span head" in _fail(["evaluate", "--model", small_bert, "--dev", files["dev"], "--output",
                                        tmp_path / "ev2"])
    assert not (tmp_path / "ev2").exists()
