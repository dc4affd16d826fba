"""b2b-report on synthetic fairseq json logs with known crossing points: the metric is the
FLOPs to reach scratch's final full-model validation loss, scratch is measured by the same rule,
"at start" is never a percentage."""
import json
import os

import pytest

from fairseq_b2b import report as rep
from fairseq_b2b.cli import report as report_cli


def write_log(path, train=(), valid=(), interval=10, done=True):
    """``train``: (flops, loss) train_inner points every ``interval`` updates; ``valid``:
    (updates, flops, loss) validation records (update 0 = --validate-at-start); ``done``: end with
    fairseq's "done training" line (a finished run)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("INFO:fairseq_cli.train:start\n")
        for upd, flops, loss in valid:
            if upd == 0:
                rec = {"epoch": 1, "valid_loss": f"{loss}", "valid_num_updates": "0", "valid_train_flops": "0",
                       "valid_at_start": True}
                f.write(f"2026-01-01 | INFO | fairseq_b2b.two_stage | validation at update 0 | {json.dumps(rec)}\n")
        for i, (flops, loss) in enumerate(train, 1):
            rec = {"epoch": 1, "update": 0.1 * i, "loss": f"{loss}", "ppl": "1", "num_updates": str(i * interval),
                   "train_flops": f"{flops}"}
            f.write(f"INFO:train_inner:{json.dumps(rec)}\n")
        for upd, flops, loss in valid:
            if upd > 0:
                rec = {"epoch": 1, "valid_loss": f"{loss}", "valid_train_flops": flops, "valid_num_updates": str(upd)}
                f.write(f"2026-01-01 | INFO | valid | {json.dumps(rec)}\n")
        if done:
            f.write("2026-01-01 12:00:00 | INFO | fairseq_cli.train | done training in 12.3 seconds\n")


SCRATCH_VALID = [(0, 0, 10.0), (10, 1e12, 9.0), (20, 2e12, 7.0), (30, 3e12, 6.0), (40, 4e12, 5.0)]


@pytest.fixture
def logs(tmp_path):
    write_log(tmp_path / "scratch" / "train.log", [(1e12, 9.5), (2e12, 4.0), (3e12, 6.1), (4e12, 5.2)], SCRATCH_VALID)
    # grown: starts above the target, crosses 5.0 between 1e12 (6.0) and 2e12 (4.0): 1.5e12
    write_log(tmp_path / "fast" / "train.log", [(1e12, 5.5), (2e12, 4.2)], [(0, 0, 7.0), (10, 1e12, 6.0), (20, 2e12, 4.0)])
    write_log(tmp_path / "never" / "train.log", [(1e12, 9), (2e12, 8)], [(0, 0, 9.5), (10, 1e12, 8.0), (20, 2e12, 7.0)])
    # already at the target at update 0
    write_log(tmp_path / "start" / "train.log", [(1e12, 4.5)], [(0, 0, 4.9), (10, 1e12, 4.6)])
    return tmp_path


def curves_of(root, names):
    return {n: rep.read_curve(str(root / n / "train.log"), n) for n in names}


def test_validation_crossings_scratch_reference_is_its_first_crossing(logs):
    curves = curves_of(logs, ("scratch", "fast", "never"))
    assert curves["fast"].valid == [(0, 0.0, 7.0), (10, 1e12, 6.0), (20, 2e12, 4.0)]
    assert curves["fast"].initial_valid_loss == 7.0
    out = rep.savings(curves, "scratch", {"fast": 1e12, "never": 1e12})
    assert out["metric"] == "valid_loss"
    assert out["target_loss"] == 5.0
    # scratch's validation curve is monotone: its first crossing is its last point, even though
    # its training loss dipped to 4.0 at 2e12 (training-loss crossings never count)
    assert out["scratch_flops_to_target"] == pytest.approx(4e12)
    fast = out["methods"]["fast"]
    assert fast["flops_to_target"] == pytest.approx(1.5e12)
    assert fast["saving"] == pytest.approx(1 - 1.5 / 4)
    assert fast["saving_with_source"] == pytest.approx(1 - 2.5 / 4)
    assert fast["initial_valid_loss"] == 7.0 and fast["reached_at_start"] is False
    assert out["methods"]["never"]["flops_to_target"] is None and out["methods"]["never"]["saving"] is None
    assert out["methods"]["scratch"]["saving"] == 0.0 and out["methods"]["scratch"]["initial_valid_loss"] is None
    table = rep.markdown_table(out)
    assert "| never | never reached | never reached | never reached |" in table
    assert "full-model validation loss" in table and "validated every 10 updates" in table


def test_a_training_loss_crossing_inside_stage_1_is_not_counted(tmp_path):
    """The training loss (an average over shallower sub-models in stage 1) crosses the target
    at the first logged point; the validation curve of the full model only crosses later."""
    write_log(tmp_path / "scratch" / "train.log", [(1e12, 6.0), (2e12, 5.0)], [(0, 0, 10.0), (10, 1e12, 6.0), (20, 2e12, 5.0)])
    write_log(tmp_path / "b2b" / "train.log", [(0.5e12, 4.0), (1e12, 4.5), (1.5e12, 4.8)],
              [(0, 0, 6.5), (10, 0.5e12, 6.2), (20, 1e12, 5.5), (30, 1.5e12, 4.5)])
    curves = curves_of(tmp_path, ("scratch", "b2b"))
    assert rep.flops_to_reach(curves["b2b"], 5.0, metric="train_loss") == pytest.approx(0.5e12)
    out = rep.savings(curves, "scratch", {"b2b": 0.0})
    b2b = out["methods"]["b2b"]
    assert b2b["flops_to_target"] == pytest.approx(1e12 + 0.5 / 1.0 * 0.5e12)
    assert b2b["saving"] == pytest.approx(1 - 1.25 / 2)


def test_at_start_is_reported_and_never_a_percentage(logs):
    curves = curves_of(logs, ("scratch", "fast", "start"))
    out = rep.savings(curves, "scratch", {"fast": 1e12, "start": 1e12}, source_valid_loss=5.5)
    start = out["methods"]["start"]
    assert start["reached_at_start"] is True
    assert start["flops_to_target"] is None and start["saving"] is None and start["saving_with_source"] is None
    assert out["at_start"] == ["start"]
    assert "budget is too small for a convergence comparison" in out["degenerate"]
    table = rep.markdown_table(out)
    row = next(line for line in table.splitlines() if line.startswith("| start |"))
    assert row.count("at start") == 3 and "%" not in row
    assert "NOTE: scratch's budget is too small" in table


def test_scratch_not_clearly_better_than_the_source_is_called_out(logs):
    curves = curves_of(logs, ("scratch", "fast"))
    assert rep.savings(curves, "scratch", {"fast": 0.0}, source_valid_loss=6.0)["degenerate"] is None
    out = rep.savings(curves, "scratch", {"fast": 0.0}, source_valid_loss=5.05)
    assert "not clearly better than the source's 5.050" in out["degenerate"]


def test_seeds_pair_each_method_with_its_own_scratch(tmp_path):
    per_seed = {}
    for seed, shift in ((1, 0.0), (2, 0.5)):
        root = tmp_path / f"s{seed}"
        write_log(root / "scratch" / "train.log", [(4e12, 5.0)],
                  [(0, 0, 10.0), (10, 2e12, 7.0 + shift), (20, 4e12, 5.0 + shift)])
        # reaches this seed's target at 1e12 (seed 1) and 2e12 (seed 2)
        write_log(root / "aki" / "train.log", [(1e12, 5.0)],
                  [(0, 0, 8.0), (10, seed * 1e12, 5.0 + shift), (20, 4e12, 4.0)])
        per_seed[seed] = curves_of(root, ("scratch", "aki"))
    out = rep.savings_over_seeds(per_seed, "scratch", {"aki": 1e12}, source_valid_loss=9.0)
    aki = out["methods"]["aki"]
    assert out["seeds"] == [1, 2] and aki["seeds_reached"] == 2
    assert aki["saving"] == pytest.approx((0.75 + 0.5) / 2)
    assert aki["saving_sd"] == pytest.approx(((0.125 ** 2) * 2) ** 0.5)
    assert out["saving_sd"]["aki"] == aki["saving_sd"]
    assert out["target_loss"] == pytest.approx(5.25)
    assert "62.5 ± 17.7%" in rep.markdown_table(out)


def test_a_resumed_log_keeps_the_later_records(tmp_path):
    path = tmp_path / "run" / "train.log"
    write_log(path, [(1e12, 9), (2e12, 8), (3e12, 7)], [(0, 0, 9.5), (10, 1e12, 9.0), (20, 2e12, 8.5), (30, 3e12, 8.0)])
    with open(path, "a") as f:  # resumed from the checkpoint at update 20
        f.write('INFO:train_inner:{"loss": "6.5", "num_updates": "30", "train_flops": "3.1e12"}\n')
        f.write('INFO:valid:{"valid_loss": "7.9", "valid_num_updates": "30", "valid_train_flops": "3.1e12"}\n')
    curve = rep.read_curve(str(path))
    assert curve.updates == [10, 20, 30] and curve.loss == [9.0, 8.0, 6.5]
    assert [v for _, _, v in curve.valid] == [9.5, 9.0, 8.5, 7.9]


def test_cli_on_logs_writes_results_and_plot(logs, capsys):
    out = logs / "report"
    report_cli.main([str(logs / n / "train.log") for n in ("scratch", "fast", "never")] +
                    ["--source-flops", "1e12", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "never reached" in printed and "62.5%" in printed and "37.5%" in printed
    results = json.load(open(out / "results.json"))["runs"]
    assert results["methods"]["fast"]["saving"] == pytest.approx(0.625)
    assert results["methods"]["never"]["saving"] is None
    assert os.path.getsize(out / "loss_vs_flops.png") > 5000


def test_cli_errors_are_one_line_and_write_nothing(tmp_path):
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(tmp_path / "missing.log")])
    assert "does not exist" in str(e.value.code) and "\n" not in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(tmp_path)])
    assert "experiment.json" in str(e.value.code)
    text = tmp_path / "scratch" / "train.log"
    os.makedirs(text.parent)
    text.write_text("| epoch 001 | loss 9.1 | ppl 550\n")  # fairseq's simple format, not json
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(text), "--output", str(tmp_path / "out")])
    assert "no fairseq json records" in str(e.value.code) and "--log-format json" in str(e.value.code)
    assert not (tmp_path / "out").exists()


def test_experiment_directory_mode_reads_the_manifest(tmp_path, capsys):
    """b2b-report DIR (as b2b-experiment writes it): seeds, source FLOPs charged to grown runs
    only, the source's valid loss, Table 1 and the Eb ablation from the manifest."""
    write_log(tmp_path / "runs" / "bert_source" / "train.log", [(1e11, 9), (2e11, 8)], [(10, 1e11, 8.5), (20, 2e11, 7.5)])
    write_log(tmp_path / "runs" / "bert_scratch" / "train.log", [(1e12, 10), (4e12, 6)],
              [(0, 0, 10.0), (10, 2e12, 8.0), (20, 4e12, 6.0)])
    write_log(tmp_path / "runs" / "bert_aki" / "train.log", [(1e12, 7), (2e12, 5)],
              [(0, 0, 7.5), (10, 1e12, 7.0), (20, 2e12, 5.0)])
    write_log(tmp_path / "runs" / "bert_stack" / "train.log", [(1e12, 9), (3e12, 6)],
              [(0, 0, 10.0), (10, 1e12, 9.0), (20, 3e12, 6.0)])
    os.makedirs(tmp_path / "growth")
    json.dump({"source_loss": 8.0, "grown_loss": 8.1, "max_abs_logit_diff": 3.0,
               "source_shape": "(L=2, D=64, FFN=256, heads=2)", "target_shape": "(L=2, D=128, FFN=512, heads=4)"},
              open(tmp_path / "growth" / "bert_aki.json", "w"))
    manifest = {"groups": [{"family": "bert", "name": "main", "scratch": "scratch", "source_run": "runs/bert_source",
                            "runs": {"scratch": {"1": "runs/bert_scratch"}, "AKI": {"1": "runs/bert_aki"},
                                     "StackBERT": {"1": "runs/bert_stack"}},
                            "sources": {"AKI": "runs/bert_source"}, "charged_source": ["AKI"],
                            "growth_reports": {"AKI": "growth/bert_aki.json"}, "ablation_eb": {"0": "AKI"}}]}
    json.dump(manifest, open(tmp_path / "experiment.json", "w"))
    report_cli.main([str(tmp_path), "--no-plots"])
    printed = capsys.readouterr().out
    assert "S(L=2, D=64, FFN=256, heads=2) -> T(L=2, D=128, FFN=512, heads=4)" in printed
    res = json.load(open(tmp_path / "results.json"))["bert"]
    assert res["metric"] == "valid_loss" and res["source_valid_loss"] == 7.5
    assert res["target_loss"] == 6.0 and res["scratch_flops_to_target"] == pytest.approx(4e12)
    aki, stack = res["methods"]["AKI"], res["methods"]["StackBERT"]
    assert aki["flops_to_target"] == pytest.approx(1.5e12) and aki["saving"] == pytest.approx(1 - 1.5 / 4)
    assert aki["saving_with_source"] == pytest.approx(1 - 1.7 / 4)  # the source's 2e11 FLOPs charged
    assert aki["initial_valid_loss"] == 7.5 and stack["initial_valid_loss"] is None
    assert stack["saving"] == stack["saving_with_source"] == pytest.approx(0.25)  # no source: nothing charged
    assert res["table1"]["AKI"]["grown_loss"] == 8.1
    assert res["ablation_eb"]["0"]["saving"] == pytest.approx(1 - 1.5 / 4)
    assert res["degenerate"] is None
