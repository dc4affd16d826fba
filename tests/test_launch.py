"""The single-node multi-process launch of docs/distributed.md, run as written on CPU: torchrun starts 2
processes, each b2b-train (fairseq-train with this plugin) joins one gloo process group, and
the world size, the per-rank sub-model sampling and the effective batch (batch x update-freq x
processes) are checked in what the run wrote, not in what it printed it would do."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# docs/distributed.md's line (checked below to be there verbatim): each process turns torchrun's
# environment into fairseq's explicit distributed options.
LAUNCH = ("LAUNCH='exec b2b-train \"$@\" --distributed-init-method env:// --distributed-no-spawn "
          "--distributed-world-size $WORLD_SIZE --distributed-rank $RANK --device-id $LOCAL_RANK'")
TORCHRUN = 'torchrun --standalone --nproc_per_node {n} --no-python bash -c "$LAUNCH" b2b-train'
CPU_FLAGS = "--cpu --distributed-backend gloo --ddp-backend legacy_ddp"  # on GPUs: --fp16, nccl and pytorch_ddp defaults


def test_docs_show_the_tested_launch_lines():
    page = (REPO / "docs" / "distributed.md").read_text(encoding="utf-8")
    assert LAUNCH in page
    assert TORCHRUN.format(n="$N") in page


def run_launch(data_bin, save_dir, trace, nproc, batch_size, update_freq):
    train = (f"{data_bin} --task b2b_masked_lm --criterion masked_lm --arch b2b_bert_tiny_deep --submodel-epochs 1 "
             f"--submodel-layers 1 --max-update 6 --seed 3 --optimizer adam --lr 1e-3 --tokens-per-sample 32 "
             f"--batch-size {batch_size} --update-freq {update_freq} --required-batch-size-multiple 1 "
             f"--log-format json --log-interval 1 --num-workers 0 --no-save-optimizer-state --no-epoch-checkpoints "
             f"--save-dir {save_dir} --submodel-trace {trace} {CPU_FLAGS}")
    script = f"set -e\n{LAUNCH}\n{TORCHRUN.format(n=nproc)} {train}\n"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def read_trace(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def sequences_per_update(log):
    """fairseq's bsz (sequences per update, summed over every rank) from the json train_inner lines."""
    rows = [json.loads(m.group(1)) for m in re.finditer(r"train_inner[ |:]+(\{.*\})", log)]
    return [int(float(r["bsz"])) for r in rows]


def test_torchrun_two_processes_world_size_and_effective_batch(data_bin, tmp_path):
    if not (BIN / "torchrun").exists():
        pytest.skip("torchrun is not installed beside this Python")
    log = run_launch(data_bin, tmp_path / "ckpt", tmp_path / "trace", nproc=2, batch_size=4, update_freq=2)
    assert "training on 2 devices" in log
    ranks = [read_trace(tmp_path / "trace"), read_trace(tmp_path / "trace.rank1")]
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert {r["world_size"] for t in ranks for r in t} == {2}  # torch.distributed's, read during training
    assert [r["rank"] for r in ranks[0]] == [0] * 6 and [r["rank"] for r in ranks[1]] == [1] * 6
    # every rank trained the same sub-model at every update (Algorithm 2 line 5, shared sampling)
    assert [(r["depth"], r["trainable_from"]) for r in ranks[0]] == [(r["depth"], r["trainable_from"]) for r in ranks[1]]
    # effective batch = batch 4 x update-freq 2 x 2 processes (fairseq sums bsz over ranks)
    assert sequences_per_update(log) == [16] * 6
    # one checkpoint, written by rank 0, holding the trained (not the initial) weights
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt"]
    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 6
