"""``b2b-experiment --preset cpu|gpu|paper --output DIR``: source, growth and every method's
training run through fairseq-train, then ``b2b-report`` on the logs."""
from __future__ import annotations

import argparse
import os

from ..experiment import PRESETS, plan, run_experiment


def build_parser():
    p = argparse.ArgumentParser(prog="b2b-experiment", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="experiment size (default cpu)")
    p.add_argument("--output", required=True, help="experiment directory (finished runs in it are reused)")
    p.add_argument("--data", default=None, help="a data-bin to use instead of the built-in corpus")
    p.add_argument("--families", default="bert,gpt", help="bert, gpt or both (default)")
    p.add_argument("--only", default=None, help="comma-separated run names or method labels to run (sources always run)")
    p.add_argument("--dry-run", action="store_true", help="print the fairseq-train commands and stop")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in families if f not in ("bert", "gpt")]
    if bad:
        raise SystemExit(f"b2b-experiment: error: unknown family '{bad[0]}': use --families bert,gpt")
    preset = PRESETS[args.preset]
    if preset.name == "paper" and not args.data:
        raise SystemExit("b2b-experiment: error: the paper preset needs --data DATA_BIN (Wikipedia + BookCorpus, "
                         "see preprocess/prepare_wikibooks.sh)")
    if args.dry_run:
        for run in plan(preset, families):
            print(f"[{run.family}/{run.label}] b2b-train DATA {' '.join(run.argv)} --save-dir runs/{run.name}")
        return
    only = [o.strip() for o in args.only.split(",")] if args.only else None
    os.environ.setdefault("OMP_NUM_THREADS", "1" if preset.name == "cpu" else os.environ.get("OMP_NUM_THREADS", "4"))
    run_experiment(preset, os.path.abspath(args.output), args.data, families, only)


if __name__ == "__main__":
    main()
