"""b2b-experiment: schedules that count optimizer updates, validation at update 0, parallel runs
that respect their sources, shell-quoted dry runs, --only that keeps the manifest whole."""
import json
import os
import shlex
import subprocess
import threading
import time

import pytest

from conftest import TINY, b2b_train_main, subset_bin
from fairseq_b2b import experiment as ex
from fairseq_b2b.experiment import runner
from fairseq_b2b.cli import experiment as ex_cli


def _records(log, key):
    out = []
    for line in open(log):
        if "{" in line and key in line:
            try:
                out.append(json.loads(line[line.index("{"):]))
            except json.JSONDecodeError:
                pass
    return out


def _opt(argv, name):
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def mid_bin(data_bin, tmp_path_factory):
    """The first ~15,000 train / ~1,500 valid tokens of the test data-bin: with --batch-size 8,
    --tokens-per-sample 64 and --update-freq 8, an epoch of 4 updates, the last a partial group."""
    return subset_bin(data_bin, tmp_path_factory.mktemp("mid_bin"), 15000, 1500)


@pytest.mark.parametrize("family,task,arch", [("bert", "b2b_masked_lm", "b2b_bert_tiny"),
                                              ("gpt", "b2b_language_modeling", "b2b_gpt_tiny")])
def test_updates_per_epoch_is_what_fairseq_runs_with_update_freq_8(mid_bin, tmp_path, monkeypatch, family, task, arch):
    tokens = ex.count_train_tokens(mid_bin)
    expected = ex.updates_per_epoch_from_tokens(tokens, family, 64, 8, update_freq_=8)
    save = tmp_path / "run"
    b2b_train_main([mid_bin, "--task", task, "--arch", arch, "--submodel-epochs", "0", "--max-epoch", "1",
                    "--update-freq", "8", "--save-dir", save, "--log-file", save / "train.log", *TINY], monkeypatch)
    last = _records(save / "train.log", '"train_loss"')[-1]
    assert int(last["train_num_updates"]) == expected
    assert expected >= 2  # a real epoch of several updates


def test_total_num_update_counts_optimizer_updates_after_update_freq(data_bin):
    paper = ex.PRESETS["paper"]
    upe = ex.updates_per_epoch(data_bin, paper)  # --update-freq 8 on one GPU
    tokens = ex.count_train_tokens(data_bin)
    assert upe["bert"] == ex.updates_per_epoch_from_tokens(tokens, "bert", 512, 64, 8)
    assert upe["bert"] < ex.updates_per_epoch_from_tokens(tokens, "bert", 512, 64, 1)
    for run in ex.plan(paper, ("bert", "gpt"), upe):
        assert _opt(run.argv, "--update-freq") == "8"
        epochs = int(_opt(run.argv, "--max-epoch"))
        assert int(_opt(run.argv, "--total-num-update")) == epochs * upe[run.family], run.name
        if run.label == "MSLT":  # 4 stages x 8 epochs + the paper's 20 full-model epochs
            assert epochs == 52
        n_valid = int(_opt(run.argv, "--total-num-update")) // int(_opt(run.argv, "--validate-interval-updates"))
        assert n_valid >= ex.MIN_VALID_POINTS
        assert "--validate-at-start" in run.argv


def test_effective_batch_is_independent_of_the_world_size():
    paper = ex.PRESETS["paper"]
    for world, uf in ((1, 8), (4, 2), (8, 1)):
        run = ex.plan(paper, ("bert",), {"bert": 10}, world_size=world)[1]
        argv = run.argv
        assert (int(_opt(argv, "--update-freq")) if "--update-freq" in argv else 1) == uf
        assert int(_opt(argv, "--batch-size")) * uf * world == 512
    with pytest.raises(ex.ExperimentError) as e:
        ex.update_freq(paper, 3)
    assert "not a multiple" in str(e.value) and "\n" not in str(e.value)
    runs = ex.plan(paper, ("bert",), {"bert": 10}, 4, ["--distributed-world-size", "4"])
    assert all(r.argv[-2:] == ["--distributed-world-size", "4"] for r in runs)
    assert ex.world_size_of(paper, ["--distributed-world-size", "4"]) == 4


def test_validate_at_start_is_the_grown_models_loss(mid_bin, tmp_path, monkeypatch):
    """A FPI-grown run's update-0 validation equals the source's own validation (exact growth at
    an integer ratio); it is logged in --log-file and its train_flops is 0."""
    src = tmp_path / "src"
    b2b_train_main([mid_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny", "--submodel-epochs", "0",
                    "--max-update", "20", "--validate-interval-updates", "20", "--save-dir", src,
                    "--log-file", src / "train.log", *TINY], monkeypatch)
    src_valid = [r for r in _records(src / "train.log", '"valid_loss"') if r.get("valid_num_updates") == "20"][-1]
    grown = tmp_path / "grown"
    b2b_train_main([mid_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny_wide", "--submodel-epochs", "0",
                    "--init-from-small", src / "checkpoint_last.pt", "--growth-method", "fpi", "--validate-at-start",
                    "--max-update", "2", "--save-dir", grown, "--log-file", grown / "train.log", *TINY], monkeypatch)
    start = [r for r in _records(grown / "train.log", '"valid_loss"') if r.get("valid_at_start")]
    assert len(start) == 1 and start[0]["valid_num_updates"] == "0" and float(start[0]["valid_train_flops"]) == 0
    assert float(start[0]["valid_loss"]) == pytest.approx(float(src_valid["valid_loss"]), abs=2e-3)
    from fairseq_b2b.report import read_curve

    curve = read_curve(str(grown / "train.log"))
    assert curve.initial_valid_loss == pytest.approx(float(start[0]["valid_loss"]))


def _fake_training(monkeypatch, delay=0.2):
    events, lock = [], threading.Lock()

    def fake(root, data_bin, run, echo_every=5, threads=None):
        with lock:
            events.append(("start", run.name, time.perf_counter()))
        time.sleep(delay if run.label.startswith("source") else delay / 2)
        os.makedirs(os.path.join(root, "runs", run.name), exist_ok=True)
        with lock:
            events.append(("end", run.name, time.perf_counter()))
        return delay

    monkeypatch.setattr(runner, "run_training", fake)
    monkeypatch.setattr(runner, "grow_reports", lambda *a, **k: None)
    monkeypatch.setattr(runner, "prepare_data", lambda root, preset, data=None: data)
    monkeypatch.setattr(runner, "updates_per_epoch", lambda data_bin, preset, world=1, families=(): {f: 10 for f in families})
    return events


def test_parallel_runs_respect_their_sources_and_the_job_limit(tmp_path, monkeypatch):
    events = _fake_training(monkeypatch)
    ex.run_experiment(ex.PRESETS["cpu"], str(tmp_path / "exp"), "DATA", ("bert", "gpt"), None, jobs=2)
    times = {(kind, name): t for kind, name, t in events}
    running, peak = 0, 0
    for kind, _, _ in sorted(events, key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    names = [r.name for r in ex.plan(ex.PRESETS["cpu"], ("bert", "gpt"), {"bert": 10, "gpt": 10})]
    assert {n for _, n, _ in events} == set(names)
    for run in ex.plan(ex.PRESETS["cpu"], ("bert", "gpt"), {"bert": 10, "gpt": 10}):
        for need in run.needs:
            assert times[("start", run.name)] >= times[("end", need)], (run.name, need)
    timing = json.load(open(tmp_path / "exp" / "timing.json"))
    assert timing[-1]["jobs"] == 2 and set(timing[-1]["trained"]) == set(names)


def test_only_keeps_the_whole_manifest_and_refuses_unknown_names(tmp_path, monkeypatch):
    events = _fake_training(monkeypatch, delay=0.01)
    root = tmp_path / "exp"
    ex.run_experiment(ex.PRESETS["cpu"], str(root), "DATA", ("bert",), ["AKI"], jobs=1)
    assert sorted({n for _, n, _ in events}) == ["bert_aki", "bert_source"]
    manifest = json.load(open(root / "experiment.json"))
    labels = set(manifest["groups"][0]["runs"])
    assert set(ex.PRESETS["cpu"].methods["bert"]) <= labels  # every method of the plan, not only the one run
    with pytest.raises(SystemExit) as e:
        (root / "bin").mkdir()
        (root / "bin" / "dict.txt").write_text("a 1\n")
        ex_cli.main(["--preset", "cpu", "--output", str(root), "--data", str(root / "bin"), "--only", "nope",
                     "--families", "bert"])
    assert "--only nope: no such run or method" in str(e.value.code) and "\n" not in str(e.value.code)


def test_dry_run_prints_the_exact_shell_commands(data_bin, tmp_path, capsys):
    ex_cli.main(["--preset", "cpu", "--output", str(tmp_path / "exp"), "--data", data_bin, "--only", "AKI",
                 "--families", "bert", "--dry-run"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2  # the source and AKI
    upe = ex.updates_per_epoch(data_bin, ex.PRESETS["cpu"])["bert"]
    for line in lines:
        assert subprocess.run(["bash", "-n", "-c", line]).returncode == 0  # valid shell, e.g. '(0.9,0.98)' quoted
        argv = shlex.split(line.split(" && ", 2)[2])
        assert argv[0] == "b2b-train" and argv[1] == os.path.abspath(data_bin)
        assert "--log-file" in argv and "--validate-at-start" in argv
        assert int(_opt(argv, "--total-num-update")) == int(_opt(argv, "--max-epoch")) * upe
        assert _opt(argv, "--adam-betas") == "(0.9,0.98)"
    assert "runs/bert_aki" in lines[1] and "--init-from-small" in lines[1]
    assert not (tmp_path / "exp" / "runs").exists()  # a dry run trains nothing


def test_log_file_lines_are_written_once_per_record(small_bin, tmp_path, monkeypatch):
    """fairseq adds a --log-file handler per progress bar (each epoch); the package keeps one,
    so a 3-epoch run's log holds every record once (the report's curves read these files)."""
    save = tmp_path / "run"
    b2b_train_main([small_bin, "--task", "b2b_masked_lm", "--arch", "b2b_bert_tiny", "--submodel-epochs", "0",
                    "--max-epoch", "3", "--save-dir", save, "--log-file", save / "train.log", *TINY, "--batch-size", "64"],
                   monkeypatch)
    lines = [line for line in open(save / "train.log") if "{" in line]
    assert len([line for line in lines if '"train_loss"' in line]) == 3
    assert len(lines) == len(set(lines))


@pytest.mark.parametrize("preset", sorted(ex.PRESETS))
def test_every_preset_command_parses_with_fairseq(data_bin, preset):
    """Every run of every preset (GPU ones included) is a command fairseq-train accepts."""
    from fairseq_b2b.checkpoints import parse_training_args

    runs = ex.plan(ex.PRESETS[preset], ("bert", "gpt"), {"bert": 100, "gpt": 100})
    assert len({r.name for r in runs}) == len(runs)
    for run in runs:
        args = parse_training_args([data_bin, *run.argv, "--save-dir", "unused"])
        assert args.arch.startswith("b2b_") and args.validate_at_start
        assert int(args.total_num_update) == int(args.max_epoch) * 100


def _width(shape: list) -> int:
    side = "--encoder-embed-dim" if "--encoder-embed-dim" in shape else "--decoder-embed-dim"
    return int(shape[shape.index(side) + 1])


def test_cpu_full_grows_bert_in_width_at_1_5x_with_every_method_and_a_depth_only_group():
    preset = ex.PRESETS["cpu-full"]
    assert _width(preset.bert_target) == 1.5 * _width(preset.bert_source)
    runs = ex.plan(preset, ("bert", "gpt"), {"bert": 100, "gpt": 50})
    main = [r for r in runs if r.family == "bert" and r.group == "main"]
    seeds = {label: sorted(r.seed for r in main if r.label == label) for label in {r.label for r in main}}
    for label in ("scratch", "FPI", ex.EXACT_FPI, "AKI", "bert2BERT"):
        assert seeds[label] == [1, 2, 3], label
    for label in ("DirectCopy", "StackBERT", "MSLT", "share-then-unshare"):
        assert seeds[label] == [1], label
    depth = [r for r in runs if r.group == "shape:depth-only"]
    assert {r.label for r in depth} == {"scratch", "AKI", "bert2BERT"}  # its source is the main one, trained once
    for r in depth:  # the depth-only targets: twice as deep as the source, same width
        assert _opt(r.argv, "--encoder-layers") == "4" and _opt(r.argv, "--encoder-embed-dim") == "128"
        if r.label in ("AKI", "bert2BERT"):
            assert _opt(r.argv, "--init-from-small") == "runs/bert_source/checkpoint_last.pt"
    assert [r.name for r in runs].count("bert_source") == 1
    # each family's own block size: BERT 32 tokens, GPT 64
    assert {_opt(r.argv, "--tokens-per-sample") for r in runs if r.family == "bert"} == {"32"}
    assert {_opt(r.argv, "--tokens-per-sample") for r in runs if r.family == "gpt"} == {"64"}
    groups = {(g["family"], g["name"]): g for g in ex.manifest(preset, runs, "data-bin")["groups"]}
    depth_group = groups[("bert", "shape:depth-only")]
    assert depth_group["source_run"] == "runs/bert_source"
    assert set(depth_group["runs"]) == {"scratch", "AKI", "bert2BERT"}
    assert depth_group["title"] == "BERT: S(L=2, D=128, FFN=512, heads=4) -> T(L=4, D=128, FFN=512, heads=4) (cpu-full preset, depth-only)"
    # Figure 2 in miniature: the trained source beside trained targets, not only grown ones
    models = groups[("bert", "main")]["attention"]["models"]
    assert models["source (trained)"] == "runs/bert_source/checkpoint_last.pt"
    assert models["AKI (trained)"] == "runs/bert_aki/checkpoint_last.pt"
    assert models["scratch (trained)"] == "runs/bert_scratch/checkpoint_last.pt"


def test_updates_per_epoch_follows_each_familys_block_size(data_bin):
    preset = ex.PRESETS["cpu-full"]
    upe = ex.updates_per_epoch(data_bin, preset)
    tokens = ex.count_train_tokens(data_bin)
    assert upe["bert"] == ex.updates_per_epoch_from_tokens(tokens, "bert", 32, 32)
    assert upe["gpt"] == ex.updates_per_epoch_from_tokens(tokens, "gpt", 64, 32)


def test_paper_preset_gpt_is_the_papers_gpt_experiment():
    paper = ex.PRESETS["paper"]
    runs = [r for r in ex.plan(paper, ("gpt",), {"gpt": 100}) if r.label != "source"]
    assert sorted(r.label for r in runs) == ["AKI", "scratch"]
    for r in runs:  # 20 epochs, lr 1e-4, full-model training only
        assert _opt(r.argv, "--max-epoch") == "20" and _opt(r.argv, "--lr") == "0.0001"
        assert _opt(r.argv, "--submodel-epochs") == "0"


def test_cpu_preset_grows_bert_in_width_off_the_plateau_recipe():
    preset = ex.PRESETS["cpu"]
    assert _width(preset.bert_target) == 1.5 * _width(preset.bert_source)
    runs = ex.plan(preset, ("bert", "gpt"), {"bert": 300, "gpt": 150})
    bert = [r for r in runs if r.family == "bert"]
    assert {r.label for r in bert} == {"source", "scratch", "FPI", "AKI", "bert2BERT"}
    assert {_opt(r.argv, "--tokens-per-sample") for r in bert} == {"32"}
    b2b = next(r for r in bert if r.label == "bert2BERT")
    assert _opt(b2b.argv, "--submodel-layers") == "1"  # lb=1: sub-models of 1 and 2 layers of the 2-layer T
    for r in runs:  # every grown run is validated at update 0
        assert "--validate-at-start" in r.argv


def test_the_built_in_data_is_prepared_in_a_fresh_experiment_folder(tmp_path):
    """The demo's first step: the first lines of the built-in corpus into DIR/data (it once failed
    because the corpus was unpacked into DIR/data first, which b2b-preprocess then refused)."""
    from dataclasses import replace

    small = replace(ex.PRESETS["cpu"], data_lines=300, valid_lines=60, num_merges=50)
    data_bin = ex.prepare_data(str(tmp_path / "exp"), small)
    assert os.path.isfile(os.path.join(data_bin, "train.bin")) and data_bin.startswith(str(tmp_path / "exp" / "data"))
    assert ex.prepare_data(str(tmp_path / "exp"), small) == data_bin  # a rerun reuses it
