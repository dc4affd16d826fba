"""Table 2 in miniature (issue 18, item 4): b2b-experiment fine-tunes every compared BERT
method's final model on the built-in classification task and the built-in QA set; the report
prints method, saving, saving with the source and the downstream scores (mean ± sd over seeds)
and results.json carries them; a finished fine-tuning is not redone."""
import json
import os
import shlex
from dataclasses import replace

import pytest

from fairseq_b2b import experiment as ex
from fairseq_b2b.cli import report as report_cli
from fairseq_b2b.experiment import downstream, runner
from test_experiment import _fake_training
from test_report import write_log


def test_every_bert_method_is_fine_tuned_on_both_tasks_and_gpt_is_not():
    preset = ex.PRESETS["cpu-full"]
    runs = ex.plan(preset, ("bert", "gpt"), {"bert": 100, "gpt": 100})
    lines = downstream.dry_run_lines(preset, "/exp", runs)
    bert_methods = [r for r in runs if r.family == "bert" and not r.label.startswith("source")]
    assert len(lines) == 2 + 2 * len(bert_methods)  # the two data sets, then two fine-tunings per model
    argvs = [shlex.split(line.split(" && ", 1)[1]) for line in lines]
    assert argvs[0][:2] == ["b2b-glue", "builtin-task"] and argvs[1][:2] == ["b2b-squad", "builtin-set"]
    checkpoints = [a[a.index("--checkpoint") + 1] for a in argvs[2:]]
    assert sorted(set(checkpoints)) == sorted(f"runs/{r.name}/checkpoint_last.pt" for r in bert_methods)
    not_compared = {r.name for r in runs if r.family == "gpt" or r.label.startswith("source")}
    assert not_compared and not any(c.split("/")[1] in not_compared for c in checkpoints)
    for argv in argvs[2:]:
        run = next(r for r in bert_methods if f"runs/{r.name}/" in argv[argv.index("--checkpoint") + 1])
        assert argv[argv.index("--seed") + 1] == str(run.seed) and "--cpu" in argv
    qa = preset.downstream["qa"]
    squad = next(a for a in argvs if a[:2] == ["b2b-squad", "fine-tune"])
    assert squad[squad.index("--lr") + 1] == f"{qa['lr']:g}" and squad[squad.index("--epochs") + 1] == str(qa["epochs"])
    assert not ex.PRESETS["cpu"].downstream  # off in the 15-minute preset


def _record(root, run, task, seed, **scores):
    path = root / "downstream" / run / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": run, "task": task, "seed": seed, **scores}))


def test_report_prints_savings_and_downstream_scores_over_seeds(tmp_path, capsys):
    valid = {"scratch": [(0, 0, 10.0), (10, 2e12, 8.0), (20, 4e12, 6.0)],
             "aki": [(0, 0, 7.5), (10, 1e12, 7.0), (20, 2e12, 5.0)]}
    runs = {"scratch": {}, "AKI": {}}
    for seed in (1, 2):
        suffix = "" if seed == 1 else "_seed2"
        for label, key in (("scratch", "scratch"), ("AKI", "aki")):
            write_log(tmp_path / "runs" / f"bert_{key}{suffix}" / "train.log", [(1e12, 9), (2e12, 7)], valid[key])
            runs[label][str(seed)] = f"runs/bert_{key}{suffix}"
    write_log(tmp_path / "runs" / "bert_source" / "train.log", [(1e11, 9)], [(10, 2e11, 7.5)])
    # scratch: MILTON 60 / 70, QA F1 40 / 50; AKI: MILTON 80 / 80, QA F1 60 / 80 (EM 50 / 70)
    for run, seed, acc, em, f1 in (("bert_scratch", 1, 60.0, 30.0, 40.0), ("bert_scratch_seed2", 2, 70.0, 40.0, 50.0),
                                   ("bert_aki", 1, 80.0, 50.0, 60.0), ("bert_aki_seed2", 2, 80.0, 70.0, 80.0)):
        _record(tmp_path, run, "MILTON", seed, accuracy=acc, majority=50.0)
        _record(tmp_path, run, "QA", seed, exact_match=em, f1=f1, baseline_exact_match=33.3, baseline_f1=34.9)
    manifest = {"groups": [{"family": "bert", "name": "main", "scratch": "scratch", "source_run": "runs/bert_source",
                            "runs": runs, "sources": {"AKI": "runs/bert_source"}, "charged_source": ["AKI"],
                            "seeds": ["1", "2"]}]}
    (tmp_path / "experiment.json").write_text(json.dumps(manifest))
    report_cli.main([str(tmp_path), "--no-plots"])
    printed = capsys.readouterr().out
    assert "Downstream (Table 2 in miniature)" in printed
    aki_line = next(line for line in printed.splitlines() if line.startswith("| AKI |") and "QA" not in line
                    and "80.0" in line)
    saving = json.load(open(tmp_path / "results.json"))["bert"]["methods"]["AKI"]["saving"]
    cells = [c.strip() for c in aki_line.strip("|").split("|")]
    assert cells[1].startswith(f"{100 * saving:.1f}")  # the pre-training saving beside the scores
    assert cells[3:7] == ["80.0 ± 0.0", "60.0 ± 14.1", "70.0 ± 14.1", "2"]  # MILTON, QA EM, QA F1 (sample sd), seeds
    assert "| QA first-name baseline |  |  |  | 33.3 | 34.9 |  |" in printed
    res = json.load(open(tmp_path / "results.json"))["bert"]["downstream"]
    assert res["methods"]["scratch"]["QA F1"] == {"mean": 45.0, "sd": pytest.approx(7.0710678), "seeds": 2}
    assert res["methods"]["AKI"]["MILTON acc"]["sd"] == 0.0


TINY_RECIPE = {"cls": dict(train_per_class=60, dev_per_class=40, lr=1e-3, epochs=1, batch_size=16),
               "qa": dict(train_questions=120, dev_questions=60, lr=1e-3, epochs=1, batch_size=16, doc_stride=8,
                          max_answer_length=8)}


def _fake_fine_tunes(monkeypatch):
    """downstream._call without subprocesses: records each argv and writes the results.json the
    real command would (MILTON accuracy 0.75 with majority 0.5; QA EM 40 / F1 45)."""
    calls = []

    def fake(root, argv, log, threads):
        calls.append(argv)
        if argv[1] in ("builtin-task", "builtin-set"):
            return
        out = os.path.join(root, argv[argv.index("--output") + 1])
        os.makedirs(out, exist_ok=True)
        if argv[0] == "b2b-glue":
            results = {"best": {"MILTON": {"score": 0.75, "lr": 3e-4, "epochs": 3,
                                           "dev": {"dev": {"majority_acc": 0.5}}}}}
        else:
            results = {"exact_match": 40.0, "f1": 45.0, "questions": 60,
                       "first_name_baseline": {"exact_match": 33.0, "f1": 34.0}}
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f)

    monkeypatch.setattr(downstream, "_call", fake)
    return calls


def test_the_experiment_fine_tunes_each_bert_method_once_and_again_only_when_its_checkpoint_changes(
        tmp_path, monkeypatch):
    """b2b-experiment's downstream step, with training and fine-tuning faked: after the pre-training
    runs, the two data sets are written once and each BERT method's final model (not a source,
    not GPT) gets one MILTON and one QA fine-tuning; a rerun redoes none, and a changed checkpoint
    redoes that run's two."""
    _fake_training(monkeypatch, delay=0.01)
    fake_train = runner.run_training

    def training_with_checkpoint(root, data_bin, run, echo_every=5, threads=None):
        seconds = fake_train(root, data_bin, run, echo_every, threads)
        with open(os.path.join(root, "runs", run.name, "checkpoint_last.pt"), "w") as f:
            f.write(run.name)
        return seconds

    monkeypatch.setattr(runner, "run_training", training_with_checkpoint)
    calls = _fake_fine_tunes(monkeypatch)
    preset = replace(ex.PRESETS["cpu"], downstream=TINY_RECIPE)
    root = tmp_path / "exp"
    ex.run_experiment(preset, str(root), "DATA", ("bert", "gpt"), None, jobs=2)
    runs = ex.plan(preset, ("bert", "gpt"), {"bert": 10, "gpt": 10})
    compared = [r for r in runs if r.family == "bert" and not r.label.startswith("source")]
    assert len(compared) == len(preset.methods["bert"]) >= 4
    assert [c[:2] for c in calls[:2]] == [["b2b-glue", "builtin-task"], ["b2b-squad", "builtin-set"]]
    tuned = sorted((c[0], c[c.index("--checkpoint") + 1]) for c in calls[2:])
    assert tuned == sorted((tool, f"runs/{r.name}/checkpoint_last.pt") for r in compared
                           for tool in ("b2b-glue", "b2b-squad"))
    for r in compared:
        for task, key, value in (("MILTON", "accuracy", 75.0), ("QA", "f1", 45.0)):
            record = json.load(open(root / "downstream" / r.name / f"{task}.json"))
            assert record[key] == value and record["method"] == r.label and record["seed"] == r.seed
    calls.clear()
    ex.run_experiment(preset, str(root), "DATA", ("bert", "gpt"), None, jobs=2)
    assert calls == []  # every fine-tuning reused
    changed = compared[-1]
    (root / "runs" / changed.name / "checkpoint_last.pt").write_text("retrained")
    downstream.run_downstream(str(root), preset, runs, jobs=1)
    assert sorted(c[0] for c in calls) == ["b2b-glue", "b2b-squad"]
    assert all(f"runs/{changed.name}/" in c[c.index("--checkpoint") + 1] for c in calls)


@pytest.mark.slow  # the real commands of the test above, end to end (~70 s; CI runs it: scripts/test.sh -m "slow or not slow")
def test_tiny_experiment_fine_tunes_every_method_and_reuses_finished_ones(tmp_path, monkeypatch, capsys):
    """A real tiny b2b-experiment (scratch and AKI, one epoch each, 32-token BERTs) with the
    downstream step, then b2b-report; a rerun redoes no fine-tuning."""
    shapes = {"bert_source": ["b2b_bert_tiny"], "bert_target": ["b2b_bert_tiny_wide"]}
    tiny = replace(ex.PRESETS["cpu"], name="tiny", data_lines=400, valid_lines=60, num_merges=100,
                   methods={"bert": ("scratch", "AKI")}, downstream=TINY_RECIPE, log_interval=5,
                   family_overrides={"bert": dict(tokens_per_sample=32, source_epochs=1, target_epochs=1)}, **shapes)
    root = tmp_path / "exp"
    ex.run_experiment(tiny, str(root), None, ("bert",), None, jobs=2)
    for run in ("bert_scratch", "bert_aki"):
        for task in ("MILTON", "QA"):
            record = json.load(open(root / "downstream" / run / f"{task}.json"))
            assert record["checkpoint_sha256"] and record["command"].startswith(f"b2b-{'glue' if task == 'MILTON' else 'squad'}")
        qa = json.load(open(root / "downstream" / run / "QA" / "results.json"))
        assert json.load(open(root / "downstream" / run / "QA.json"))["f1"] == qa["f1"]
        assert qa["hyperparameters"]["lr"] == 1e-3 and qa["questions"] == 60
    report_cli.main([str(root), "--no-plots"])
    res = json.load(open(root / "results.json"))["bert"]
    assert set(res["downstream"]["methods"]) == {"scratch", "AKI"}
    assert "saving" in res["methods"]["AKI"] and "Downstream (Table 2 in miniature)" in capsys.readouterr().out

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a finished fine-tuning was redone")

    monkeypatch.setattr(downstream, "_call", no_subprocess)
    again = downstream.run_downstream(str(root), tiny, ex.plan(tiny, ("bert",), {"bert": 10}), jobs=1)
    assert again["bert_aki"]["QA"]["f1"] == json.load(open(root / "downstream" / "bert_aki" / "QA.json"))["f1"]
