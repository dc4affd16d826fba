"""fairseq-preprocess run in this process (fairseq_b2b.data.binarize): the same data-bin, byte for
byte, as the stock command in its own process; logging left as it was; fairseq's errors as one
line; the worker processes it forks die with this process."""
import ctypes
import filecmp
import logging
import multiprocessing
import os
import subprocess
import sys

import pytest

from fairseq_b2b.data import binarize


def _bpe_text(tmp_path, data_bin):
    """A few hundred lines of the test corpus's BPE text, read back from its data-bin."""
    from fairseq.data import Dictionary, data_utils

    vocab = Dictionary.load(os.path.join(data_bin, "dict.txt"))
    ds = data_utils.load_indexed_dataset(os.path.join(data_bin, "valid"), vocab)
    lines = [vocab.string(ds[i][:-1]) for i in range(min(300, len(ds)))]
    path = tmp_path / "valid.bpe"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_in_process_equals_the_stock_command_byte_for_byte(data_bin, tmp_path):
    text = _bpe_text(tmp_path, data_bin)
    stock, here = tmp_path / "stock", tmp_path / "here"
    argv = binarize.only_source_argv(stock, workers=2, trainpref=text, validpref=text)
    subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", *argv], check=True, capture_output=True)
    root, logger = logging.getLogger(), logging.getLogger(binarize.LOGGER)
    before = (list(root.handlers), root.level, list(logger.handlers), logger.propagate)
    seen = []
    lines = binarize.fairseq_preprocess(binarize.only_source_argv(here, workers=2, trainpref=text, validpref=text),
                                        seen.append)
    assert (list(root.handlers), root.level, list(logger.handlers), logger.propagate) == before
    assert lines == seen and sum("% replaced" in line for line in lines) == 2
    names = sorted(n for n in os.listdir(stock) if n != "preprocess.log")
    assert names == ["dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"]
    assert sorted(n for n in os.listdir(here) if n != "preprocess.log") == names
    match, mismatch, errors = filecmp.cmpfiles(stock, here, names, shallow=False)
    assert (match, mismatch, errors) == (names, [], [])
    binarize.move_log(here, tmp_path / "logs")  # closed by then: it moves, and the data-bin is bare
    assert not (here / "preprocess.log").exists() and (tmp_path / "logs" / "preprocess.log").stat().st_size > 0


def test_fairseqs_error_is_one_line_naming_it(tmp_path):
    with pytest.raises(binarize.BinarizeError) as e:
        binarize.fairseq_preprocess(binarize.only_source_argv(tmp_path / "out", trainpref=tmp_path / "missing.bpe"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("FileNotFoundError: ") and "missing.bpe" in msg
    assert not logging.getLogger(binarize.LOGGER).handlers


def _pdeathsig(queue):
    sig = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    queue.put(sig.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_processes_forked_while_binarizing_die_with_this_one():
    ctx = multiprocessing.get_context("fork")

    def child_signal():
        queue = ctx.Queue()
        proc = ctx.Process(target=_pdeathsig, args=(queue,))
        proc.start()
        value = queue.get(timeout=30)
        proc.join()
        return value

    assert child_signal() == 0  # a plain fork: no parent-death signal
    guard = binarize._DieWithParent()
    assert child_signal() == 9  # SIGKILL when this process dies, as outputs.die_with_parent sets
    del guard
    assert child_signal() == 0
