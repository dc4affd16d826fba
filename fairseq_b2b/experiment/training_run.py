"""One fairseq-train run of the experiment (``b2b-train`` in a subprocess): its exact command,
reuse when it finished with the same command (``DONE`` beside its log), resume otherwise, and a
compact console echo of its json log lines."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time

from ..json_log import json_record
from ..outputs import die_with_parent
from .plan import Run
from .presets import ExperimentError


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


def _progress_line(tag: str, line: str) -> str | None:
    """A compact console line for fairseq's json training/validation records."""
    rec = json_record(line, '"loss"', '"valid_loss"')
    if rec is None:
        return None
    if "valid_loss" in rec:
        return (f"  [{tag}] update {rec.get('valid_num_updates', '?')} valid loss {float(rec['valid_loss']):.3f}")
    if "train_loss" in rec or "num_updates" not in rec:
        return None
    flops = rec.get("train_flops")
    flops = f" flops {float(flops):.3g}" if flops is not None else ""
    return f"  [{tag}] update {rec['num_updates']} loss {float(rec['loss']):.3f}{flops}"


def command_line(data_arg: str, run: Run) -> list:
    """The exact b2b-train argv of ``run`` (relative to the experiment directory)."""
    return ["b2b-train", data_arg, *run.argv, "--save-dir", os.path.join("runs", run.name),
            "--log-file", os.path.join("runs", run.name, "train.log")]


def run_training(root: str, data_bin: str, run: Run, echo_every: int = 5, threads: int | None = None) -> float:
    """One fairseq-train run (reused when finished with the same command); returns seconds."""
    folder = os.path.join(root, "runs", run.name)
    os.makedirs(folder, exist_ok=True)
    argv = command_line(data_arg(root, data_bin), run)
    command = shlex.join(argv)
    done, cmd_file = os.path.join(folder, "DONE"), os.path.join(folder, "command.txt")
    if os.path.exists(done) and open(cmd_file).read().strip() == command:
        try:
            seconds = float(json.load(open(done)).get("seconds", 0.0))
            say(f"[{run.family}/{run.name}] finished earlier, reused ({folder})")
            return seconds
        except (ValueError, OSError, AttributeError):  # an unreadable marker: train (resume) again
            os.remove(done)
    if os.path.exists(cmd_file) and open(cmd_file).read().strip() != command:
        raise ExperimentError(f"{folder} holds a run with another command: use a new --output directory or delete "
                              "that run folder")
    with open(cmd_file, "w") as f:
        f.write(command + "\n")
    say(f"[{run.family}/{run.name}] {command}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.Popen([_bin("b2b-train"), *argv[1:]], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent)
    tail, count = [], 0
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        short = _progress_line(f"{run.family}/{run.name}", line)
        if short and ("valid" in short or count % echo_every == 0):
            say(short)
        count += bool(short)
    if proc.wait() != 0:
        raise ExperimentError(f"run {run.name} failed (exit {proc.returncode}); its output ends:\n" + "".join(tail))
    seconds = time.perf_counter() - start
    with open(done + ".tmp", "w") as f:
        json.dump({"seconds": seconds}, f)
    os.replace(done + ".tmp", done)
    say(f"[{run.family}/{run.name}] done in {seconds:.0f}s")
    return seconds


def data_arg(root: str, data_bin: str) -> str:
    inside = os.path.abspath(data_bin).startswith(os.path.abspath(root) + os.sep)
    return os.path.relpath(data_bin, root) if inside else os.path.abspath(data_bin)
