"""``b2b-report DIR | LOG...``: FLOPs to reach scratch's final full-model validation loss, and the
saving, from fairseq's json logs.

For an experiment directory (written by ``b2b-experiment``) it reads ``experiment.json``;
otherwise each LOG is one run named after its folder, and ``--scratch`` names the baseline.
Prints Markdown tables and writes ``results.json`` and PNG plots (loss vs FLOPs, attention).
A run is finished when its log ends with fairseq's "done training" line or (experiment
directory) ``runs/<name>/DONE`` exists; otherwise the first printed line is ``PARTIAL REPORT``
and ``results.json`` has ``"partial": true`` and the ``"unfinished"`` runs.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .. import report as rep


def build_parser():
    p = argparse.ArgumentParser(prog="b2b-report", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="an experiment directory, or fairseq json log files")
    p.add_argument("--scratch", default="scratch", help="name of the from-scratch run (log mode; default scratch)")
    p.add_argument("--source-flops", type=float, default=0.0,
                   help="log mode: training FLOPs of the source model, charged to every non-scratch run (default 0)")
    p.add_argument("--source-valid-loss", type=float, default=None,
                   help="log mode: the source's final validation loss (bits), to check that scratch ends clearly "
                        "better than the source (default: not checked)")
    p.add_argument("--output", default=None, help="where results.json and plots go (default: DIR or .)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (default: plots are written)")
    p.add_argument("--force", action="store_true",
                   help="replace a results.json that b2b-report did not write (default: off; its own earlier "
                        "results.json is always regenerated)")
    return p


def _curve(root: str, run: str, name: str):
    path = os.path.join(root, run, "train.log")
    if not os.path.exists(path):
        return None
    curve = rep.read_curve(path, name)
    curve.finished = curve.finished or os.path.exists(os.path.join(root, run, "DONE"))
    return curve


def _finished(root: str, run: str) -> bool:
    if os.path.exists(os.path.join(root, run, "DONE")):
        return True
    curve = _curve(root, run, "")
    return bool(curve and curve.finished)


def _unfinished(root: str, group: dict) -> tuple:
    """(unfinished, unfinished scratch) folder names: the group's runs (sources included) with no
    DONE marker and no "done training" line, runs not started included."""
    scratch = group.get("scratch", "scratch")
    runs = {}
    for label, spec in group["runs"].items():
        for run in (spec.values() if isinstance(spec, dict) else [spec]):
            runs[run] = runs.get(run, False) or label == scratch
    for run in (group.get("source_run"), *group.get("sources", {}).values()):
        if run:
            runs.setdefault(run, False)
    late = [(os.path.basename(os.path.normpath(run)), is_scratch) for run, is_scratch in runs.items()
            if not _finished(root, run)]
    return sorted({r for r, _ in late}), sorted({r for r, s in late if s})


def _load_group(root: str, group: dict) -> tuple:
    """One group of experiment.json: savings on the full-model validation loss (over seeds when
    the group has several), Table 1, the Eb ablation."""
    runs = {label: (spec if isinstance(spec, dict) else {"1": spec}) for label, spec in group["runs"].items()}
    scratch = group.get("scratch", "scratch")
    seeds = sorted({s for spec in runs.values() for s in spec}, key=int)
    per_seed = {}
    for seed in seeds:
        curves = {}
        for label, spec in runs.items():
            run = spec.get(seed)  # a method run with fewer seeds is paired with its own seeds' scratch only
            curve = _curve(root, run, label) if run else None
            if curve is not None:
                curves[label] = curve
        if scratch in curves and scratch in runs and seed in runs[scratch]:
            per_seed[int(seed)] = curves
    sources = dict(group.get("sources", {}))
    for label in group.get("charged_source", []):
        sources.setdefault(label, group.get("source_run"))
    source_flops, source_valid = {}, None
    for label, run in sources.items():
        curve = _curve(root, run, "source") if run else None
        source_flops[label] = curve.total_flops if curve else 0.0
    main_source = _curve(root, group["source_run"], "source") if group.get("source_run") else None
    if main_source is not None:
        source_valid = main_source.final_valid_loss
    grown = set(sources)
    if not per_seed:
        raise ValueError(f"no '{scratch}' run with validation losses in {root}: the target is scratch's final "
                         "full-model validation loss")
    family = group.get("family", "")
    if len(per_seed) == 1:
        result = rep.savings(next(iter(per_seed.values())), scratch, source_flops, grown, source_valid, family)
    else:
        result = rep.savings_over_seeds(per_seed, scratch, source_flops, grown, source_valid, family)
    result["unfinished"], result["unfinished_scratch"] = _unfinished(root, group)
    result["partial"] = bool(result["unfinished"])
    result["title"] = group.get("title", group.get("family", ""))
    result["source_training_flops"] = main_source.total_flops if main_source else 0.0
    result["note"] = group.get("note") or None
    table1 = {}
    for name, path in group.get("growth_reports", {}).items():
        full = os.path.join(root, path)
        if os.path.exists(full):
            with open(full) as f:
                r = json.load(f)
            table1[name] = {k: r.get(k) for k in ("source_loss", "grown_loss", "max_abs_logit_diff")}
            if r.get("exact_fpi"):  # a non-integer width ratio: exact FPI beside paper FPI
                table1["FPI (exact)"] = {"source_loss": r.get("source_loss"), **r["exact_fpi"]}
    if table1:
        result["table1"] = table1
        shapes = json.load(open(os.path.join(root, next(iter(group["growth_reports"].values())))))
        result["title"] = (f"{group.get('family', '').upper()}: S{shapes['source_shape']} -> T{shapes['target_shape']}"
                           f"{group.get('title_suffix', '')}")
    ablation = {}
    for eb, name in group.get("ablation_eb", {}).items():
        if name in result["methods"]:
            ablation[eb] = result["methods"][name]
    if ablation:
        result["ablation_eb"] = ablation
    return result, per_seed[min(per_seed)]


def _table1_md(table1: dict) -> str:
    lines = ["| init | source loss | loss right after growth | max abs logit diff |", "|---|---:|---:|---:|"]
    for name, r in table1.items():
        lines.append(f"| {name} | {r['source_loss']:.4f} | {r['grown_loss']:.4f} | {r['max_abs_logit_diff']:.3g} |")
    return "\n".join(lines)


def _ablation_md(ablation: dict) -> str:
    rows = ["| Eb (sub-model epochs) | saving |", "|---:|---:|"]
    for eb, m in sorted(ablation.items(), key=lambda kv: int(kv[0])):
        rows.append(f"| {eb} | {rep._cell(m, 'saving')} |")
    return "\n".join(rows)


def _attention(root: str, group: dict, out_dir: str) -> str | None:
    spec = group.get("attention")
    if not spec:
        return None
    from ..attention import attention_maps, plot_attention_grid
    from ..checkpoints import load_model

    data = os.path.join(root, spec["data"])
    sentence = spec["sentence"]
    codes = os.path.join(root, spec["codes"]) if spec.get("codes") else None
    if codes and os.path.exists(codes):  # the sentence as the training data saw it: Moses + BPE
        import tempfile

        from ..eval.common import bpe_lines

        with tempfile.TemporaryDirectory() as tmp:
            sentence = bpe_lines([sentence], codes, tmp)[0]
    rows, words = {}, None
    for name, path in spec["models"].items():
        full = os.path.join(root, path)
        if not os.path.exists(full):
            continue
        model, task, _ = load_model(full, data)
        tokens = task.source_dictionary.encode_line(sentence, add_if_not_exist=False, append_eos=True).long()
        tokens = tokens[:model.max_positions()]  # the sentence's first positions on a model of short blocks
        words = [task.source_dictionary[t] for t in tokens]
        rows[name] = attention_maps(model, tokens)
    if not rows:
        return None
    path = os.path.join(out_dir, f"attention_{group.get('family', 'model')}.png")
    plot_attention_grid(rows, words, path)
    return path


def report_experiment(root: str, out_dir: str, plots: bool = True) -> dict:
    with open(os.path.join(root, "experiment.json")) as f:
        manifest = json.load(f)
    results, loaded = {}, []
    for group in manifest["groups"]:
        key = group.get("family", "model")
        if group.get("name", "main") != "main":
            key = f"{key}_{group['name'].replace(':', '_')}"
        try:
            result, curves = _load_group(root, group)
        except ValueError as e:  # e.g. an experiment still running: report the groups that can be
            late, late_scratch = _unfinished(root, group)
            results[key] = {"title": group.get("title", key), "error": str(e), "partial": bool(late),
                            "unfinished": late, "unfinished_scratch": late_scratch}
            loaded.append((key, group, None))
            continue
        results[key] = result
        loaded.append((key, group, curves))
    late = sorted({r for res in results.values() for r in res["unfinished"]})
    late_scratch = sorted({r for res in results.values() for r in res["unfinished_scratch"]})
    if late:
        print(rep.partial_line(late, late_scratch))
    for key, group, curves in loaded:
        result = results[key]
        if curves is None:
            print(f"\n## {result['title']}\n\nnot reported yet: {result['error']}")
            continue
        print(f"\n## {result['title']}\n")
        if result["partial"]:
            print(rep.partial_line(result["unfinished"], result["unfinished_scratch"]) + "\n")
        print(rep.markdown_table(result))
        if result.get("note"):
            print(f"\n{result['note']}")
        if "table1" in result:
            print("\nLoss right after growth (Table 1), valid split, bits:\n")
            print(_table1_md(result["table1"]))
        if "ablation_eb" in result:
            print("\nTwo-stage ablation (Table 4):\n")
            print(_ablation_md(result["ablation_eb"]))
        from ..experiment.downstream import group_scores, markdown as downstream_markdown

        downstream = group_scores(root, group)
        if downstream:  # b2b-experiment's downstream step (presets with a downstream recipe)
            result["downstream"] = downstream
            print("\nDownstream (Table 2 in miniature):\n")
            print(downstream_markdown(result, downstream))
        if plots:
            png = os.path.join(out_dir, f"loss_vs_flops_{key}.png")
            rep.plot_curves(curves, png, result["target_loss"], result["title"])
            result["plot"] = png
            att = _attention(root, group, out_dir) if group.get("name", "main") == "main" else None
            if att:
                result["attention_plot"] = att
    return {**results, "partial": bool(late), "unfinished": late, "unfinished_scratch": late_scratch}


def report_logs(paths: list, scratch: str, source_flops: float, out_dir: str, plots: bool = True,
                source_valid_loss: float | None = None) -> dict:
    curves = {}
    for path in paths:
        curve = rep.read_curve(path)
        if not curve.valid and not curve.loss:
            raise ValueError(f"log file '{path}' has no fairseq json records: train with --log-format json "
                             "(and --validate-interval-updates N for the validation curve)")
        curves[curve.name] = curve
    charged = {name: source_flops for name in curves if name != scratch}
    result = rep.savings(curves, scratch, charged, source_valid_loss=source_valid_loss)
    if result["partial"]:
        print(rep.partial_line(result["unfinished"], result["unfinished_scratch"]))
    print(rep.markdown_table(result))
    if plots:
        os.makedirs(out_dir, exist_ok=True)
        result["plot"] = os.path.join(out_dir, "loss_vs_flops.png")
        rep.plot_curves(curves, result["plot"], result["target_loss"])
    return {"runs": result, "partial": result["partial"], "unfinished": result["unfinished"],
            "unfinished_scratch": result["unfinished_scratch"]}


def _own_results(path: str) -> bool:
    """Whether ``path`` is a results.json an earlier b2b-report wrote (regenerated without --force)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "partial" in data and "unfinished" in data


def check_outputs(args) -> None:
    """The output folder and its results.json, before any log is read: one line for a folder
    that cannot be written, a file where the folder goes, a results.json b2b-report did not
    write (without --force), or one that is an input."""
    from ..outputs import check_output

    experiment = len(args.paths) == 1 and os.path.isdir(args.paths[0])
    out_dir = args.output or (args.paths[0] if experiment else ".")
    check_output(out_dir, "dir", what="--output" if args.output else "the output folder", replaceable=lambda p: True)
    check_output(os.path.join(out_dir, "results.json"), "file", args.force, "results.json",
                 inputs={f"log {p}": p for p in args.paths if os.path.isfile(p)}, replaceable=_own_results)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", force=True)
    from ..outputs import OutputError, atomic_output

    try:
        check_outputs(args)
    except OutputError as e:
        sys.exit(f"b2b-report: error: {e}")
    out_dir = args.output
    created = out_dir is not None and not os.path.exists(out_dir)
    try:
        if len(args.paths) == 1 and os.path.isdir(args.paths[0]):
            root = args.paths[0]
            if not os.path.exists(os.path.join(root, "experiment.json")):
                raise ValueError(f"{root} has no experiment.json: pass an experiment directory or fairseq json log files")
            out_dir = out_dir or root
            os.makedirs(out_dir, exist_ok=True)
            results = report_experiment(root, out_dir, not args.no_plots)
        else:
            missing = [p for p in args.paths if not os.path.isfile(p)]
            if missing:
                raise ValueError(f"log file '{missing[0]}' does not exist")
            out_dir = out_dir or "."
            results = report_logs(args.paths, args.scratch, args.source_flops, out_dir, not args.no_plots,
                                  args.source_valid_loss)
    except ValueError as e:
        if created and out_dir and os.path.isdir(out_dir) and not os.listdir(out_dir):
            os.rmdir(out_dir)  # nothing written: leave no empty folder behind
        sys.exit(f"b2b-report: error: {e}")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with atomic_output(path, "b2b-report", suffix=".json") as tmp:
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
