"""Files the package writes get the process umask, as torch.save and fairseq's own checkpoints
do (not tempfile's private 0600): the outputs of b2b-grow, b2b-import-hf and b2b-export-hf,
run as commands, are readable by group and others under umask 022, and follow a stricter umask."""
from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path

import pytest
import torch

COMMANDS = {"b2b-grow": "fairseq_b2b.cli.grow", "b2b-import-hf": "fairseq_b2b.hf.import_hf",
            "b2b-export-hf": "fairseq_b2b.hf.export_hf"}


def run_with_umask(umask, name, *args):
    """The command's ``main`` in this process under ``umask`` (the package reads the umask of
    the process when it writes, as the command run from a shell with that umask would)."""
    import importlib

    main = importlib.import_module(COMMANDS[name]).main
    old = os.umask(umask)
    try:
        main([str(a) for a in args])  # a refusal raises SystemExit: the test fails
    finally:
        os.umask(old)


def modes(root: Path):
    """{relative path: permission bits} of every file and directory under ``root`` (and root)."""
    paths = [root] + sorted(root.rglob("*")) if root.is_dir() else [root]
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode) for p in paths}


def assert_modes(found: dict, file_mode: int, dir_mode: int, root: Path):
    assert found
    for rel, mode in found.items():
        want = dir_mode if (root.parent / rel).is_dir() else file_mode
        assert mode == want, f"{rel}: mode {mode:o}, expected {want:o} from the umask"


def test_b2b_grow_output_follows_the_umask(small_bert, tmp_path):
    for umask, file_mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"umask{umask:o}" / "grown.pt"
        run_with_umask(umask, "b2b-grow", "--source", small_bert, "--arch", "b2b_bert_tiny_wide", "--output", out)
        assert_modes(modes(out), file_mode, 0, out)
        assert modes(out.parent)[out.parent.name] == 0o777 & ~umask  # the folder it made
        assert [p.name for p in out.parent.iterdir()] == ["grown.pt"]  # no temporary left behind
    found = modes(tmp_path / "umask22" / "grown.pt")
    assert all(mode & 0o044 == 0o044 for mode in found.values())  # group and others can read


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers ([hf] extra) not installed")
def test_hf_import_and_export_outputs_follow_the_umask(tmp_path):
    import transformers as tr

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]
    config = tr.BertConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=32, pad_token_id=0)
    torch.manual_seed(0)
    src = tmp_path / "hf_bert"
    tr.BertForMaskedLM(config).save_pretrained(src)
    (src / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o027, 0o640, 0o750)):
        work = tmp_path / f"umask{umask:o}"
        ckpt = work / "imported" / "bert.pt"
        run_with_umask(umask, "b2b-import-hf", src, "--family", "bert", "--output", ckpt)
        imported = modes(ckpt.parent)
        assert set(imported) == {"imported", "imported/bert.pt", "imported/dict.txt"}
        assert_modes(imported, file_mode, dir_mode, ckpt.parent)
        exported = work / "exported"
        run_with_umask(umask, "b2b-export-hf", ckpt, "--output", exported)
        found = modes(exported)
        assert "exported/config.json" in found and "exported/model.safetensors" in found
        assert_modes(found, file_mode, dir_mode, exported)
        assert sorted(p.name for p in work.iterdir()) == ["exported", "imported"]  # no staging folder left
    for root in ("imported", "exported"):
        found = modes(tmp_path / "umask22" / root)
        assert all(mode & 0o044 == 0o044 for mode in found.values())


def test_checkpoint_writer_follows_the_umask_in_process(tmp_path):
    """fairseq_b2b.checkpoints.save_checkpoint, the writer behind b2b-grow and b2b-import-hf."""
    from fairseq_b2b.checkpoints import new_temp_file, process_umask

    old = os.umask(0o002)
    try:
        assert process_umask() == 0o002
        path = Path(new_temp_file(str(tmp_path), prefix=".tmp-", suffix=".pt"))
        other = Path(new_temp_file(str(tmp_path), prefix=".tmp-", suffix=".pt"))
    finally:
        os.umask(old)
    assert path != other and path.stat().st_size == 0 and path.name.startswith(".tmp-") and path.suffix == ".pt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
