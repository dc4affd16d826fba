"""b2b-grow --source FOLDER says the source is a directory (and which checkpoints it holds),
in one line, without writing anything."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import b2b_train_main, exit_line


@pytest.fixture
def grow_error(capsys):
    """b2b-grow's error line, in-process (conftest.exit_line: a non-zero exit, no traceback,
    nothing else printed)."""
    from fairseq_b2b.cli.grow import main

    def run(source, output):
        line = exit_line(main, ["--source", source, "--arch", "b2b_bert_tiny_wide", "--output", output], capsys,
                         alone=True)
        assert line.startswith("b2b-grow: error: "), line
        assert not os.path.exists(output)
        return line

    return run


def test_source_directory_is_named_as_a_directory(small_bert, tmp_path, grow_error):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(small_bert, folder / "checkpoint_last.pt")
    shutil.copy(small_bert, folder / "checkpoint3.pt")
    (folder / "notes.txt").write_text("not a checkpoint\n")
    for source in (str(folder) + "/", str(folder)):
        msg = grow_error(source, tmp_path / "grown.pt")
        assert f"--source '{source}' is a directory" in msg and "does not exist" not in msg
        assert "(it holds checkpoint_last.pt, checkpoint3.pt)" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is a directory, not a checkpoint: pass a checkpoint file in it (it holds no .pt file)" in \
        grow_error(str(empty), tmp_path / "grown.pt")
    # a path that does not exist is still reported as missing
    assert "does not exist" in grow_error(str(tmp_path / "missing.pt"), tmp_path / "grown.pt")


def test_init_from_small_directory_is_named_as_a_directory(small_bert, data_bin, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(small_bert, folder / "checkpoint_best.pt")
    last = exit_line(lambda argv: b2b_train_main(argv, monkeypatch), [
        data_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_wide", "--batch-size", "4", "--optimizer", "adam",
        "--lr", "1e-3", "--cpu", "--max-epoch", "1", "--submodel-epochs", "0", "--init-from-small", folder,
        "--save-dir", tmp_path / "x"], capsys)
    assert f"--init-from-small '{folder}' is a directory, not a checkpoint" in last
    assert "(it holds checkpoint_best.pt)" in last and "does not exist" not in last
    assert not (tmp_path / "x").exists()  # refused before fairseq makes --save-dir: nothing half-written
