"""The documented commands run as written.

Every fenced ``bash`` block of README.md, docs/*.md, examples/**/*.md and fairseq_b2b/eval/squad.md is
executed by bash (``set -euo pipefail``, variables must be set) in an empty folder, with every
command replaced by a recorder: bash itself expands the variables, loops, functions, quoting
and redirections exactly as for a user.  Each recorded ``b2b-*`` / ``fairseq-*`` command is
then pushed through its real argument parser (fairseq's own training / preprocessing / eval-lm
parser with the plugin loaded, our CLIs' ``build_parser``), so an unknown option, a bad value
(``--total-num-update TOTAL``), an unset variable or a redirect into a missing folder fails
here.  Usage synopses with ``[optional]`` syntax and example output are fenced as ``text``.
A few cheap commands are then run for real with tiny shapes (``TINY`` below).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import b2b_train_main, run_cli, subset_bin

ROOT = Path(__file__).resolve().parents[1]
PAPER_COMMON = ROOT / "examples" / "paper" / "README.md"
# docs/distributed.md launches the training commands with DATA/COMMON of docs/training.md
# (its "Baselines in the same harness"), as the paper pages use examples/paper/README.md.
TRAINING = ROOT / "docs" / "training.md"
CONTEXT = {ROOT / "docs" / "distributed.md": TRAINING}


def doc_files() -> list:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md")),
            ROOT / "fairseq_b2b" / "eval" / "squad.md"]


# ---------------------------------------------------------------------------- the one substitution table
# What the recorders print where the docs use a command's output ($(...)); nothing else is
# substituted: a variable the docs use must be set by the docs (bash runs with set -u).
STUB_OUTPUT = {
    "b2b-train --updates-per-epoch": "1000",   # UPE=$(b2b-train ... --updates-per-epoch)
    "b2b-user-dir": None,                      # the real plugin folder (fairseq imports it while parsing)
    "python": "0",                             # $(python -c "...read_curve(...).total_flops") -> --source-flops 0
    "wc": "0",                                 # T=$(( $(wc -w < f) + ... ))
    "grep": "0",
}
# torchrun: its `--no-python bash -c SCRIPT NAME ARGS` runs here as rank 0 of WORLD_SIZE=2 (LOCAL_RANK=0),
# so the b2b-train command the launch script builds is recorded and parsed like any other.
LAUNCH_ENV = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
# srun: runs the first of our commands among its arguments, with what follows it.
# Plain tools the docs may call: recorded and otherwise ignored (the shell's own behaviour,
# redirections included, is real).  mkdir is real: a missing `mkdir -p` must fail the test.
PLAIN_TOOLS = ("pip", "bash", "python", "git", "unzip", "cp", "tail", "head", "cat", "wc", "grep", "ls", "sed", "torchrun", "srun")
REAL_TOOLS = ("mkdir",)
OUR_COMMANDS = ("b2b-train", "b2b-grow", "b2b-preprocess", "b2b-glue", "b2b-squad", "b2b-eval-lm", "b2b-import-hf", "b2b-export-hf",
                "b2b-report", "b2b-experiment", "b2b-user-dir", "fairseq-train", "fairseq-preprocess",
                "fairseq-eval-lm")
ELLIPSIS = "..."  # "and your other options": dropped before parsing

# Real runs: the documented argv with these values swapped in (tiny shapes, one short epoch, CPU).
TINY = {
    "--arch": {"b2b_bert_base": "b2b_bert_tiny"},
    "--tokens-per-sample": "64", "--batch-size": "32", "--update-freq": "1", "--max-epoch": "1",
    "--warmup-updates": "2", "--total-num-update": "100", "--log-interval": "1",
    "drop": ("--fp16",), "add": ("--cpu", "--num-workers", "0"),
}


def tiny_argv(argv: list, data: str) -> list:
    out, k = [], 0
    while k < len(argv):
        a = argv[k]
        if a in TINY["drop"]:
            k += 1
            continue
        if a in TINY and k + 1 < len(argv):
            value = TINY[a].get(argv[k + 1], argv[k + 1]) if isinstance(TINY[a], dict) else TINY[a]
            out += [a, value]
            k += 2
            continue
        out.append(a)
        k += 1
    return [data] + out[1:] + list(TINY["add"])


# ---------------------------------------------------------------------------- extracting and recording

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)


def blocks(path: Path, lang: str = "bash") -> list:
    """(first line number, code) of every fenced block of ``lang``."""
    text = path.read_text(encoding="utf-8")
    return [(text[:m.start()].count("\n") + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == lang]


def unlabelled_commands(path: Path) -> list:
    """Unlabelled fenced blocks that hold commands (they must say bash, or text for a synopsis)."""
    text = path.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if not m.group(1) and re.search(r"^\s*(b2b-|fairseq-)", m.group(2), re.M):
            found.append(text[:m.start()].count("\n") + 1)
    return found


def _prelude(record: Path, user_dir: str) -> str:
    lines = ["set -euo pipefail", "export PATH=/nonexistent",
             # one printf, so one append: the stages of a pipeline run at once and must not interleave
             f"_rec() {{ printf '%s\\0' \"$@\" $'\\036' >> '{record}'; }}",
             f"command_not_found_handle() {{ _rec '#unknown' \"$1\"; echo \"not a known command: $1\" >&2; return 127; }}"]
    for name in OUR_COMMANDS + PLAIN_TOOLS:
        body = "_rec " + name + ' "$@"'
        if name == "b2b-train":
            body += f'; case " $* " in *" --updates-per-epoch "*) echo {STUB_OUTPUT["b2b-train --updates-per-epoch"]};; esac'
        elif name == "b2b-user-dir":
            body += f"; echo '{user_dir}'"
        elif name == "torchrun":
            env = " ".join(f"{k}={v}" for k, v in LAUNCH_ENV.items())
            body += ('; while [ $# -gt 0 ] && [ "$1" != --no-python ]; do shift; done; shift'
                     '; [ "${1:-}" = bash ] && [ "${2:-}" = -c ] || { echo "torchrun: expected --no-python bash -c" >&2; return 2; }'
                     f'; local script="${{3//exec /}}"; shift 4; ( {env}; eval "$script" )')
        elif name == "srun":
            ours = "|".join(OUR_COMMANDS)
            body += f'; while [ $# -gt 0 ]; do case "$1" in {ours}) break;; esac; shift; done; [ $# -gt 0 ] && "$@"'
        elif name in STUB_OUTPUT:
            body += f"; echo {STUB_OUTPUT[name]}"
        lines.append(f"{name}() {{ {body}; }}")
    for name in REAL_TOOLS:
        lines.append(f"{name}() {{ /bin/{name} \"$@\"; }}")
    return "\n".join(lines) + "\n"


def record_commands(files: list, workdir: Path) -> list:
    """Run the bash blocks of ``files`` (in order, one shell) with recorders; returns
    [(where, argv)] for every command run."""
    from fairseq_b2b.cli.train import user_dir

    record = workdir / ".record"
    record.write_bytes(b"")
    script = [_prelude(record, user_dir())]
    for path in files:
        for line, code in blocks(path):
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            script.append(f"_rec '#block' '{name}:{line}'\n{code}\n")
    proc = subprocess.run(["/bin/bash", "-c", "".join(script)], cwd=workdir, capture_output=True, text=True,
                          timeout=120, env={"HOME": str(workdir), "LANG": "C.UTF-8"})
    where, calls = "?", []
    for rec in record.read_bytes().split(b"\x1e\0"):
        if not rec:
            continue
        argv = [a.decode("utf-8") for a in rec.split(b"\0")[:-1]]
        if argv[0] == "#block":
            where = argv[1]
        else:
            calls.append((where, argv))
    assert proc.returncode == 0, (f"the documented commands fail in bash (after {where}): "
                                  f"{proc.stderr.strip().splitlines()[-3:]}")
    return calls


# ---------------------------------------------------------------------------- the real parsers

def _parse_error(fn, *a) -> str | None:
    """None if ``fn(*a)`` parses, else argparse's (or our) one-line complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            fn(*a)
    except SystemExit as e:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        return (lines[-1] if lines else str(e)) if e.code not in (0, None) else None
    except Exception as e:  # noqa: BLE001 - a documented command must not crash the parser
        return f"{type(e).__name__}: {e}"
    return None


def _fairseq_train(argv: list, ours: bool, counting: bool):
    from fairseq_b2b.cli.train import check_args, parse

    if not ours and any(a.startswith("b2b_") for a in argv) and "--user-dir" not in argv:
        raise SystemExit("stock fairseq-train needs --user-dir $(b2b-user-dir) for b2b_ tasks/archs")
    args, _ = parse(argv)
    if ours and not _has_ellipsis[0]:
        from fairseq_b2b.errors import B2BError

        try:
            check_args(args, need_optimizer=not counting)
        except B2BError as e:
            raise SystemExit(str(e)) from None


_has_ellipsis = [False]


def check_command(argv: list) -> str | None:
    name, args = argv[0], argv[1:]
    _has_ellipsis[0] = ELLIPSIS in args
    args = [a for a in args if a != ELLIPSIS]
    if name in ("b2b-train", "fairseq-train"):
        return _parse_error(_fairseq_train, [a for a in args if a != "--updates-per-epoch"], name == "b2b-train",
                            "--updates-per-epoch" in args)
    if name == "fairseq-preprocess":
        from fairseq import options

        return _parse_error(lambda: options.get_preprocessing_parser().parse_args(args))
    if name == "fairseq-eval-lm":
        from fairseq import options

        return _parse_error(lambda: options.parse_args_and_arch(options.get_eval_lm_parser(), input_args=args))
    if name == "b2b-grow":
        from fairseq_b2b.cli.grow import build_parser, parse_arch_options

        def grow():
            known, overrides = build_parser().parse_known_args(args)
            try:
                parse_arch_options(known.arch, overrides)
            except Exception as e:  # B2BError
                raise SystemExit(str(e)) from None
        return _parse_error(grow)
    if name == "b2b-user-dir":
        return None if not args else f"b2b-user-dir takes no arguments, got {args}"
    module = {"b2b-preprocess": "fairseq_b2b.cli.preprocess", "b2b-glue": "fairseq_b2b.eval.glue",
              "b2b-squad": "fairseq_b2b.cli.squad",
              "b2b-eval-lm": "fairseq_b2b.eval.lm", "b2b-import-hf": "fairseq_b2b.hf.import_hf",
              "b2b-export-hf": "fairseq_b2b.hf.export_hf", "b2b-report": "fairseq_b2b.cli.report",
              "b2b-experiment": "fairseq_b2b.cli.experiment"}.get(name)
    if name == "b2b-experiment" and "--" in args:  # what follows "--" goes to every fairseq-train run
        rest = args[args.index("--") + 1:]
        args = args[:args.index("--")]
        from fairseq_b2b.cli.train import parse

        why = _parse_error(parse, ["DATA", "--task", "b2b_masked_lm", "--arch", "b2b_bert_base", *rest])
        if why:
            return f"after --: {why}"
    if module:
        import importlib

        return _parse_error(lambda: importlib.import_module(module).build_parser().parse_args(args))
    if name == "python" and args[:1] == ["-c"]:
        return _parse_error(lambda: compile(args[1], "<doc>", "exec"))
    if name in PLAIN_TOOLS:
        return None
    return f"no parser known for '{name}'"


def _files_with_context(path: Path) -> list:
    """The paper pages use DATA/COMMON of examples/paper/README.md ("Common to every page");
    docs/distributed.md those of docs/training.md."""
    if path.parent == PAPER_COMMON.parent and path != PAPER_COMMON:
        return [PAPER_COMMON, path]
    if path in CONTEXT:
        return [CONTEXT[path], path]
    return [path]


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_commands_parse(doc, tmp_path):
    assert not unlabelled_commands(doc), (f"{doc.name}: fenced blocks at lines {unlabelled_commands(doc)} hold commands "
                                          "but are not labelled bash (or text, for a synopsis)")
    calls = record_commands(_files_with_context(doc), tmp_path)
    assert not [a for _, a in calls if a[0] == "#unknown"], [a for _, a in calls if a[0] == "#unknown"]
    problems = []
    for where, argv in calls:
        if not where.startswith(str(doc.relative_to(ROOT))):
            continue  # the shared page's own commands are checked with that page
        why = check_command(argv)
        if why:
            problems.append(f"{where}: {' '.join(argv)[:160]} ...: {why}")
    assert not problems, "\n".join(problems)
    for _, code in blocks(doc, "python"):
        compile(code, str(doc), "exec")


def test_every_doc_has_its_commands_checked(tmp_path):
    """The docs hold real commands (the checker is not vacuous), one per documented CLI."""
    seen = set()
    for k, doc in enumerate(doc_files()):
        (tmp_path / str(k)).mkdir()
        seen |= {argv[0] for _, argv in record_commands(_files_with_context(doc), tmp_path / str(k))}
    for name in ("b2b-train", "b2b-grow", "b2b-preprocess", "b2b-glue", "b2b-eval-lm", "b2b-export-hf",
                 "b2b-import-hf", "b2b-report", "fairseq-train", "fairseq-preprocess", "fairseq-eval-lm"):
        assert name in seen, f"no documented {name} command was found"


def test_checker_refuses_what_fairseq_refuses():
    assert check_command(["b2b-train", "DATA", "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny",
                          "--total-num-update", "TOTAL"])
    assert check_command(["b2b-train", "DATA", "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny", "--no-such"])
    assert check_command(["b2b-grow", "--source", "s.pt", "--arch", "b2b_bert_base", "--output", "o.pt",
                          "--encoder-layerz", "3"])
    assert check_command(["fairseq-train", "DATA", "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny"])
    assert check_command(["b2b-glue", "sweep", "--checkpoint", "c", "--glue-dir", "g", "--tasks", "RTE",
                          "--output", "o", "[--grid", "small]"])
    assert check_command(["b2b-train", "DATA", "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny",
                          "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3"]) is None


def test_missing_mkdir_fails(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\nb2b-grow --source s.pt --arch b2b_bert_base --output g/x.pt | tail -1 > g/x.json\n```\n")
    with pytest.raises(AssertionError, match="fail in bash"):
        record_commands([doc], tmp_path)
    doc.write_text("```bash\nmkdir -p g\nb2b-grow --source s.pt --arch b2b_bert_base --output g/x.pt | tail -1 > g/x.json\n```\n")
    # both stages of the pipeline ran (bash starts them at once: their order is not defined)
    assert sorted(a[0] for _, a in record_commands([doc], tmp_path)) == ["b2b-grow", "tail"]
    assert (tmp_path / "g" / "x.json").is_file()


def test_readme_is_a_front_page_linking_every_docs_page():
    """The README stays a few screens and links every docs/ page; every relative link of the
    README and of docs/ names a file that exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme) < 12_000, f"README.md has {len(readme)} characters: move detail into docs/"
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert pages and not [p.name for p in pages if f"(docs/{p.name})" not in readme]
    broken = []
    for doc in [ROOT / "README.md", *pages]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


# ---------------------------------------------------------------------------- a few, for real

def _documented(doc: Path, workdir: Path, name: str, *contains: str) -> list:
    for _, argv in record_commands(_files_with_context(doc), workdir):
        if argv[0] == name and all(c in argv for c in contains):
            return argv
    raise AssertionError(f"{doc.name} documents no {name} command with {contains}")


def test_training_scratch_run_for_real(data_bin, tmp_path, monkeypatch, capsys):
    """docs/training.md's scratch command with TINY shapes, from a fresh folder: --log-file into a
    save-dir that does not exist yet works, and --updates-per-epoch is the epoch's real length.
    b2b-train runs in this process, on the first ~12,000 tokens of the test data-bin (a few updates)."""
    (tmp_path / "rec").mkdir()
    argv = _documented(TRAINING, tmp_path / "rec", "b2b-train", "runs/scratch/train.log")
    (tmp_path / "bin").mkdir()
    tiny = tiny_argv(argv[1:], subset_bin(data_bin, tmp_path / "bin", 12000, 400))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    b2b_train_main([*tiny, "--updates-per-epoch"], monkeypatch)
    upe = int(capsys.readouterr().out.strip().splitlines()[-1])
    b2b_train_main(tiny, monkeypatch)
    log = tmp_path / "runs" / "scratch" / "train.log"
    records = [json.loads(line[line.index("{"):]) for line in log.read_text().splitlines()
               if '"train_num_updates"' in line and '"epoch"' in line]
    assert records and int(records[-1]["train_num_updates"]) == upe
    assert upe >= 3  # an epoch of several updates
    state = __import__("torch").load(tmp_path / "runs" / "scratch" / "checkpoint_last.pt", weights_only=False)
    assert os.path.isabs(state["cfg"]["task"]["data"])  # found again from any folder


def test_zero_shot_apply_for_real(bpe_corpus, tmp_path):
    (tmp_path / "rec").mkdir()
    argv = _documented(ROOT / "examples" / "zero_shot_ppl.md", tmp_path / "rec", "b2b-preprocess", "apply")
    swap = {"OUT/bpe.codes": str(bpe_corpus["codes"])}
    (tmp_path / "ptb.valid.txt").write_text("the quick brown fox .\n\nshall I compare thee to a summer's day ?\n")
    run_cli(*[swap.get(a, a) for a in argv], cwd=tmp_path)
    out = (tmp_path / "ptb.valid.bpe").read_text().split("\n")
    assert len(out) == 4 and out[1] == "" and "summer" in out[2].replace("@@ ", "")
