"""``small_bin``: a few updates per epoch of real text (the first ~2000 train / ~400 valid
tokens of the test data-bin, its dictionary); import the fixture into a test module."""
import os

import pytest


def _subset_split(src_prefix, dst_prefix, max_tokens, vocab_size):
    from fairseq.data import indexed_dataset as ids

    ds = ids.make_dataset(src_prefix, impl=ids.infer_dataset_impl(src_prefix))
    builder = ids.make_builder(ids.data_file_path(dst_prefix), impl="mmap", vocab_size=vocab_size)
    total = 0
    for i in range(len(ds)):
        builder.add_item(ds[i])
        total += len(ds[i])
        if total >= max_tokens:
            break
    builder.finalize(ids.index_file_path(dst_prefix))


@pytest.fixture(scope="session")
def small_bin(data_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("subset_bin")
    with open(os.path.join(data_bin, "dict.txt"), encoding="utf-8") as f:
        dict_text = f.read()
    (out / "dict.txt").write_text(dict_text, encoding="utf-8")
    vocab = len(dict_text.splitlines()) + 8
    _subset_split(os.path.join(data_bin, "train"), str(out / "train"), 2000, vocab)
    _subset_split(os.path.join(data_bin, "valid"), str(out / "valid"), 400, vocab)
    return str(out)
