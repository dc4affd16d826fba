"""``b2b-grow``: grow a trained small fairseq checkpoint into a larger ``b2b_`` architecture.

The target shape is ``--arch`` plus the architecture options fairseq-train accepts
(``--encoder-layers``, ``--decoder-embed-dim``, ...).  The output is an ordinary fairseq
checkpoint.  With ``--data`` the source and the grown model are evaluated on the valid split
(the paper's Table 1); ``--report-json`` ends stdout with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..checkpoints import LEGACY_TEMP
from ..errors import B2BError
from ..grow_checkpoint import grow_checkpoint, parse_arch_options
from ..growth import METHODS, GrowthError
from ..growth_eval import evaluate_fpi_variants, evaluate_growth


class _OneLineParser(argparse.ArgumentParser):
    """argparse's errors as the one line every b2b-grow error is (no usage dump)."""

    def error(self, message):
        if message.startswith("argument --method: invalid choice: "):
            message = "unknown growth method " + message.split("invalid choice: ", 1)[1]
        raise SystemExit(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="b2b-grow", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="trained small fairseq checkpoint (required)")
    p.add_argument("--arch", required=True, help="target architecture, e.g. b2b_bert_base (required); any of its "
                                                 "architecture options (--encoder-layers N, ...) may follow")
    p.add_argument("--method", default="aki", choices=METHODS,
                   help="width expansion: fpi, aki (the paper's) or direct_copy (default: %(default)s)")
    p.add_argument("--exact", action="store_true", help="fpi only: function-preserving at any width ratio (default: off)")
    p.add_argument("--seed", type=int, default=1, help="seed of the mapping functions (default: %(default)s)")
    p.add_argument("--output", required=True, help="the grown checkpoint file to write (required; not a folder, never "
                                                  "the --source; an existing file is refused unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file (default: off; never the "
                                                       "--source, never a folder)")
    p.add_argument("--data", default=None, help="data-bin with the source's dict.txt; with it the source and the grown "
                                                "model are evaluated on --valid-subset (default: the data directory "
                                                "recorded in the source checkpoint, no evaluation)")
    p.add_argument("--valid-subset", default="valid",
                   help="split of --data to evaluate the growth on (default: %(default)s)")
    p.add_argument("--report-json", action="store_true",
                   help="print one JSON object as the last stdout line (default: off)")
    p.add_argument("--verbose", action="store_true", help="show fairseq's own INFO logging (default: off)")
    return p


def check_arguments(args, overrides: list) -> None:
    """Every argument error b2b-grow can see without reading a checkpoint, as one line."""
    if args.exact and args.method != "fpi":
        raise B2BError(f"--exact is a mode of fpi, not of {args.method}: pass --method fpi --exact, or drop --exact")
    from ..outputs import check_output

    check_output(args.output, "file", args.force, "--output", inputs={"--source": args.source})
    parse_arch_options(args.arch, overrides)
    if args.data:
        first = args.data.split(os.pathsep)[0]
        if not os.path.isfile(os.path.join(first, "dict.txt")):
            raise B2BError(f"--data '{args.data}' has no dict.txt: pass the data-bin the source was trained with")
        if not os.path.isfile(os.path.join(first, f"{args.valid_subset}.idx")):
            splits = sorted(f[:-4] for f in os.listdir(first) if f.endswith(".idx"))
            raise B2BError(f"--valid-subset '{args.valid_subset}' is not a split of '{first}' (it has "
                           f"{', '.join(splits) or 'none'}): pass one of those")


def main(argv=None) -> None:
    args, overrides = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s",
                        force=True)
    import fairseq_b2b  # noqa: F401

    from ..outputs import atomic_output, exit_on_signals

    exit_on_signals("b2b-grow")
    try:
        check_arguments(args, overrides)
        # grown and evaluated under a temporary name beside --output, renamed at the end: a failed
        # or interrupted run leaves no checkpoint (and an existing one replaced by --force stays
        # until the new one is complete); a SIGKILLed run's temporary goes with the next run
        with atomic_output(args.output, "b2b-grow", suffix=".pt", legacy=LEGACY_TEMP) as tmp:
            report = grow_checkpoint(args.source, args.arch, args.method, args.exact, args.seed, tmp,
                                     args.data, overrides)
            report["output"] = args.output
            if args.data:
                report.update(evaluate_growth(args.source, tmp, args.data, args.valid_subset))
                report.update(evaluate_fpi_variants(report, args.source, args.arch, args.seed, args.data, overrides,
                                                    args.valid_subset))
    except GrowthError as e:
        sys.exit(f"b2b-grow: error: {e}")
    except OSError as e:
        sys.exit(f"b2b-grow: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "))
    print(f"grew {report['source_shape']} -> {report['target_shape']} with {report['method']}"
          f"{' (exact)' if report['exact'] else ''} in {report['seconds']:.2f}s -> {args.output}")
    if args.data:
        print(f"{args.valid_subset} loss (bits): source {report['source_loss']:.4f}  grown {report['grown_loss']:.4f}  "
              f"max |logit diff| {report['max_abs_logit_diff']:.3g}")
        if "exact_fpi" in report:
            src_dim, tgt_dim = report["embed_dims"]
            paper, exact = report["paper_fpi"], report["exact_fpi"]
            print(f"FPI at the width ratio {tgt_dim}/{src_dim}: paper {paper['grown_loss']:.4f} (max |logit diff| "
                  f"{paper['max_abs_logit_diff']:.3g})  exact {exact['grown_loss']:.4f} (max |logit diff| "
                  f"{exact['max_abs_logit_diff']:.3g})")
    if args.report_json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
