"""Table 2 in miniature: after pre-training, every compared method's final BERT model is
fine-tuned on the built-in classification task (``b2b-glue builtin-task``: MILTON, a line of
*Paradise Lost* or of a play) and the built-in QA set (``b2b-squad builtin-set``: speaker
attribution), with the preset's recipe (``Preset.downstream``; the commands' own defaults are
the paper's BERT-base recipe).  Each fine-tuning is the real command in a subprocess:

    DIR/downstream/tasks/                 the two data sets, written once (b2b-glue / b2b-squad)
    DIR/downstream/<run>/<TASK>/          the command's --output (results.json, its log)
    DIR/downstream/<run>/<TASK>.json      the score, the checkpoint's sha256 and the command

A finished fine-tuning (its ``<TASK>.json`` with the same command and checkpoint digest) is
reused on a rerun.  GPT-family models are not fine-tuned: both tasks need a BERT encoder.
The report (:func:`group_scores`, :func:`markdown`) gives per method the mean ± sd over the
pre-training seeds.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from ..outputs import run_child
from .presets import ExperimentError, Preset
from ..report import _mean_sd
from .training_run import _bin, say

TASKS = ("MILTON", "QA")
#: (column title, task, key in the task's record); scores x100
COLUMNS = (("MILTON acc", "MILTON", "accuracy"), ("QA EM", "QA", "exact_match"), ("QA F1", "QA", "f1"))


def downstream_runs(runs: list) -> list:
    """The runs whose final model is fine-tuned: every BERT-family method run (sources excluded)."""
    return [r for r in runs if r.family == "bert" and not r.label.startswith("source")]


def task_commands(preset: Preset) -> list:
    """The commands that write the built-in data sets into ``downstream/tasks`` (relative to DIR)."""
    cls, qa = preset.downstream["cls"], preset.downstream["qa"]
    return [["b2b-glue", "builtin-task", "--output", os.path.join("downstream", "tasks", "glue"),
             "--train-per-class", str(cls["train_per_class"]), "--dev-per-class", str(cls["dev_per_class"])],
            ["b2b-squad", "builtin-set", "--output", os.path.join("downstream", "tasks", "qa"),
             "--train-questions", str(qa["train_questions"]), "--dev-questions", str(qa["dev_questions"])]]


def fine_tune_commands(preset: Preset, run) -> dict:
    """{task: argv} of one run's fine-tunings, relative to DIR (the run's seed is the fine-tuning seed)."""
    cls, qa = preset.downstream["cls"], preset.downstream["qa"]
    ckpt = os.path.join("runs", run.name, "checkpoint_last.pt")
    out = os.path.join("downstream", run.name)
    device = ["--cpu"] if preset.cpu else []
    return {
        "MILTON": ["b2b-glue", "sweep", "--checkpoint", ckpt, "--glue-dir", os.path.join("downstream", "tasks", "glue"),
                   "--tasks", "MILTON", "--output", os.path.join(out, "MILTON"), "--lrs", f"{cls['lr']:g}",
                   "--epochs", str(cls["epochs"]), "--batch-size", str(cls["batch_size"]), "--seed", str(run.seed),
                   *device],
        "QA": ["b2b-squad", "fine-tune", "--checkpoint", ckpt, "--train", os.path.join("downstream", "tasks", "qa",
                                                                                       "train.json"),
               "--dev", os.path.join("downstream", "tasks", "qa", "dev.json"), "--output", os.path.join(out, "QA"),
               "--lr", f"{qa['lr']:g}", "--epochs", str(qa["epochs"]), "--batch-size", str(qa["batch_size"]),
               "--doc-stride", str(qa["doc_stride"]), "--max-answer-length", str(qa["max_answer_length"]),
               "--seed", str(run.seed), "--force", *device],
    }


def dry_run_lines(preset: Preset, root: str, runs: list) -> list:
    """The shell commands of the downstream step, as ``b2b-experiment --dry-run`` prints them."""
    lines = [f"cd {shlex.quote(root)} && {shlex.join(argv)}" for argv in task_commands(preset)]
    for run in downstream_runs(runs):
        lines += [f"cd {shlex.quote(root)} && {shlex.join(argv)}" for argv in fine_tune_commands(preset, run).values()]
    return lines


def _call(root: str, argv: list, log: str, threads: int | None) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    os.makedirs(os.path.dirname(os.path.join(root, log)), exist_ok=True)
    with open(os.path.join(root, log), "w") as f:
        rc = run_child([_bin(argv[0]), *argv[1:]], cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        with open(os.path.join(root, log)) as f:
            tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
        raise ExperimentError(f"{shlex.join(argv)} failed (exit {rc}): {tail[0]} (log: {os.path.join(root, log)})")


def prepare_tasks(root: str, preset: Preset, threads: int | None = None) -> None:
    """The two built-in data sets, written once (a record of the commands marks them done)."""
    marker = os.path.join(root, "downstream", "tasks", "DONE")
    commands = [shlex.join(c) for c in task_commands(preset)]
    if os.path.exists(marker) and json.load(open(marker)).get("commands") == commands:
        return
    shutil.rmtree(os.path.join(root, "downstream", "tasks"), ignore_errors=True)
    for argv in task_commands(preset):
        say(f"[downstream] {shlex.join(argv)}")
        _call(root, argv, os.path.join("downstream", "logs", f"{argv[0]}-{argv[1]}.log"), threads)
    _write_json(marker, {"commands": commands})


def _write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def _digest(path: str) -> str:
    from ..data.steps import file_digest
    from pathlib import Path

    return file_digest(Path(path))


def _score(root: str, task: str, out: str) -> dict:
    """The scores (x100) of a finished fine-tuning, from the command's results.json."""
    with open(os.path.join(root, out, "results.json")) as f:
        results = json.load(f)
    if task == "MILTON":
        best = results["best"]["MILTON"]
        dev = next(iter(best["dev"].values()))
        return {"accuracy": 100 * best["score"], "majority": 100 * dev["majority_acc"] if "majority_acc" in dev
                else None, "lr": best["lr"], "epochs": best["epochs"]}
    base = results.get("first_name_baseline") or {}
    return {"exact_match": results["exact_match"], "f1": results["f1"], "baseline_exact_match":
            base.get("exact_match"), "baseline_f1": base.get("f1"), "questions": results["questions"]}


def fine_tune(root: str, preset: Preset, run, task: str, threads: int | None = None) -> dict:
    """One run's fine-tuning on one task (reused when done with the same command and checkpoint)."""
    argv = fine_tune_commands(preset, run)[task]
    record_path = os.path.join(root, "downstream", run.name, f"{task}.json")
    ckpt = os.path.join(root, "runs", run.name, "checkpoint_last.pt")
    if not os.path.isfile(ckpt):
        raise ExperimentError(f"{ckpt} not found: the run {run.name} has not finished (rerun b2b-experiment)")
    digest, command = _digest(ckpt), shlex.join(argv)
    if os.path.exists(record_path):
        try:
            record = json.load(open(record_path))
            if record.get("command") == command and record.get("checkpoint_sha256") == digest:
                say(f"[downstream/{run.name}] {task} finished earlier, reused")
                return record
        except ValueError:
            pass
    out = argv[argv.index("--output") + 1]
    if task == "MILTON":  # b2b-glue reuses a prepared MILTON-bin: binarize it once for every run
        _share_glue_data(root, out)
    say(f"[downstream/{run.name}] {command}")
    start = time.perf_counter()
    _call(root, argv, os.path.join("downstream", run.name, f"{task}.log"), threads)
    record = {"run": run.name, "method": run.label, "seed": run.seed, "group": run.group, "task": task,
              **_score(root, task, out), "checkpoint_sha256": digest, "command": command,
              "seconds": round(time.perf_counter() - start, 1)}
    _write_json(record_path, record)
    shown = ", ".join(f"{title} {record[key]:.1f}" for title, t, key in COLUMNS if t == task)
    say(f"[downstream/{run.name}] {shown} ({record['seconds']:.0f}s)")
    return record


def _share_glue_data(root: str, out: str) -> None:
    """Copy the first prepared ``MILTON-bin`` into this run's output (b2b-glue's key check reuses it)."""
    mine = os.path.join(root, out, "data", "MILTON-bin")
    if os.path.exists(mine):
        return
    shared = os.path.join(root, "downstream", "tasks", "glue-bin", "MILTON-bin")
    if os.path.isfile(os.path.join(shared, "b2b-glue.json")):
        shutil.copytree(shared, mine)


def _keep_glue_data(root: str, out: str) -> None:
    shared = os.path.join(root, "downstream", "tasks", "glue-bin", "MILTON-bin")
    mine = os.path.join(root, out, "data", "MILTON-bin")
    if not os.path.exists(shared) and os.path.isfile(os.path.join(mine, "b2b-glue.json")):
        shutil.copytree(mine, shared + ".tmp")
        os.replace(shared + ".tmp", shared)


def run_downstream(root: str, preset: Preset, runs: list, jobs: int = 1, threads: int | None = None) -> dict:
    """Fine-tune every BERT method run of ``runs`` on both built-in tasks, ``jobs`` at a time;
    returns {run name: {task: record}}."""
    targets = downstream_runs(runs)
    if not preset.downstream or not targets:
        return {}
    prepare_tasks(root, preset, threads)
    say(f"[downstream] fine-tuning {len(targets)} BERT model(s) on {' and '.join(TASKS)}, {jobs} at a time")
    out: dict = {r.name: {} for r in targets}
    first = targets[0]  # binarizes MILTON once, before the others copy it
    out[first.name]["MILTON"] = fine_tune(root, preset, first, "MILTON", threads)
    _keep_glue_data(root, os.path.join("downstream", first.name, "MILTON"))
    jobs_list = [(r, t) for r in targets for t in TASKS if not (r is first and t == "MILTON")]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(fine_tune, root, preset, r, t, threads): (r, t) for r, t in jobs_list}
        for fut, (r, t) in futures.items():
            out[r.name][t] = fut.result()
    return out


# ------------------------------------------------------------------------------ report

def group_scores(root: str, group: dict) -> dict | None:
    """{method: {column title: {"mean", "sd", "seeds"}}} of one experiment.json group from the
    fine-tunings' records (None when the group has none), plus the tasks' baselines."""
    out, baselines = {}, {}
    for label, spec in group["runs"].items():
        runs = spec if isinstance(spec, dict) else {"1": spec}
        cells = {}
        for title, task, key in COLUMNS:
            values = []
            for run in runs.values():
                path = os.path.join(root, "downstream", os.path.basename(os.path.normpath(run)), f"{task}.json")
                if os.path.exists(path):
                    record = json.load(open(path))
                    values.append(record[key])
                    if task == "QA" and record.get("baseline_f1") is not None:
                        baselines["QA first-name baseline"] = {"QA EM": record["baseline_exact_match"],
                                                               "QA F1": record["baseline_f1"]}
                    if task == "MILTON" and record.get("majority") is not None:
                        baselines["MILTON majority class"] = {"MILTON acc": record["majority"]}
            if values:
                mean, sd = _mean_sd(values)
                cells[title] = {"mean": mean, "sd": sd, "seeds": len(values)}
        if cells:
            out[label] = cells
    if not out:
        return None
    return {"methods": out, "baselines": baselines}


def _cell(cell: dict | None) -> str:
    if not cell:
        return "-"
    return f"{cell['mean']:.1f}" if cell["sd"] is None else f"{cell['mean']:.1f} ± {cell['sd']:.1f}"


def markdown(result: dict, scores: dict) -> str:
    """Table 2 in miniature: method, saving, saving with the source, then the downstream scores
    (mean ± sd over seeds; savings as in the pre-training table)."""
    from ..report import _cell as saving_cell

    titles = [c[0] for c in COLUMNS]
    lines = ["| method | saving | saving incl. source | " + " | ".join(titles) + " | seeds |",
             "|---|---:|---:|" + "---:|" * len(titles) + "---:|"]
    for name, cells in scores["methods"].items():
        m = result.get("methods", {}).get(name, {})
        seeds = max(c["seeds"] for c in cells.values())
        lines.append(f"| {name} | {saving_cell(m, 'saving') if m else '-'} | "
                     f"{saving_cell(m, 'saving_with_source') if m else '-'} | "
                     + " | ".join(_cell(cells.get(t)) for t in titles) + f" | {seeds} |")
    for name, cells in scores["baselines"].items():
        row = [name, "", "", *(f"{cells[t]:.1f}" if t in cells else "" for t in titles), ""]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("downstream: dev scores x100 of each method's final model fine-tuned on the built-in tasks "
                 "(MILTON: b2b-glue builtin-task; QA: b2b-squad builtin-set), mean ± sd over pre-training seeds")
    return "\n".join(lines)
