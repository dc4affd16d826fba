"""The main job: the paper's comparison in miniature (``b2b-experiment``).

A thin orchestrator: every run is a real ``fairseq-train`` invocation (``b2b-train``) whose
json log stays in ``DIR/runs/<name>/train.log``; growth reports for Table 1 come from
``b2b-grow``; ``b2b-report`` turns the logs into the tables and plots.  A run that finished
(``DONE`` beside its log, same command) is reused on a rerun; an interrupted one resumes from its
``checkpoint_last.pt``.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field

FAMILY_TASK = {"bert": "b2b_masked_lm", "gpt": "b2b_language_modeling"}


@dataclass
class Preset:
    """Shapes, data and schedule of one experiment size."""

    name: str
    description: str
    bert_source: list  # arch and overrides of the small model S
    bert_target: list  # arch and overrides of the target T
    gpt_source: list
    gpt_target: list
    train: list  # fairseq-train options shared by every run (optimizer, batch, ...)
    source_epochs: int
    target_epochs: int
    submodel_epochs: int  # Eb
    submodel_layers: int  # lb
    stacking_schedule: str  # StackBERT: depth:epochs,...
    mslt_layers: int
    mslt_stage_epochs: int
    share_until_epoch: int
    ablation_eb: list = field(default_factory=list)
    data_lines: int | None = None  # built-in corpus: first N training lines (None = all)
    valid_lines: int | None = None  # ... and first N valid/test lines
    num_merges: int = 8000
    log_interval: int = 10
    sentence: str = "shall i compare thee to a summer 's day ? thou art more lovely and more temperate"


def _common(tokens, batch, lr, warmup, extra=()):
    return ["--tokens-per-sample", str(tokens), "--batch-size", str(batch), "--optimizer", "adam",
            "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01", "--clip-norm", "1.0",
            "--lr-scheduler", "polynomial_decay", "--lr", str(lr), "--warmup-updates", str(warmup),
            "--dropout", "0.1", "--attention-dropout", "0.1", *extra]


PRESETS = {
    "cpu": Preset(
        name="cpu",
        description="tiny shapes on the built-in corpus, ~15 minutes on a 2-core CPU",
        bert_source=["b2b_bert_mini", "--encoder-embed-dim", "64", "--encoder-attention-heads", "2",
                     "--encoder-ffn-embed-dim", "256"],
        bert_target=["b2b_bert_mini"],
        gpt_source=["b2b_gpt_mini", "--decoder-embed-dim", "64", "--decoder-attention-heads", "2",
                    "--decoder-ffn-embed-dim", "256"],
        gpt_target=["b2b_gpt_mini"],
        train=_common(64, 16, 1e-3, 40, ["--cpu", "--num-workers", "0"]),
        source_epochs=6, target_epochs=4, submodel_epochs=1, submodel_layers=2,
        stacking_schedule="2:1,4:3", mslt_layers=2, mslt_stage_epochs=1, share_until_epoch=2,
        ablation_eb=[], data_lines=10000, valid_lines=1000, num_merges=2000, log_interval=10,
    ),
    "gpu": Preset(
        name="gpu",
        description="about an hour on one H100: S(12,256) -> T(12,512) on the built-in corpus, fp16",
        bert_source=["b2b_bert_12_512", "--encoder-embed-dim", "256", "--encoder-attention-heads", "4",
                     "--encoder-ffn-embed-dim", "1024"],
        bert_target=["b2b_bert_12_512"],
        gpt_source=["b2b_gpt_12_512", "--decoder-embed-dim", "256", "--decoder-attention-heads", "4",
                    "--decoder-ffn-embed-dim", "1024"],
        gpt_target=["b2b_gpt_12_512"],
        train=_common(128, 64, 5e-4, 500, ["--fp16", "--num-workers", "2"]),
        source_epochs=40, target_epochs=40, submodel_epochs=5, submodel_layers=3,
        stacking_schedule="3:5,6:7,12:28", mslt_layers=3, mslt_stage_epochs=8, share_until_epoch=10,
        ablation_eb=[0, 10, 20], data_lines=None, num_merges=8000, log_interval=20,
    ),
    "paper": Preset(
        name="paper",
        description="the paper's setting: S(12,512) -> T(12,768), 40 epochs, Eb=5, lb=3 (needs --data)",
        bert_source=["b2b_bert_12_512"], bert_target=["b2b_bert_base"],
        gpt_source=["b2b_gpt_12_512"], gpt_target=["b2b_gpt_base"],
        train=_common(512, 64, 1e-4, 10000, ["--fp16", "--update-freq", "8", "--num-workers", "4"]),
        source_epochs=40, target_epochs=40, submodel_epochs=5, submodel_layers=3,
        stacking_schedule="3:5,6:7,12:28", mslt_layers=3, mslt_stage_epochs=8, share_until_epoch=10,
        ablation_eb=[0, 10, 20], data_lines=None, num_merges=30000, log_interval=100,
    ),
}


@dataclass
class Run:
    name: str  # folder under DIR/runs
    family: str
    label: str  # method name in the report
    argv: list  # b2b-train arguments after the data dir


def plan(preset: Preset, families=("bert", "gpt"), updates_per_epoch: int | None = None) -> list:
    """Every fairseq-train run of the experiment, sources first.  With ``updates_per_epoch``
    the learning rate decays linearly to 0 at each run's last update (BERT's schedule)."""

    def decay(epochs):
        return ["--total-num-update", str(max(1, epochs * updates_per_epoch))] if updates_per_epoch else []

    runs = []
    for family in families:
        task = FAMILY_TASK[family]
        src_arch, *src_over = getattr(preset, f"{family}_source")
        tgt_arch, *tgt_over = getattr(preset, f"{family}_target")
        base = ["--task", task, *preset.train, "--log-format", "json", "--log-interval", str(preset.log_interval),
                "--seed", "1", "--no-epoch-checkpoints"]
        if family == "bert":
            base += ["--criterion", "masked_lm"]
        source_ckpt = os.path.join("runs", f"{family}_source", "checkpoint_last.pt")
        target = ["--arch", tgt_arch, *tgt_over, "--max-epoch", str(preset.target_epochs), *decay(preset.target_epochs)]
        full = ["--submodel-epochs", "0"]
        runs.append(Run(f"{family}_source", family, "source",
                        base + ["--arch", src_arch, *src_over, "--max-epoch", str(preset.source_epochs),
                                *decay(preset.source_epochs), *full]))
        runs.append(Run(f"{family}_scratch", family, "scratch", base + target + full))

        def grown(method, *extra):
            return base + target + ["--init-from-small", source_ckpt, "--growth-method", method, *extra]

        if family == "bert":
            runs.append(Run("bert_directcopy", family, "DirectCopy", grown("direct_copy", *full)))
            runs.append(Run("bert_fpi", family, "FPI", grown("fpi", *full)))
            runs.append(Run("bert_aki", family, "AKI", grown("aki", *full)))
            two_stage = ["--submodel-epochs", str(preset.submodel_epochs), "--submodel-layers", str(preset.submodel_layers)]
            runs.append(Run("bert_bert2bert", family, "bert2BERT", grown("aki", *two_stage)))
            for eb in preset.ablation_eb:
                if eb != preset.submodel_epochs and eb > 0:
                    runs.append(Run(f"bert_bert2bert_eb{eb}", family, f"bert2BERT (Eb={eb})",
                                    grown("aki", "--submodel-epochs", str(eb), "--submodel-layers",
                                          str(preset.submodel_layers))))
            runs.append(Run("bert_stackbert", family, "StackBERT",
                            base + target + full + ["--stacking-schedule", preset.stacking_schedule]))
            runs.append(Run("bert_mslt", family, "MSLT",
                            base + target + full + ["--mslt-layers", str(preset.mslt_layers),
                                                    "--mslt-stage-epochs", str(preset.mslt_stage_epochs)]))
            runs.append(Run("bert_share_unshare", family, "share-then-unshare",
                            base + target + full + ["--share-layers-until", f"epoch:{preset.share_until_epoch}"]))
        else:
            runs.append(Run("gpt_aki", family, "AKI", grown("aki", *full)))
    return runs


def manifest(preset: Preset, runs: list, data_bin: str) -> dict:
    """experiment.json: which run is which method, for b2b-report."""
    groups = []
    for family in dict.fromkeys(r.family for r in runs):
        mine = [r for r in runs if r.family == family and r.label != "source"]
        src = getattr(preset, f"{family}_source")
        tgt = getattr(preset, f"{family}_target")
        group = {
            "family": family, "title": f"{family.upper()}: {' '.join(src)} -> {' '.join(tgt)} ({preset.name} preset)",
            "scratch": "scratch", "runs": {r.label: os.path.join("runs", r.name) for r in mine},
            "source_run": os.path.join("runs", f"{family}_source"),
            "charged_source": [r.label for r in mine if "--init-from-small" in r.argv],
            "growth_reports": {label: os.path.join("growth", f"{family}_{m}.json")
                               for label, m in GROWTH_METHODS.items()},
            "title_suffix": f" ({preset.name} preset)",
            "attention": {"data": data_bin, "sentence": preset.sentence,
                          "codes": os.path.join(os.path.dirname(data_bin), "bpe.codes"),
                          "models": {"source": os.path.join("runs", f"{family}_source", "checkpoint_last.pt"),
                                     **{label: os.path.join("growth", f"{family}_{m}.pt")
                                        for label, m in GROWTH_METHODS.items()}}},
        }
        if family == "bert":
            ablation = {"0": "AKI", str(preset.submodel_epochs): "bert2BERT"}
            ablation.update({str(eb): f"bert2BERT (Eb={eb})" for eb in preset.ablation_eb if eb > 0
                             and eb != preset.submodel_epochs})
            group["ablation_eb"] = ablation
        groups.append(group)
    return {"preset": preset.name, "description": preset.description, "data": os.path.relpath(data_bin),
            "groups": groups}


GROWTH_METHODS = {"DirectCopy": "direct_copy", "FPI": "fpi", "AKI": "aki"}


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _progress_line(tag: str, line: str) -> str | None:
    """A compact console line for fairseq's json training/validation records."""
    start = line.find("{")
    if start < 0 or ('"loss"' not in line and '"valid_loss"' not in line):
        return None
    try:
        rec = json.loads(line[start:])
    except json.JSONDecodeError:
        return None
    if "valid_loss" in rec:
        return f"  [{tag}] epoch {rec.get('epoch')} valid loss {float(rec['valid_loss']):.3f}"
    if "train_loss" in rec or "num_updates" not in rec:
        return None
    flops = rec.get("train_flops")
    flops = f" flops {float(flops):.3g}" if flops is not None else ""
    return f"  [{tag}] update {rec['num_updates']} loss {float(rec['loss']):.3f}{flops}"


def run_training(root: str, data_bin: str, run: Run, echo_every: int = 5) -> float:
    """One fairseq-train run (reused when finished with the same command); returns seconds."""
    folder = os.path.join(root, "runs", run.name)
    os.makedirs(folder, exist_ok=True)
    argv = [os.path.relpath(data_bin, root), *run.argv, "--save-dir", os.path.join("runs", run.name),
            "--log-file", os.path.join("runs", run.name, "train.log")]
    command = " ".join(shlex.quote(a) for a in ["b2b-train", *argv])
    done, cmd_file = os.path.join(folder, "DONE"), os.path.join(folder, "command.txt")
    if os.path.exists(done) and open(cmd_file).read().strip() == command:
        _say(f"[{run.family}/{run.label}] finished earlier, reused ({folder})")
        return json.load(open(done)).get("seconds", 0.0)
    if os.path.exists(cmd_file) and open(cmd_file).read().strip() != command:
        raise SystemExit(f"b2b-experiment: error: {folder} holds a run with another command: "
                         "use a new --output directory or delete that run folder")
    with open(cmd_file, "w") as f:
        f.write(command + "\n")
    _say(f"[{run.family}/{run.label}] {command}")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.Popen([_bin("b2b-train"), *argv], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail, count = [], 0
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        short = _progress_line(f"{run.family}/{run.label}", line)
        if short and ("valid" in short or count % echo_every == 0):
            _say(short)
        count += bool(short)
    if proc.wait() != 0:
        raise SystemExit(f"b2b-experiment: error: run {run.name} failed (exit {proc.returncode}); its output ends:\n"
                         + "".join(tail))
    seconds = time.perf_counter() - start
    with open(done, "w") as f:
        json.dump({"seconds": seconds}, f)
    _say(f"[{run.family}/{run.label}] done in {seconds:.0f}s")
    return seconds


def grow_reports(root: str, data_bin: str, preset: Preset, family: str) -> None:
    """Table 1: the source grown with every width method, evaluated before any training."""
    from .cli.grow import evaluate_growth, grow_checkpoint

    source = os.path.join(root, "runs", f"{family}_source", "checkpoint_last.pt")
    arch, *over = getattr(preset, f"{family}_target")
    os.makedirs(os.path.join(root, "growth"), exist_ok=True)
    for label, method in GROWTH_METHODS.items():
        out = os.path.join(root, "growth", f"{family}_{method}.pt")
        report_path = out[:-3] + ".json"
        if os.path.exists(report_path):
            continue
        report = grow_checkpoint(source, arch, method, False, 1, out, data_bin, over)
        report.update(evaluate_growth(source, out, data_bin))
        with open(report_path, "w") as f:
            json.dump(report, f, indent=1)
        _say(f"[{family}/Table 1] {label}: source loss {report['source_loss']:.3f} -> "
             f"{report['grown_loss']:.3f} right after growth")


def prepare_data(root: str, preset: Preset, data: str | None = None) -> str:
    """The data-bin every run uses: ``--data`` as given, else the built-in corpus (for the CPU
    preset its first ``data_lines`` training lines, so that epochs are short)."""
    if data:
        if not os.path.isfile(os.path.join(data, "dict.txt")):
            raise SystemExit(f"b2b-experiment: error: --data {data} has no dict.txt: pass a fairseq data-bin "
                             "(b2b-preprocess corpus ... makes one)")
        return os.path.abspath(data)
    from .data import Options, builtin_corpus, prepare_builtin, prepare_corpus
    from .data.corpus import first_lines
    from .data.steps import DataError

    out = os.path.join(root, "data")
    opts = Options(num_merges=preset.num_merges)
    try:
        if preset.data_lines is None:
            return str(prepare_builtin(out, opts)["data_bin"])
        corpus = builtin_corpus(os.path.join(out, "corpus"))
        heads = {split: first_lines(corpus[split], preset.data_lines if split == "train" else preset.valid_lines)
                 for split in ("train", "valid", "test")}
        return str(prepare_corpus([heads["train"]], heads["valid"], heads["test"], out, opts)["data_bin"])
    except DataError as e:
        raise SystemExit(f"b2b-experiment: error: {e}") from None


def updates_per_epoch(data_bin: str, preset: Preset) -> int:
    """Updates in one epoch of the train split: blocks of --tokens-per-sample, --batch-size a batch."""
    from pathlib import Path

    from .data.pipeline import token_counts

    train = token_counts(Path(data_bin))["train"]
    tokens = int(preset.train[preset.train.index("--tokens-per-sample") + 1])
    batch = int(preset.train[preset.train.index("--batch-size") + 1])
    return -(-train // (tokens * batch))


def run_experiment(preset: Preset, root: str, data: str | None = None, families=("bert", "gpt"),
                   only: list | None = None) -> dict:
    os.makedirs(root, exist_ok=True)
    started = time.perf_counter()
    _say(f"b2b-experiment: preset {preset.name} ({preset.description}) -> {root}")
    data_bin = prepare_data(root, preset, data)
    runs = plan(preset, families, updates_per_epoch(data_bin, preset))
    if only:
        runs = [r for r in runs if r.label == "source" or r.name in only or r.label in only]
    with open(os.path.join(root, "experiment.json"), "w") as f:
        json.dump(manifest(preset, runs, os.path.relpath(data_bin, root) if not os.path.isabs(data_bin) or
                           data_bin.startswith(os.path.abspath(root)) else data_bin), f, indent=1)
    seconds = {}
    for run in runs:
        seconds[run.name] = run_training(root, data_bin, run)
        if run.label == "source":
            grow_reports(root, data_bin, preset, run.family)
    _say(f"b2b-experiment: all runs finished in {time.perf_counter() - started:.0f}s; report:")
    from .cli.report import main as report_main

    report_main([root])
    return seconds
