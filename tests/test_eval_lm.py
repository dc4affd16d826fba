"""b2b-eval-lm: zero-shot perplexity of a tiny GPT (the ``small_gpt`` fixture, trained on the
built-in corpus with BPE) on the PTB and WikiText-2 validation splits, checked against an
independent scoring of the binarized file; unknown characters, an empty file and a wrong
dictionary.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest
import torch

from fairseq_b2b.eval.lm import run as main

REPO = Path(__file__).resolve().parents[1]
LM_EVAL = Path(os.environ.get("B2B_LM_EVAL_DIR", REPO.parent / "shared" / "data" / "lm-eval"))
LINES = 300


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory):
    """The first 300 lines of the PTB and WikiText-2 validation splits."""
    if not (LM_EVAL / "ptb.valid.txt").is_file() or not (LM_EVAL / "wikitext-2.valid.txt").is_file():
        pytest.skip(f"PTB/WikiText-2 validation text not found in {LM_EVAL} (the shared evaluation data; "
                    "set B2B_LM_EVAL_DIR to a folder holding ptb.valid.txt and wikitext-2.valid.txt)")
    root = tmp_path_factory.mktemp("lm_eval")
    out = {}
    for name, fname in (("ptb", "ptb.valid.txt"), ("wt2", "wikitext-2.valid.txt")):
        lines = (LM_EVAL / fname).read_text(encoding="utf-8").split("\n")[:LINES]
        out[name] = root / f"{name}.txt"
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def tiny_gpt(small_gpt):
    return small_gpt


def base_args(model, corpus):
    return ["--path", str(model), "--data", str(corpus["data_bin"]), "--codes", str(corpus["codes"]), "--cpu"]


@pytest.fixture(scope="module")
def ptb_wt2(tiny_gpt, bpe_corpus, eval_files, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lm_work")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        report = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(eval_files["ptb"]), "--name", "ptb",
                       "--eval-file", str(eval_files["wt2"]), "--name", "wt2", "--workdir", str(workdir),
                       "--output-json", str(workdir / "report.json")])
    return report, workdir, stdout.getvalue()


def independent_nll(model_path, data_bin, split_prefix, positions, context):
    """Score the binarized file with the model directly: the file as one stream behind an
    initial </s>, blocks of ``positions - context`` tokens, each with up to ``context`` earlier
    tokens as extra input; float64 log-softmax.  Returns (total NLL in nats, tokens, lines)."""
    from fairseq.data import data_utils

    from fairseq_b2b.checkpoints import load_model

    model, task, _ = load_model(str(model_path), str(data_bin))
    dictionary = task.source_dictionary
    dataset = data_utils.load_indexed_dataset(str(split_prefix), dictionary)
    stream = torch.cat([dataset[i] for i in range(len(dataset))]).long()
    inputs = torch.cat([torch.tensor([dictionary.eos()]), stream])
    block = positions - context
    nll = 0.0
    with torch.no_grad():
        for start in range(0, len(stream), block):
            end = min(start + block, len(stream))
            first = max(0, start - context)
            logits = model(inputs[first:end].unsqueeze(0))[0][0].double()
            logp = torch.log_softmax(logits, dim=-1)[start - first:]
            nll -= float(logp.gather(1, stream[start:end].unsqueeze(1)).sum())
    return nll, len(stream), len(dataset)


def word_count(path):
    """Whitespace words of the original file + one end-of-line per line."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    return sum(len(line.split()) for line in lines) + len(lines), len(lines)


def test_zero_shot_ppl_on_ptb_and_wikitext2_per_token_and_per_word(ptb_wt2, tiny_gpt, bpe_corpus, eval_files):
    report, workdir, out = ptb_wt2
    assert "PPL/token" in out and "PPL/word" in out
    assert json.loads((workdir / "report.json").read_text())["results"][0]["name"] == "ptb"
    assert report["tokens_per_sample"] == 64 and report["context_window"] == 32
    for row in report["results"]:
        name = row["name"]
        words, lines = word_count(eval_files[name])
        assert row["lines"] == lines == LINES and row["words"] == words
        assert math.isfinite(row["ppl_per_token"]) and math.isfinite(row["ppl_per_word"])
        assert 1 < row["ppl_per_token"] < row["ppl_per_word"]  # a word is one or more tokens
        assert row["fairseq_agrees"] and row["nonfinite_tokens"] == 0
        assert row["fairseq_perplexity"] == pytest.approx(row["ppl_per_token"], rel=1e-3)
        # independent: score the binarized file with the model in this process
        nll, tokens, sentences = independent_nll(tiny_gpt, bpe_corpus["data_bin"],
                                                 workdir / name / "data-bin" / "test", 64, 32)
        assert sentences == lines  # one binarized sentence per original line, blank ones too
        assert tokens == row["tokens"] == row["bpe_units"] + lines
        assert row["nll_nats"] == pytest.approx(nll, rel=1e-6)
        assert row["ppl_per_word"] == pytest.approx(math.exp(nll / words), rel=1e-5)
        assert row["ppl_per_token"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
        print(f"{name}: PPL/token {row['ppl_per_token']:.2f}  PPL/word {row['ppl_per_word']:.2f}  "
              f"unknown {row['unknown_units']} of {row['bpe_units']}")


def test_unknown_characters_are_counted_and_reported(tiny_gpt, bpe_corpus, tmp_path, capsys):
    from fairseq.data import Dictionary, data_utils

    text = tmp_path / "odd.txt"
    text.write_text("To be , or not to be : that is the question .\n"
                    "The word λόγος and the city 東京 were never seen by this BPE .\n"
                    "\n"
                    "Whether 'tis nobler in the mind to suffer\n", encoding="utf-8")
    report = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--workdir", str(tmp_path / "w")])
    row = report["results"][0]
    assert (row["words"], row["lines"]) == word_count(text) == (13 + 14 + 0 + 8 + 4, 4)
    assert row["unknown_units"] > 0 and any("東" in u or "λ" in u for u in row["unknown_examples"])
    assert math.isfinite(row["ppl_per_word"])
    assert "scored as <unk>" in capsys.readouterr().out
    # fairseq's binarizer put exactly that many <unk> ids in the data
    d = Dictionary.load(str(bpe_corpus["dict"]))
    data = data_utils.load_indexed_dataset(str(tmp_path / "w" / "odd" / "data-bin" / "test"), d)
    assert sum(int((data[i] == d.unk()).sum()) for i in range(len(data))) == row["unknown_units"]


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value.code)
    assert "\n" not in msg and msg.startswith("b2b-eval-lm: error: "), msg
    return msg


def test_empty_eval_file_is_a_one_line_error(tiny_gpt, bpe_corpus, tmp_path):
    for content in ("", "\n \n\t\n"):
        empty = tmp_path / "empty.txt"
        empty.write_text(content)
        with pytest.raises(SystemExit) as e:
            main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(empty)])
        assert "empty" in one_line_error(e)


def test_dictionary_not_matching_the_model_is_a_one_line_error(tiny_gpt, bpe_corpus, tmp_path, capsys):
    lines = bpe_corpus["dict"].read_text(encoding="utf-8").splitlines()
    text = tmp_path / "t.txt"
    text.write_text("To be , or not to be .\n")
    for name, content in (("fewer", lines[:-1]), ("swapped", [lines[1], lines[0], *lines[2:]])):
        data = tmp_path / name
        data.mkdir()
        (data / "dict.txt").write_text("\n".join(content) + "\n", encoding="utf-8")
        with pytest.raises(SystemExit) as e:
            main(["--path", tiny_gpt, "--data", str(data), "--codes", str(bpe_corpus["codes"]),
                  "--eval-file", str(text)])
        assert "is not the dictionary" in one_line_error(e)
    # as the command ends: one line on stderr, no traceback (conftest.exit_line, alone)
    from conftest import exit_line

    line = exit_line(main, ["--path", tiny_gpt, "--data", str(tmp_path / "fewer"), "--codes", str(bpe_corpus["codes"]),
                            "--eval-file", str(text)], capsys, alone=True)
    assert line.startswith("b2b-eval-lm: error: ")


def test_other_bad_input_is_one_line(tiny_gpt, bpe_corpus, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("To be .\n")
    bad_codes = tmp_path / "codes"
    bad_codes.write_text("not codes\n")
    cases = [
        ([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(tmp_path / "missing.txt")], "not found"),
        (["--path", str(tmp_path / "none.pt"), "--data", str(bpe_corpus["data_bin"]), "--codes",
          str(bpe_corpus["codes"]), "--eval-file", str(text)], "does not exist"),
        (["--path", tiny_gpt, "--data", str(bpe_corpus["data_bin"]), "--codes", str(bad_codes),
          "--eval-file", str(text)], "codes"),
        ([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--tokens-per-sample", "65"], "positions"),
        ([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--name", "a", "--name", "b"], "--name"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert needle in one_line_error(e)


# ------------------------------------------------------------------------------ <unk> and detokenization

UNK_TEXT = ("<unk> said the <unk> , \" <unk> \" is a <unk> <unk> of the state @-@ of @-@ the @-@ art .\n"
            "\n"
            "To be , or not to be ( <unk> ) : that is the question <unk>\n"
            "the word x<unk> is not the marker , nor is <UNK> .\n")
UNK_WORDS = 7  # whitespace-delimited "<unk>" words above


def binarized_ids(workdir, name, dict_path):
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(dict_path))
    data = data_utils.load_indexed_dataset(str(Path(workdir) / name / "data-bin" / "test"), d)
    return d, [data[i] for i in range(len(data))]


def test_file_unk_is_the_dictionarys_unk_one_token_one_word(tiny_gpt, bpe_corpus, tmp_path, capsys):
    text = tmp_path / "unk.txt"
    text.write_text(UNK_TEXT, encoding="utf-8")
    report = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--workdir", str(tmp_path / "w")])
    out = capsys.readouterr().out
    row = report["results"][0]
    assert report["unk_word"] == "<unk>" and report["detokenize"] == "none"
    assert row["unk_words"] == UNK_WORDS
    assert (row["words"], row["lines"]) == word_count(text)  # each <unk> one word, as in the file
    bpe = (tmp_path / "w" / "unk" / "test.bpe").read_text(encoding="utf-8").split("\n")[:-1]
    assert [line.split().count("<unk>") for line in bpe] == [5, 0, 2, 0]
    assert bpe[2].split()[-1] == "<unk>" and bpe[0].split()[0] == "<unk>"
    # x<unk> and <UNK> are not the marker: ordinary text, split by Moses into < ... > like any other
    assert row["unknown_examples"].get("<") == 2 and row["unknown_examples"].get(">") == 2
    # <unk> is one known unit (the dictionary's own symbol), so it is not an unknown BPE unit
    assert "<unk>" not in row["unknown_examples"]
    assert row["tokens"] == row["bpe_units"] + row["lines"] == sum(len(line.split()) for line in bpe) + 4
    d, ids = binarized_ids(tmp_path / "w", "unk", bpe_corpus["dict"])
    assert sum(int((s == d.unk()).sum()) for s in ids) == row["unk_words"] + row["unknown_units"]
    assert [int(s[0]) for s in ids if len(s) > 1][0] == d.unk()  # the line starting with <unk>
    nll, tokens, lines = independent_nll(tiny_gpt, bpe_corpus["data_bin"], tmp_path / "w" / "unk" / "data-bin" / "test",
                                         64, 32)
    assert tokens == row["tokens"] and row["nll_nats"] == pytest.approx(nll, rel=1e-6)
    assert "<unk> words" in out and "scored as the dictionary's <unk>" in out and "one token (the dictionary's <unk>)" in out

    # the old way (tokenized as text): each <unk> becomes the three pieces < unk >, two of them unknown
    plain = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--unk-word", "",
                  "--workdir", str(tmp_path / "p")])["results"][0]
    assert plain["unk_words"] == 0 and plain["words"] == row["words"]
    assert plain["unknown_examples"].get("<", 0) >= UNK_WORDS and plain["unknown_examples"].get(">", 0) >= UNK_WORDS
    assert plain["bpe_units"] >= row["bpe_units"] + 2 * UNK_WORDS
    assert plain["unknown_units"] >= row["unknown_units"] + 2 * UNK_WORDS


def test_wikitext_detokenization_option(tiny_gpt, bpe_corpus, tmp_path, capsys):
    from fairseq_b2b.eval.lm import wikitext_detokenize

    assert wikitext_detokenize(" = = Gameplay = = ") == "== Gameplay =="
    assert wikitext_detokenize("1 @,@ 000 men of the state @-@ of @-@ the @-@ art , 3 @.@ 5 m ( 11 ft ) .") == \
        "1,000 men of the state-of-the-art, 3.5 m (11 ft)."
    assert wikitext_detokenize("he said \" go \" ; it 's over , they do n't know ! $ 5 , 50 %") == \
        "he said \"go\"; it's over, they don't know! $5, 50%"
    text = tmp_path / "wt.txt"
    text.write_text(UNK_TEXT, encoding="utf-8")
    report = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--detokenize", "wikitext",
                   "--workdir", str(tmp_path / "w")])
    assert "detokenization wikitext" in capsys.readouterr().out
    row = report["results"][0]
    assert report["detokenize"] == "wikitext" and row["unk_words"] == UNK_WORDS
    assert (row["words"], row["lines"]) == word_count(text)  # per word is still per word of the original file
    bpe = (tmp_path / "w" / "wt" / "test.bpe").read_text(encoding="utf-8")

    def at_signs(bpe_text):  # "@" in a BPE unit, not counting the "@@" continuation mark
        return sum(unit.removesuffix("@@").count("@") for unit in bpe_text.split())

    assert at_signs(bpe) == 0 and bpe.count("<unk>") >= UNK_WORDS
    plain = main([*base_args(tiny_gpt, bpe_corpus), "--eval-file", str(text), "--workdir", str(tmp_path / "p")])
    assert plain["results"][0]["bpe_units"] > row["bpe_units"]  # the @-@ escapes are gone
    assert at_signs((tmp_path / "p" / "wt" / "test.bpe").read_text(encoding="utf-8")) == 6  # 3 x " @-@ " kept
    assert plain["results"][0]["nll_nats"] != row["nll_nats"]
