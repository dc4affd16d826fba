"""``b2b-experiment --preset cpu|cpu-full|gpu|gpu-long|paper --output DIR [-- FAIRSEQ_OPTIONS]``:
source, growth and every method's training run through fairseq-train, then ``b2b-report``.

Options after ``--`` are passed to every fairseq-train run (e.g. ``-- --distributed-world-size 4``);
the presets keep their effective batch at any world size by adjusting ``--update-freq``."""
from __future__ import annotations

import argparse
import os

from ..experiment import PRESETS, ExperimentError, dry_run_commands, plan, run_experiment, select


def build_parser():
    p = argparse.ArgumentParser(prog="b2b-experiment", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                   help="experiment size (default cpu): " + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--output", required=True, help="experiment directory (finished runs in it are reused)")
    p.add_argument("--data", default=None, help="a data-bin to use instead of the built-in corpus (default: the "
                                                "built-in corpus, prepared under DIR/data)")
    p.add_argument("--families", default="bert,gpt", help="comma-separated: bert, gpt, llama (the LLaMA family: the cpu "
                                                          "and cpu-full presets; default bert,gpt)")
    p.add_argument("--only", default=None, help="comma-separated run names or method labels to run; the sources they "
                                                "grow from run too; experiment.json keeps the whole plan (default: all)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default: the preset's; cpu presets: one per CPU core, one thread each)")
    p.add_argument("--dry-run", action="store_true", help="print the exact shell commands and stop (default: off; prepares the "
                                                          "built-in data first when no --data is given)")
    return p


def main(argv=None) -> None:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in families if f not in ("bert", "gpt", "llama")]
    if bad or not families:
        raise SystemExit(f"b2b-experiment: error: unknown family '{bad[0] if bad else args.families}': "
                         "use --families bert,gpt,llama")
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"b2b-experiment: error: --jobs {args.jobs} must be >= 1")
    preset = PRESETS[args.preset]
    if "llama" in families and not preset.llama_source:
        raise SystemExit(f"b2b-experiment: error: the {preset.name} preset has no LLaMA shapes: --families llama runs "
                         "with --preset cpu or cpu-full")
    if preset.name == "paper" and not args.data:
        raise SystemExit("b2b-experiment: error: the paper preset needs --data DATA_BIN (Wikipedia + BookCorpus, "
                         "see preprocess/prepare_wikibooks.sh)")
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None
    from ..outputs import OutputError, check_output, missing_parents, remove_created

    try:  # before any data is prepared: the output folder (reused when it exists) and the arguments
        root = check_output(args.output, "dir", what="--output", replaceable=lambda path: True)
        if args.data and not os.path.isfile(os.path.join(args.data, "dict.txt")):
            raise ExperimentError(f"--data {args.data} has no dict.txt: pass a fairseq data-bin (b2b-preprocess corpus "
                                  "... makes one)")
        if only:
            select(plan(preset, families, None, 1, passthrough), only)
    except (OutputError, ExperimentError) as e:
        raise SystemExit(f"b2b-experiment: error: {e}") from None
    created = missing_parents(root)  # removed again (when empty) if the run is refused
    ok = False
    try:
        if args.dry_run:
            os.makedirs(root, exist_ok=True)
            for line in dry_run_commands(preset, root, families, args.data, only, passthrough):
                print(line)
            ok = True
            return
        if preset.cpu:
            os.environ["OMP_NUM_THREADS"] = "1"
        run_experiment(preset, root, args.data, families, only, args.jobs, passthrough)
        ok = True
    except ExperimentError as e:
        raise SystemExit(f"b2b-experiment: error: {e}") from None
    finally:
        if not ok:
            remove_created(created)
    from .report import main as report_main

    report_main([root])


if __name__ == "__main__":
    main()
