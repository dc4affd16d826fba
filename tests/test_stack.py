"""The installed stack: transformers imports beside the tested torch without any guard in the
package, and fairseq's text tools never import torchaudio (which scripts/setup_env.sh keeps out
of .venv: the newest torchaudio, 2.11, does not load beside torch 2.13)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fairseq_b2b"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="transformers (the [hf] extra) is not installed")
def test_transformers_models_import_in_a_fresh_interpreter():
    """What a user script (e.g. HuggingFace's run_qa.py) does first; no fairseq_b2b import before it."""
    proc = run_python("from transformers import BertModel, GPT2LMHeadModel; print(BertModel.__name__, GPT2LMHeadModel.__name__)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["BertModel", "GPT2LMHeadModel"]


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="transformers (the [hf] extra) is not installed")
def test_package_and_transformers_together_leave_torchaudio_alone():
    proc = run_python("import sys, fairseq_b2b\n"
                      "from fairseq_b2b.hf.common import require_transformers\n"
                      "tr = require_transformers(); tr.BertModel; tr.GPT2LMHeadModel\n"
                      "print(repr(sys.modules.get('torchaudio', 'absent')))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() != "None"  # nobody planted a None entry to hide a broken torchaudio


def test_package_has_no_import_guard():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "torchaudio" in text or re.search(r"sys\.modules\[[^\]]+\]\s*=", text):
            offenders.append(str(path.relative_to(PACKAGE.parent)))
    assert offenders == []


def test_fairseq_text_tools_do_not_import_torchaudio():
    """Everything the package runs (import fairseq, its tasks and models, fairseq-train,
    fairseq-eval-lm, fairseq-preprocess) works without torchaudio: fairseq imports it only
    inside its speech code."""
    proc = run_python("import sys, fairseq, fairseq.tasks, fairseq.models, fairseq_b2b\n"
                      "import fairseq_cli.train, fairseq_cli.eval_lm, fairseq_cli.preprocess\n"
                      "from fairseq.tasks import TASK_REGISTRY\n"
                      "assert {'masked_lm', 'language_modeling', 'b2b_masked_lm'} <= set(TASK_REGISTRY)\n"
                      "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchaudio'))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_a_torchaudio_in_the_environment_loads():
    """scripts/setup_env.sh removes torchaudio from .venv; one that is present (a user's own
    matched torch/torchaudio pair) must load, or transformers breaks on import."""
    if importlib.util.find_spec("torchaudio") is None:
        pytest.skip("no torchaudio in this environment (scripts/setup_env.sh removes it): nothing to load")
    proc = run_python("import torchaudio")
    assert proc.returncode == 0, ("torchaudio is installed but does not load beside this torch "
                                  f"(run bash scripts/setup_env.sh, or pip uninstall torchaudio): {proc.stderr[-500:]}")
