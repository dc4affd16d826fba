"""One line and nothing written: bad arguments to b2b-grow / b2b-glue / b2b-train stop with
``<prog>: error: ...`` before anything is read or written; checkpoints that recorded a relative
data path work from another folder; GLUE results of two checkpoints never mix; every option
of every console command states its default; ``b2b-train --task T --help`` shows the plugin."""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import exit_line, run_cli


def _one_line(line, prog):
    """``line``, checked to be ``PROG: error: ...`` (the line exit_line found)."""
    assert line.startswith(f"{prog}: error: "), line
    return line


def _grow(argv, capsys):
    from fairseq_b2b.cli.grow import main

    return _one_line(exit_line(main, argv, capsys), "b2b-grow")


def _glue(argv, capsys):
    from fairseq_b2b.eval.glue import main

    return _one_line(exit_line(main, argv, capsys), "b2b-glue")


@pytest.fixture(scope="module")
def moved_bert(small_bert, data_bin, tmp_path_factory):
    """small_bert as a checkpoint of an older run: it recorded the data path relative to the
    training folder (``data/data-bin``), and the folder layout is runs/bert + data/data-bin."""
    root = tmp_path_factory.mktemp("moved")
    (root / "data").mkdir()
    os.symlink(data_bin, root / "data" / "data-bin")
    state = torch.load(small_bert, weights_only=False)
    state["cfg"]["task"]["data"] = "data/data-bin"
    (root / "runs" / "bert").mkdir(parents=True)
    torch.save(state, root / "runs" / "bert" / "checkpoint_best.pt")
    return root / "runs" / "bert" / "checkpoint_best.pt"


@pytest.mark.parametrize("extra,needle", [
    (["--arch", "nope"], "unknown --arch 'nope'"),
    (["--arch", "b2b_gpt_tiny_wide"], "is a BERT-family model but --arch b2b_gpt_tiny_wide is GPT-family"),
    (["--arch", "b2b_bert_tiny_wide", "--method", "aki", "--exact"], "--exact is a mode of fpi"),
    (["--arch", "b2b_bert_tiny_wide", "--encoder-layerz", "3"], "unknown option(s) --encoder-layerz"),
])
def test_grow_argument_errors_come_first(moved_bert, tmp_path, monkeypatch, capsys, extra, needle):
    """Refused before any dictionary is read, even from a folder where the recorded data path
    means nothing (today the dictionary error came first)."""
    monkeypatch.chdir(tmp_path)
    assert needle in _grow(["--source", moved_bert, "--output", tmp_path / "g.pt", *extra], capsys)
    assert not (tmp_path / "g.pt").exists()


def test_grow_output_folder_and_bad_subset_write_nothing(moved_bert, data_bin, tmp_path, monkeypatch, capsys):
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    assert "is a folder" in _grow(["--source", moved_bert, "--arch", "b2b_bert_tiny_wide", "--output", tmp_path / "out"],
                                  capsys)
    assert "--valid-subset 'nope' is not a split" in _grow(
        ["--source", moved_bert, "--arch", "b2b_bert_tiny_wide", "--output", tmp_path / "g.pt", "--data", data_bin,
         "--valid-subset", "nope"], capsys)
    assert list(tmp_path.iterdir()) == [tmp_path / "out"] and not list((tmp_path / "out").iterdir())


def test_grow_from_another_folder_records_absolute_paths(moved_bert, tmp_path, monkeypatch, capsys):
    from fairseq_b2b.cli.grow import main

    monkeypatch.chdir(tmp_path)
    main(["--source", str(moved_bert), "--arch", "b2b_bert_tiny_wide", "--output", "g.pt"])
    assert "grew" in capsys.readouterr().out
    state = torch.load(tmp_path / "g.pt", weights_only=False)
    data = state["cfg"]["task"]["data"]
    assert os.path.isabs(data) and os.path.isfile(os.path.join(data, "dict.txt"))
    assert os.path.isabs(state["cfg"]["model"].b2b_grown_from["source"])
    # --data overrides the recorded path
    other = tmp_path / "other"
    shutil.copytree(Path(data).resolve(), other)
    main(["--source", str(moved_bert), "--arch", "b2b_bert_tiny_wide", "--output", "h.pt", "--data", str(other)])
    assert torch.load(tmp_path / "h.pt", weights_only=False)["cfg"]["task"]["data"] == str(other)


def test_glue_prepare_finds_the_moved_checkpoints_dictionary(moved_bert, tmp_path, monkeypatch):
    from fairseq_b2b.eval.glue import main

    main(["builtin-task", "--output", str(tmp_path / "glue"), "--train-per-class", "20", "--dev-per-class", "10"])
    monkeypatch.chdir(tmp_path)
    main(["prepare", "--checkpoint", str(moved_bert), "--glue-dir", str(tmp_path / "glue"), "--tasks", "MILTON",
          "--output", str(tmp_path / "out")])
    assert (tmp_path / "out" / "data" / "MILTON-bin" / "input0" / "dict.txt").is_file()


@pytest.mark.parametrize("lrs,needle", [("abc", "--lrs 'abc' is not a number"), ("-1", "--lrs -1 must be positive"),
                                        ("1e-5,nan", "--lrs nan must be positive")])
def test_glue_sweep_bad_lrs(small_bert, tmp_path, capsys, lrs, needle):
    assert needle in _glue(["sweep", "--checkpoint", small_bert, "--glue-dir", tmp_path, "--tasks", "MILTON",
                            "--output", tmp_path / "out", f"--lrs={lrs}"], capsys)
    assert not (tmp_path / "out").exists()


def test_glue_refuses_a_second_checkpoint_in_a_used_folder(small_bert, moved_bert, tmp_path):
    from fairseq_b2b.eval.common import EvalError
    from fairseq_b2b.eval.glue import claim_output, write_table

    out = tmp_path / "out"
    claim = claim_output(out, small_bert)
    assert claim_output(out, small_bert) == claim  # the same checkpoint again: fine
    other = tmp_path / "other.pt"
    state = torch.load(small_bert, weights_only=False)
    state["extra"] = 1
    torch.save(state, other)
    with pytest.raises(EvalError, match="pass another --output"):
        claim_output(out, str(other))
    (out / "runs").mkdir()
    report = write_table(out)
    assert report["checkpoint"] == os.path.abspath(small_bert) and report["checkpoint_sha256"] == claim["sha256"]


def test_train_family_mismatch_is_one_line(data_bin, tmp_path):
    """The suite's one subprocess CLI-error test (the others call ``main()`` in-process and check
    the ``SystemExit`` message, see conftest.exit_line): the console script prints that message
    as its only line, exit status 1, no traceback, nothing on stdout."""
    proc = run_cli("b2b-train", data_bin, "--task", "b2b_masked_lm", "--arch", "b2b_gpt_tiny", "--batch-size", "4",
                   "--optimizer", "adam", "--lr", "1e-3", "--cpu", "--save-dir", tmp_path / "x", check=False)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip() and "Warning" not in l and "super().__init__" not in l]
    assert proc.returncode == 1 and lines and lines[-1].startswith("b2b-train: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "is a GPT-family model but --task b2b_masked_lm" in lines[-1]
    assert proc.stderr.strip() == lines[-1] and proc.stdout.strip() == "", proc.stderr[-2000:]
    assert not (tmp_path / "x").exists()


def test_train_help_shows_the_plugin_groups(monkeypatch, capsys):
    from fairseq_b2b.cli.train import main

    monkeypatch.setattr("sys.argv", list(__import__("sys").argv))
    main(["--task", "b2b_masked_lm", "--help"])
    text = capsys.readouterr().out
    assert "bert2BERT growth:" in text and "--init-from-small PATH" in text.split("bert2BERT growth:")[1]
    section = text.split("--task b2b_masked_lm:")[1]
    assert "--submodel-epochs" in section and "--stacking-schedule" in section


def test_corrupt_checkpoint_message_keeps_whole_words(tmp_path, monkeypatch):
    from fairseq import checkpoint_utils

    from fairseq_b2b.errors import B2BError
    from fairseq_b2b.growth_hook import load_checkpoint

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04" + b"not a checkpoint at all " * 40)

    def inner_reason():
        with pytest.raises(B2BError) as e:
            load_checkpoint(str(bad))
        assert "\n" not in str(e.value) and str(e.value).endswith(": it is corrupt or not a fairseq checkpoint")
        return str(e.value).split("(", 1)[1].rsplit("): it is corrupt", 1)[0]

    # torch's own reason for this file is longer than 120 characters: cut after a whole word, then " ..."
    with pytest.raises(RuntimeError) as torch_error:
        torch.load(str(bad), weights_only=False)
    full = " ".join(str(torch_error.value).split())
    inner = inner_reason()
    assert len(full) > 120 and inner.startswith("RuntimeError: ") and inner.endswith(" ..."), inner
    kept = inner[len("RuntimeError: "):-len(" ...")]
    assert len(kept) <= 120 and full.startswith(kept + " ") and kept == kept.rstrip(), (kept, full)

    # a reason over 120 characters (two lines) is cut at the last whole word before 120, then " ..."
    def long_reason(path):
        raise RuntimeError("abcdefgh " * 13 + "abcdefgh\nand a second line")

    monkeypatch.setattr(checkpoint_utils, "load_checkpoint_to_cpu", long_reason)
    assert inner_reason() == "RuntimeError: " + " ".join(["abcdefgh"] * 13) + " ..."


CONSOLE_PARSERS = {"b2b-grow": "fairseq_b2b.cli.grow", "b2b-preprocess": "fairseq_b2b.cli.preprocess",
                   "b2b-glue": "fairseq_b2b.eval.glue", "b2b-eval-lm": "fairseq_b2b.eval.lm",
                   "b2b-import-hf": "fairseq_b2b.hf.import_hf", "b2b-export-hf": "fairseq_b2b.hf.export_hf",
                   "b2b-report": "fairseq_b2b.cli.report", "b2b-experiment": "fairseq_b2b.cli.experiment"}


def _actions(parser, name):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub, sp in a.choices.items():
                yield from _actions(sp, f"{name} {sub}")
        elif not isinstance(a, argparse._HelpAction):
            yield name, a


def test_every_option_has_help_with_its_default():
    missing = []
    for prog, module in CONSOLE_PARSERS.items():
        for name, a in _actions(importlib.import_module(module).build_parser(), prog):
            opt = "/".join(a.option_strings) or a.dest
            if not a.help:
                missing.append(f"{name} {opt}: no help")
            elif a.option_strings and not a.required and "default" not in a.help:
                missing.append(f"{name} {opt}: the help does not state the default ({a.default!r})")
    assert not missing, "\n".join(missing)


def test_grow_method_has_choices():
    from fairseq_b2b.cli.grow import build_parser

    method = next(a for a in build_parser()._actions if a.dest == "method")
    assert tuple(method.choices) == ("fpi", "aki", "direct_copy") and method.default == "aki"
