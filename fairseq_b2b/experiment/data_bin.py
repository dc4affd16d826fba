"""The data-bin every run of an experiment trains on: ``--data``, or the built-in corpus."""
from __future__ import annotations

import os

from .presets import ExperimentError, Preset


def prepare_data(root: str, preset: Preset, data: str | None = None) -> str:
    """The data-bin every run uses: ``--data`` as given, else the built-in corpus (for the CPU
    presets its first ``data_lines`` training lines, so that epochs are short)."""
    if data:
        if not os.path.isfile(os.path.join(data, "dict.txt")):
            raise ExperimentError(f"--data {data} has no dict.txt: pass a fairseq data-bin (b2b-preprocess corpus "
                                  "... makes one)")
        return os.path.abspath(data)
    from ..data import Options, builtin_corpus, prepare_builtin, prepare_corpus
    from ..data.corpus import first_lines
    from ..data.steps import DataError

    out = os.path.join(root, "data")
    opts = Options(num_merges=preset.num_merges)
    try:
        if preset.data_lines is None and preset.valid_lines is None:
            return str(prepare_builtin(out, opts)["data_bin"])
        corpus = builtin_corpus(os.path.join(root, "corpus"))  # beside data/: b2b-preprocess writes only into ours
        heads = {split: first_lines(corpus[split], preset.data_lines if split == "train" else preset.valid_lines)
                 if (preset.data_lines if split == "train" else preset.valid_lines) else corpus[split]
                 for split in ("train", "valid", "test")}
        return str(prepare_corpus([heads["train"]], heads["valid"], heads["test"], out, opts)["data_bin"])
    except DataError as e:
        raise ExperimentError(str(e)) from None
