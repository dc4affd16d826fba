"""How the runner schedules jobs: every run of the plan, at most ``--jobs`` at a time, each after
the runs it needs (a source's Table 1 growth reports right after the source); the manifest
written first, the wall-clock time recorded last; and the dry run's shell commands."""
from __future__ import annotations

import json
import os
import shlex
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .data_bin import prepare_data
from .growth_reports import grow_reports
from .manifest import manifest
from .plan import plan, select
from .presets import ExperimentError, Preset
from .training_run import command_line, data_arg, run_training, say
from .updates import updates_per_epoch, world_size_of


def _run_all(root: str, data_bin: str, preset: Preset, runs: list, jobs: int, threads: int | None) -> dict:
    """Run ``runs`` with at most ``jobs`` at a time, each after the runs it needs (and a source's
    Table 1 growth reports right after the source)."""
    seconds, done, failed = {}, set(), []
    pending = list(runs)
    names = {r.name for r in runs}
    dependents = {}
    for r in runs:
        for n in r.needs:
            dependents[n] = dependents.get(n, 0) + 1
    pending.sort(key=lambda r: -dependents.get(r.name, 0))  # sources first, the most-needed first
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = {}
        while pending or running:
            ready = [r for r in pending if all(n in done or n not in names for n in r.needs)]
            while ready and len(running) < max(1, jobs) and not failed:
                run = ready.pop(0)
                pending.remove(run)

                def job(run=run):
                    s = run_training(root, data_bin, run, threads=threads)
                    if run.name == f"{run.family}_source":
                        grow_reports(root, data_bin, preset, run.family)
                    return s

                running[pool.submit(job)] = run
            if not running:
                if failed:
                    break
                raise ExperimentError("runs wait for sources that are not in the plan: " +
                                      ", ".join(r.name for r in pending))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                run = running.pop(fut)
                try:
                    seconds[run.name] = fut.result()
                    done.add(run.name)
                except Exception as e:  # noqa: BLE001 - reported after the other runs stop
                    failed.append(e)
            if failed and not running:
                break
    if failed:
        raise failed[0]
    return seconds


def run_experiment(preset: Preset, root: str, data: str | None = None, families=("bert", "gpt"),
                   only: list | None = None, jobs: int | None = None, passthrough: list | None = None) -> dict:
    """Prepare the data, write the manifest and run the plan (``b2b-experiment`` then prints the
    report); returns each run's seconds."""
    os.makedirs(root, exist_ok=True)
    started = time.perf_counter()
    passthrough = list(passthrough or [])
    world = world_size_of(preset, passthrough)
    jobs = jobs or preset.jobs or os.cpu_count() or 1
    say(f"b2b-experiment: preset {preset.name} ({preset.description}) -> {root}; {jobs} run(s) at a time")
    data_bin = prepare_data(root, preset, data)
    full_plan = plan(preset, families, updates_per_epoch(data_bin, preset, world, families), world, passthrough)
    runs = select(full_plan, only)
    path = os.path.join(root, "experiment.json")
    # the manifest always describes the whole plan (an --only rerun never drops the other runs)
    with open(path + ".tmp", "w") as f:
        json.dump(manifest(preset, full_plan, data_arg(root, data_bin)), f, indent=1)
    os.replace(path + ".tmp", path)
    threads = 1 if preset.cpu else None
    finished_before = {r.name for r in runs if os.path.exists(os.path.join(root, "runs", r.name, "DONE"))}
    seconds = _run_all(root, data_bin, preset, runs, jobs, threads)
    if preset.downstream:  # Table 2 in miniature: every BERT method's final model on the built-in tasks
        from .downstream import run_downstream

        run_downstream(root, preset, runs, jobs, threads)
    _record_timing(root, {"wall_seconds": time.perf_counter() - started, "jobs": jobs,
                          "trained": {n: s for n, s in seconds.items() if n not in finished_before},
                          "reused": sorted(finished_before)})
    say(f"b2b-experiment: all runs finished in {time.perf_counter() - started:.0f}s ({jobs} at a time); report:")
    return seconds


def _record_timing(root: str, entry: dict) -> None:
    """Append this invocation's wall-clock time and the runs it trained to DIR/timing.json."""
    path = os.path.join(root, "timing.json")
    try:
        history = json.load(open(path))
        history = history if isinstance(history, list) else [history]
    except (OSError, ValueError):
        history = []
    with open(path + ".tmp", "w") as f:
        json.dump(history + [entry], f, indent=1)
    os.replace(path + ".tmp", path)


def dry_run_commands(preset: Preset, root: str, families, data: str | None, only: list | None,
                     passthrough: list | None) -> list:
    """The exact shell-quoted commands ``run_experiment`` would execute, one per run (each from the
    experiment directory, whose run folder it creates first: fairseq opens --log-file before it
    makes --save-dir).  Needs the data-bin to count updates per epoch (``--data``, or the built-in
    corpus prepared under ``root``)."""
    passthrough = list(passthrough or [])
    world = world_size_of(preset, passthrough)
    data_bin = prepare_data(root, preset, data)
    runs = select(plan(preset, families, updates_per_epoch(data_bin, preset, world, families), world, passthrough),
                  only)
    out = []
    for run in runs:
        argv = command_line(data_arg(root, data_bin), run)
        out.append(f"cd {shlex.quote(root)} && mkdir -p {shlex.quote(os.path.join('runs', run.name))} && "
                   f"{shlex.join(argv)}")
    if preset.downstream:
        from .downstream import dry_run_lines

        out += dry_run_lines(preset, root, runs)
    return out
