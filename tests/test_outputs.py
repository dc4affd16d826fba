"""Nothing lost, nothing left behind (issue 21): no command overwrites what the user has (above
all not its own input), outputs are checked before any work and written atomically, a killed
command's temporaries and child processes do not outlive it, garbage input is named."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import BIN, b2b_train_main, exit_line


def _one_line(line, prog):
    """``line`` (what conftest.exit_line found), checked to be ``PROG: error: ...``."""
    assert line.startswith(f"{prog}: error: "), line
    return line


def _train_exit(argv, capsys, monkeypatch, alone=False):
    """b2b-train's error line, run in this process (see conftest.exit_line)."""
    return exit_line(lambda a: b2b_train_main(a, monkeypatch), argv, capsys, alone=alone)


def _fairseq_must_not_start(monkeypatch):
    from fairseq_cli import train

    def started(*a, **k):
        raise AssertionError("fairseq-train started before the refusal")

    monkeypatch.setattr(train, "cli_main", started)


def _exit_message(excinfo) -> str:
    msg = str(excinfo.value.code)
    assert "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------- b2b-grow

def test_grow_refuses_to_overwrite_its_own_source(small_bert, tmp_path):
    """The first case of the issue: ``--source s.pt --output s.pt`` exited 0 and the source was gone."""
    from fairseq_b2b.cli.grow import main

    src = tmp_path / "s.pt"
    shutil.copyfile(small_bert, src)
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        with pytest.raises(SystemExit) as e:
            main(["--source", str(src), "--arch", "b2b_bert_tiny_wide", "--output", str(src), *extra])
        assert "is the --source of this command" in _exit_message(e)
    # the same file under another name (a hard link) is the source too
    os.link(src, tmp_path / "alias.pt")
    with pytest.raises(SystemExit) as e:
        main(["--source", str(src), "--arch", "b2b_bert_tiny_wide", "--output", str(tmp_path / "alias.pt"), "--force"])
    assert "is the --source" in _exit_message(e)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.pt", "s.pt"]


def test_grow_refuses_an_existing_output_unless_force(small_bert, tmp_path):
    from fairseq_b2b.cli.grow import main

    out = tmp_path / "g.pt"
    out.write_bytes(b"the user's file")
    with pytest.raises(SystemExit) as e:
        main(["--source", small_bert, "--arch", "b2b_bert_tiny_wide", "--output", str(out)])
    assert _exit_message(e) == f"b2b-grow: error: --output '{out}' exists: choose another path or pass --force to replace it"
    assert out.read_bytes() == b"the user's file"
    main(["--source", small_bert, "--arch", "b2b_bert_tiny_wide", "--output", str(out), "--force"])
    assert "model" in torch.load(out, weights_only=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"]
    # --force replaces a file by a file only
    (tmp_path / "d").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["--source", small_bert, "--arch", "b2b_bert_tiny_wide", "--output", str(tmp_path / "d"), "--force"])
    assert "is a folder" in _exit_message(e)


@pytest.mark.parametrize("output,reason", [("/proc/x.pt", "cannot write in '/proc'"),
                                           ("/proc/nope/x.pt", "cannot write in '/proc'"),
                                           ("{file}/x.pt", "'{file}' is a file, not a folder")])
def test_grow_unwritable_output_is_one_line_before_any_work(small_bert, tmp_path, output, reason):
    from fairseq_b2b.cli.grow import main

    (tmp_path / "file").write_text("x")
    output, reason = output.format(file=tmp_path / "file"), reason.format(file=tmp_path / "file")
    with pytest.raises(SystemExit) as e:
        main(["--source", small_bert, "--arch", "b2b_bert_tiny_wide", "--output", output])
    msg = _exit_message(e)
    assert msg == f"b2b-grow: error: --output '{output}': {reason}: choose another path"


def _temporaries(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_grow_killed_while_writing_leaves_a_temporary_the_rerun_removes(small_bert, data_bin, tmp_path):
    """SIGKILL in the middle of the run (its temporary checkpoint exists, the output does not);
    the rerun removes the temporary and writes the output.  A pre-pid ``.tmp-*.pt`` of an older
    version is removed too."""
    out = tmp_path / "g.pt"
    legacy = tmp_path / ".tmp-0123456789abcdef.pt"
    legacy.write_bytes(b"old half-written checkpoint")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([str(Path(BIN) / "b2b-grow"), "--source", small_bert, "--arch", "b2b_bert_tiny_wide",
                             "--output", str(out), "--data", data_bin, "--method", "fpi"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(n.startswith(".b2b-grow-") and n.endswith(".pt") and (tmp_path / n).stat().st_size > 0
               for n in _temporaries(tmp_path)):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "b2b-grow finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [n for n in _temporaries(tmp_path) if n != legacy.name]
    assert left and not out.exists()  # what a SIGKILL leaves
    from fairseq_b2b.cli.grow import main

    main(["--source", str(small_bert), "--arch", "b2b_bert_tiny_wide", "--output", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"]


def test_grow_sigterm_removes_its_temporary(small_bert, data_bin, tmp_path):
    out = tmp_path / "g.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([str(Path(BIN) / "b2b-grow"), "--source", small_bert, "--arch", "b2b_bert_tiny_wide",
                             "--output", str(out), "--data", data_bin, "--method", "fpi"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _temporaries(tmp_path):
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode != 0 and "interrupted by SIGTERM" in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- b2b-eval-lm

def _lm_args(small_gpt, bpe_corpus):
    return ["--path", str(small_gpt), "--data", str(bpe_corpus["data_bin"]), "--codes", str(bpe_corpus["codes"]),
            "--cpu"]


def _text(tmp_path, lines=40):
    text = tmp_path / "eval.txt"
    text.write_text("To be , or not to be : that is the question .\n" * lines, encoding="utf-8")
    return text


def test_eval_lm_output_json_is_checked_before_evaluating(small_gpt, bpe_corpus, tmp_path, monkeypatch):
    """A directory as --output-json failed only after the whole evaluation (IsADirectoryError,
    ``DIR.tmp`` left); an existing file was overwritten; the eval file itself could be the output."""
    from fairseq_b2b.eval import lm

    def no_evaluation(*a, **k):
        raise AssertionError("evaluated before the output was checked")

    monkeypatch.setattr(lm, "evaluate", no_evaluation)
    text = _text(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "old.json").write_text("{}")
    cases = [(tmp_path / "dir", [], "is a folder"),
             (tmp_path / "old.json", [], "exists: choose another path or pass --force"),
             (text, ["--force"], "is the --eval-file of this command"),
             (Path("/proc/results.json"), [], "cannot write in '/proc'")]
    for out, extra, needle in cases:
        with pytest.raises(SystemExit) as e:
            lm.run([*_lm_args(small_gpt, bpe_corpus), "--eval-file", str(text), "--output-json", str(out), *extra])
        msg = _exit_message(e)
        assert msg.startswith("b2b-eval-lm: error: --output-json") and needle in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "eval.txt", "old.json"]
    assert (tmp_path / "old.json").read_text() == "{}" and not list((tmp_path / "dir").iterdir())


def _children(pid: int) -> list:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_eval_lm(small_gpt, bpe_corpus, text, tmpdir):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", TMPDIR=str(tmpdir))
    proc = subprocess.Popen([str(Path(BIN) / "b2b-eval-lm"), *_lm_args(small_gpt, bpe_corpus), "--eval-file", str(text)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        scorer = [c for c in _children(proc.pid)
                  if b"_fairseq_eval_lm" in Path(f"/proc/{c}/cmdline").read_bytes()]
        if scorer:
            return proc, scorer[0]
        time.sleep(0.01)
    raise AssertionError(f"no fairseq-eval-lm child seen: {proc.communicate()[1][-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_eval_lm_child_dies_with_its_parent_and_the_rerun_cleans_up(small_gpt, bpe_corpus, tmp_path, monkeypatch, sig):
    """SIGKILL or SIGTERM of b2b-eval-lm while fairseq-eval-lm scores: the child ends with it;
    after SIGTERM nothing is left, after SIGKILL the next run removes the temporary folder."""
    import tempfile

    from fairseq_b2b.eval import lm

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    text = _text(tmp_path, lines=3000)
    proc, child = _start_eval_lm(small_gpt, bpe_corpus, text, tmpdir)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    deadline = time.time() + 10
    while time.time() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "fairseq-eval-lm outlived b2b-eval-lm"
    left = os.listdir(tmpdir)
    if sig == signal.SIGTERM:
        assert proc.returncode != 0 and "interrupted by SIGTERM" in err.strip().splitlines()[-1]
        assert left == []
        return
    assert [n for n in left if n.startswith("b2b-eval-lm-")]  # what a SIGKILL leaves
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    lm.run([*_lm_args(small_gpt, bpe_corpus), "--eval-file", str(_text(tmp_path, lines=5))])
    assert os.listdir(tmpdir) == []


def test_eval_lm_names_an_eval_file_that_is_not_text(small_gpt, bpe_corpus, tmp_path, capsys):
    """Random bytes decode to mostly U+FFFD: refused with the rate, --force evaluates them with
    a warning line.  A file mostly outside the dictionary (mostly <unk>) alike."""
    from fairseq_b2b.eval import lm

    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(range(128, 256)) * 40 + b"\n" + b"the end\n")
    with pytest.raises(SystemExit) as e:
        lm.run([*_lm_args(small_gpt, bpe_corpus), "--eval-file", str(noise)])
    msg = _exit_message(e)
    assert msg.startswith(f"b2b-eval-lm: error: eval file {noise}: ") and "are not UTF-8" in msg and "--force" in msg
    assert "% of its characters" in msg
    greek = tmp_path / "greek.txt"
    greek.write_text("λόγος ψυχή θάλασσα ἀρετή φύσις\n" * 20, encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        lm.run([*_lm_args(small_gpt, bpe_corpus), "--eval-file", str(greek)])
    assert "of its tokens are <unk>" in _exit_message(e)
    capsys.readouterr()
    lm.run([*_lm_args(small_gpt, bpe_corpus), "--eval-file", str(noise), "--force"])
    err = capsys.readouterr().err
    assert f"b2b-eval-lm: warning: eval file {noise}: " in err and "are not UTF-8" in err


# ----------------------------------------------------------------------------- b2b-import-hf / b2b-export-hf

@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    from fairseq_b2b.errors import B2BError
    from fairseq_b2b.hf import common

    try:
        tr = common.require_transformers()
    except B2BError as e:
        pytest.skip(f"transformers is not usable here: {e}")
    from test_hf import _make_bert_mlm

    src = tmp_path_factory.mktemp("hf") / "bert"
    _make_bert_mlm(tr, str(src))
    return src


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_import_hf_refuses_existing_and_unwritable_outputs_and_cleans_killed_runs(hf_bert, tmp_path):
    from fairseq_b2b.hf.import_hf import main

    out = tmp_path / "fs" / "bert.pt"
    out.parent.mkdir()
    out.write_bytes(b"the user's checkpoint")
    cases = [([str(out)], "exists: choose another path or pass --force"),
             (["/proc/x.pt"], "cannot write in '/proc'"),
             ([str(tmp_path / "fs")], "is a folder"),
             ([str(tmp_path / "fs"), "--force"], "is a folder")]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as e:
            main([str(hf_bert), "--family", "bert", "--output", *extra])
        msg = _exit_message(e)
        assert msg.startswith("b2b-import-hf: error: --output") and needle in msg, msg
    assert out.read_bytes() == b"the user's checkpoint"
    # what a SIGKILLed import leaves (its staging folder), this version's and an older one's
    killed = tmp_path / "fs" / f".b2b-import-hf-{_dead_pid()}-0123456789abcdef"
    (killed / "x").mkdir(parents=True)
    older = tmp_path / "fs" / ".b2b-import-hf-ab_cd123"
    older.mkdir()
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    main([str(hf_bert), "--family", "bert", "--output", str(out), "--force"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["bert.pt", "dict.txt"]
    assert "model" in torch.load(out, weights_only=False)


def test_export_hf_force_replaces_a_folder_by_a_folder_only(hf_bert, tmp_path):
    from fairseq_b2b.hf.export_hf import main as export_main
    from fairseq_b2b.hf.import_hf import main as import_main

    ckpt = tmp_path / "fs" / "bert.pt"
    import_main([str(hf_bert), "--family", "bert", "--output", str(ckpt)])
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    cases = [([str(afile), "--force"], "is a file, not a folder"),
             ([str(afile)], "is a file, not a folder"),
             (["/proc/x"], "cannot write in '/proc'"),
             ([str(ckpt)], "is the CKPT of this command"),
             ([str(tmp_path / "fs"), "--force"], "holds the CKPT")]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as e:
            export_main([str(ckpt), "--output", *extra])
        msg = _exit_message(e)
        assert msg.startswith("b2b-export-hf: error: --output") and needle in msg, msg
    assert afile.read_text() == "keep me" and ckpt.is_file()
    out = tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("old")
    export_main([str(ckpt), "--output", str(out), "--force"])
    assert (out / "config.json").is_file() and not (out / "old.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- b2b-train

def _train_argv(data, save, *extra):
    return [str(data), "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_wide", "--batch-size", "8",
            "--optimizer", "adam", "--lr", "1e-4", "--cpu", "--tokens-per-sample", "64", "--save-dir", str(save), *extra]


def test_train_on_a_missing_data_dir_is_one_line(tmp_path):
    from fairseq_b2b.cli.train import main

    with pytest.raises(SystemExit) as e:
        main(_train_argv(tmp_path / "nope", tmp_path / "runs" / "x"))
    assert _exit_message(e) == (f"b2b-train: error: the data directory '{tmp_path / 'nope'}' does not exist: pass the "
                                "data-bin folder made by b2b-preprocess (or fairseq-preprocess)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra,needle", [
    ([], "add --submodel-layers 1 (at most 2), or --submodel-epochs 0"),
    (["--submodel-layers", "1", "--max-epoch", "5"], "add --max-epoch 6 or more, or --submodel-epochs 4"),
    (["--submodel-layers", "1", "--max-epoch", "3", "--submodel-epochs", "3"], "add --max-epoch 4 or more"),
])
def test_train_two_stage_defaults_name_the_option_to_add_before_fairseq_starts(small_bert, data_bin, tmp_path,
                                                                              capsys, monkeypatch, extra, needle):
    """The README's --init-from-small command on a 2-layer target: the paper's lb=3, Eb=5 need a
    deeper and longer run; the one line says what to add, and comes first (no config dump, no
    hydra warnings: fairseq-train never starts), and no --save-dir is left."""
    save = tmp_path / "runs" / "big"
    _fairseq_must_not_start(monkeypatch)
    line = _train_exit(_train_argv(data_bin, save, "--init-from-small", small_bert, *extra), capsys, monkeypatch,
                       alone=True)
    assert needle in _one_line(line, "b2b-train")
    assert list(tmp_path.iterdir()) == []


def test_train_growth_method_typo_is_one_line_without_usage(data_bin, tmp_path, capsys, monkeypatch):
    _fairseq_must_not_start(monkeypatch)
    line = _train_exit(_train_argv(data_bin, tmp_path / "x", "--growth-method", "foo"), capsys, monkeypatch, alone=True)
    assert "invalid choice: 'foo'" in _one_line(line, "b2b-train")


def test_train_resuming_a_truncated_checkpoint_with_init_from_small_is_one_line(small_bert, data_bin, tmp_path,
                                                                               capsys, monkeypatch):
    """checkpoint_last.pt cut short by a killed save (found before fairseq starts), or not a
    checkpoint at all (found by the growth hook: a line, not the traceback of growth_hook.py)."""
    save = tmp_path / "run"
    save.mkdir()
    argv = _train_argv(data_bin, save, "--init-from-small", small_bert, "--submodel-layers", "1", "--max-epoch", "6")
    Path(save / "checkpoint_last.pt").write_bytes(Path(small_bert).read_bytes()[:5000])
    line = _train_exit(argv, capsys, monkeypatch)
    assert "the checkpoint to resume" in _one_line(line, "b2b-train") and "truncated" in line
    Path(save / "checkpoint_last.pt").write_bytes(b"not a checkpoint " * 100)
    last = _train_exit(argv, capsys, monkeypatch)  # no traceback printed (checked there)
    assert last.startswith("fairseq-b2b: error: checkpoint") and "cannot be read" in last
    assert sorted(p.name for p in save.iterdir()) == ["checkpoint_last.pt"]


def test_train_refused_inside_fairseq_leaves_no_save_dir(data_bin, tmp_path, capsys, monkeypatch):
    """A refusal that only the model build can see (a source of the other family) comes after
    fairseq made --save-dir and --log-file: both go again."""
    gpt_like = tmp_path / "src" / "gpt.pt"
    gpt_like.parent.mkdir()
    gpt_like.write_bytes(b"PK\x03\x04 not a checkpoint")
    save = tmp_path / "runs" / "x"
    last = _train_exit(_train_argv(data_bin, save, "--init-from-small", gpt_like, "--submodel-epochs", "0",
                                   "--log-file", save / "train.log"), capsys, monkeypatch)
    assert "error" in last  # a non-zero exit and no traceback: checked by exit_line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_readme_init_from_small_two_layer_command_runs_as_written(small_bert, data_bin, tmp_path, monkeypatch):
    import re
    import shlex

    section = Path(__file__).resolve().parents[1].joinpath("docs", "grow-your-model.md").read_text().split(
        "## Grow when training starts")[1].split("\n## ")[0]
    block = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "b2b_bert_tiny_wide" in b][0]
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[0] == "b2b-train" and "--submodel-layers" in argv and "--max-epoch" in argv
    argv = [str(data_bin) if a == "DATA" else str(small_bert) if a == "small/checkpoint_best.pt" else
            str(tmp_path / "big") if a == "big" else a for a in argv[1:]]
    b2b_train_main([*argv, "--cpu", "--tokens-per-sample", "64", "--max-update", "12"], monkeypatch)  # capped
    assert (tmp_path / "big" / "checkpoint_last.pt").is_file()


# ----------------------------------------------------------------------------- b2b-experiment

def test_experiment_refusals_are_one_line_and_leave_no_folder(tmp_path):
    from fairseq_b2b.cli.experiment import main

    (tmp_path / "afile").write_text("x")
    cases = [(["--output", str(tmp_path / "afile")], "is a file, not a folder"),
             (["--output", str(tmp_path / "afile"), "--dry-run"], "is a file, not a folder"),
             (["--output", "/proc/x"], "cannot write in '/proc'"),
             (["--output", str(tmp_path / "a" / "b"), "--data", str(tmp_path / "nope")], "has no dict.txt"),
             (["--output", str(tmp_path / "c"), "--only", "nope"], "--only nope: no such run")]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        msg = _exit_message(e)
        assert msg.startswith("b2b-experiment: error: ") and needle in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ----------------------------------------------------------------------------- b2b-report

def test_report_checks_its_outputs_first_and_never_replaces_a_foreign_results_json(tmp_path, capsys):
    from test_report import write_log

    from fairseq_b2b.cli import report as report_cli

    write_log(tmp_path / "scratch" / "train.log", [(2e12, 6.0)], [(0, 0, 10.0), (10, 2e12, 6.0)])
    write_log(tmp_path / "fast" / "train.log", [(1e12, 6.0)], [(0, 0, 8.0), (10, 1e12, 5.0)])
    logs = [str(tmp_path / n / "train.log") for n in ("scratch", "fast")]
    (tmp_path / "afile").write_text("x")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "results.json").write_text("my own notes")
    cases = [(["--output", "/proc/x"], "--output '/proc/x': cannot write in '/proc'"),
             (["--output", str(tmp_path / "afile")], "is a file, not a folder"),
             (["--output", str(foreign)], "exists: choose another path or pass --force")]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as e:
            report_cli.main(logs + ["--no-plots", *extra])
        msg = _exit_message(e)
        assert msg.startswith("b2b-report: error: ") and needle in msg, msg
    assert (foreign / "results.json").read_text() == "my own notes"
    # its own results.json is regenerated; a foreign one is replaced with --force only
    report_cli.main(logs + ["--no-plots", "--output", str(tmp_path / "out")])
    report_cli.main(logs + ["--no-plots", "--output", str(tmp_path / "out")])
    report_cli.main(logs + ["--no-plots", "--output", str(foreign), "--force"])
    assert "partial" in (foreign / "results.json").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json"]


def test_report_names_a_log_without_fairseq_records(tmp_path):
    from fairseq_b2b.cli import report as report_cli

    (tmp_path / "scratch").mkdir()
    noise = tmp_path / "scratch" / "train.log"
    noise.write_bytes(b"random \x00\xff bytes\n")
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(noise), "--no-plots", "--output", str(tmp_path / "out")])
    assert f"log file '{noise}' has no fairseq json records" in _exit_message(e)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- b2b-preprocess

def test_preprocess_names_garbage_input(tmp_path, capsys):
    """Random bytes as a corpus (their dictionary's top entry was U+FFFD) and a one-line train
    corpus that leaves the valid split mostly <unk>: refused with the rate, --force goes on
    with a warning line."""
    import random

    from fairseq_b2b.data.pipeline import main

    rng = random.Random(0)
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(rng.randrange(256) for _ in range(20000)))
    valid = tmp_path / "valid.txt"
    valid.write_text("To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 30)
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--train", str(noise), "--valid", str(valid), "--output", str(tmp_path / "o1"), "--workers", "1"])
    msg = _exit_message(e)
    assert msg.startswith(f"b2b-preprocess: error: train file {noise}: ") and "of its characters are not UTF-8" in msg
    assert "--force" in msg and not (tmp_path / "o1").exists()
    one = tmp_path / "one.txt"
    one.write_text("The cat sat.\n")
    argv = ["corpus", "--train", str(one), "--valid", str(valid), "--output", str(tmp_path / "o2"), "--workers", "1",
            "--num-merges", "10"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = _exit_message(e)
    assert msg.startswith(f"b2b-preprocess: error: the valid split ({valid}): ") and "of its tokens are <unk>" in msg
    assert not (tmp_path / "o2" / "data-bin").exists()
    capsys.readouterr()
    main(argv + ["--force"])
    err = capsys.readouterr().err
    assert "b2b-preprocess: warning: the valid split" in err and (tmp_path / "o2" / "data-bin" / "dict.txt").is_file()


def test_preprocess_apply_and_corpus_never_overwrite_foreign_files(tmp_path):
    from fairseq_b2b.data.pipeline import main

    codes = tmp_path / "bpe.codes"
    codes.write_text("t h 5\nth e</w> 3\n")
    text = tmp_path / "in.txt"
    text.write_text("the thing\n")
    out = tmp_path / "out.txt"
    out.write_text("mine")
    for argv, needle in ((["--output", str(out)], "exists: choose another path or pass --force"),
                         (["--output", str(text), "--force"], "is the --input of this command"),
                         (["--output", "/proc/x.txt"], "cannot write in '/proc'")):
        with pytest.raises(SystemExit) as e:
            main(["apply", "--codes", str(codes), "--input", str(text), *argv])
        assert needle in _exit_message(e)
    assert out.read_text() == "mine"
    main(["apply", "--codes", str(codes), "--input", str(text), "--output", str(out), "--force"])
    assert out.read_text().strip() and out.read_text() != "mine"
    # a folder of the user's that holds a dict.txt: not written into without --force
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "dict.txt").write_text("my dictionary")
    with pytest.raises(SystemExit) as e:
        main(["corpus", "--train", str(text), "--valid", str(text), "--output", str(mine)])
    assert "--output" in _exit_message(e) and "pass --force to write into it" in str(e.value.code)
    assert (mine / "dict.txt").read_text() == "my dictionary" and sorted(p.name for p in mine.iterdir()) == ["dict.txt"]


# ----------------------------------------------------------------------------- b2b-glue

def test_glue_prepare_of_a_header_only_tsv_leaves_no_temporary(bpe_corpus, tmp_path):
    from fairseq_b2b.eval.glue import main

    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\n")
    (glue / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    out = tmp_path / "out"
    stale = out / "data" / ".SST-2-bin.tmp"  # what a killed run leaves
    (stale / "text").mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--glue-dir", str(tmp_path / "glue"), "--tasks", "SST-2", "--output", str(out),
              "--dict", str(bpe_corpus["dict"]), "--codes", str(bpe_corpus["codes"])])
    assert _exit_message(e).startswith("b2b-glue: error: ")
    assert not stale.exists() and not (out / "data" / "SST-2-bin").exists()
    glue_new = tmp_path / "new"
    with pytest.raises(SystemExit):
        main(["prepare", "--glue-dir", str(tmp_path / "glue"), "--tasks", "SST-2", "--output", str(glue_new),
              "--dict", str(bpe_corpus["dict"]), "--codes", str(bpe_corpus["codes"])])
    assert not glue_new.exists()  # no empty output folders either
