"""b2b-report on synthetic fairseq json logs with known crossing points."""
import json
import os

import pytest

from fairseq_b2b import report as rep
from fairseq_b2b.cli import report as report_cli


def write_log(path, points, interval=10, valid=()):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("INFO:fairseq_cli.train:start\n")
        for i, (flops, loss) in enumerate(points, 1):
            rec = {"epoch": 1, "update": 0.1 * i, "loss": f"{loss}", "ppl": "1", "num_updates": str(i * interval),
                   "train_flops": f"{flops}"}
            f.write(f"INFO:train_inner:{json.dumps(rec)}\n")
        for flops, loss in valid:
            f.write(f'2026-01-01 | INFO | valid | {json.dumps({"epoch": 1, "valid_loss": loss, "valid_train_flops": flops})}\n')


@pytest.fixture
def logs(tmp_path):
    write_log(tmp_path / "scratch" / "train.log", [(1e12, 10), (2e12, 8), (3e12, 6), (4e12, 5), (5e12, 4)])
    write_log(tmp_path / "fast" / "train.log", [(1e12, 9), (2e12, 5), (3e12, 3)], valid=[(3e12, 3.5)])
    write_log(tmp_path / "never" / "train.log", [(1e12, 9), (2e12, 8), (3e12, 7)])
    return tmp_path


def test_crossings_and_savings_are_exact(logs):
    curves = {n: rep.read_curve(str(logs / n / "train.log"), n) for n in ("scratch", "fast", "never")}
    assert curves["fast"].valid_loss == [(3e12, 3.5)]
    assert rep.flops_to_reach(curves["fast"], 4.0) == pytest.approx(2.5e12)
    out = rep.savings(curves, "scratch", {"fast": 1e12, "never": 1e12})
    assert out["target_loss"] == 4.0
    assert out["methods"]["scratch"]["saving"] == pytest.approx(0.0)
    assert out["methods"]["fast"]["flops_to_target"] == pytest.approx(2.5e12)
    assert out["methods"]["fast"]["saving"] == pytest.approx(0.5)
    assert out["methods"]["fast"]["saving_with_source"] == pytest.approx(0.3)
    assert out["methods"]["never"]["flops_to_target"] is None and out["methods"]["never"]["saving"] is None
    table = rep.markdown_table(out)
    assert "| never | never reached | never reached |" in table
    assert "every 10 updates" in table


def test_a_resumed_log_keeps_the_later_records(tmp_path):
    path = tmp_path / "run" / "train.log"
    write_log(path, [(1e12, 9), (2e12, 8), (3e12, 7)])
    with open(path, "a") as f:  # resumed from the checkpoint at update 20
        f.write('INFO:train_inner:{"loss": "6.5", "num_updates": "30", "train_flops": "3.1e12"}\n')
    curve = rep.read_curve(str(path))
    assert curve.updates == [10, 20, 30] and curve.loss == [9.0, 8.0, 6.5]


def test_cli_on_logs_writes_results_and_plot(logs, capsys):
    out = logs / "report"
    report_cli.main([str(logs / n / "train.log") for n in ("scratch", "fast", "never")] +
                    ["--source-flops", "1e12", "--output", str(out)])
    printed = capsys.readouterr().out
    assert "never reached" in printed and "50.0%" in printed and "30.0%" in printed
    results = json.load(open(out / "results.json"))["runs"]
    assert results["methods"]["fast"]["saving"] == pytest.approx(0.5)
    assert results["methods"]["never"]["saving"] is None
    assert os.path.getsize(out / "loss_vs_flops.png") > 5000


def test_cli_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(tmp_path / "missing.log")])
    assert "does not exist" in str(e.value.code) and "\n" not in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        report_cli.main([str(tmp_path)])
    assert "experiment.json" in str(e.value.code)


def test_experiment_directory_mode_reads_the_manifest(tmp_path, capsys):
    """b2b-report DIR (as b2b-experiment writes it): groups, source FLOPs charged to grown runs
    only, Table 1 and the Eb ablation from the manifest."""
    write_log(tmp_path / "runs" / "bert_source" / "train.log", [(1e11, 9), (2e11, 8)])
    write_log(tmp_path / "runs" / "bert_scratch" / "train.log", [(1e12, 10), (2e12, 8), (4e12, 6)])
    write_log(tmp_path / "runs" / "bert_aki" / "train.log", [(1e12, 7), (2e12, 5)])
    write_log(tmp_path / "runs" / "bert_stack" / "train.log", [(1e12, 9), (3e12, 6)])
    os.makedirs(tmp_path / "growth")
    json.dump({"source_loss": 8.0, "grown_loss": 8.1, "max_abs_logit_diff": 3.0,
               "source_shape": "(L=2, D=64, FFN=256, heads=2)", "target_shape": "(L=2, D=128, FFN=512, heads=4)"},
              open(tmp_path / "growth" / "bert_aki.json", "w"))
    manifest = {"groups": [{"family": "bert", "scratch": "scratch", "source_run": "runs/bert_source",
                            "runs": {"scratch": "runs/bert_scratch", "AKI": "runs/bert_aki",
                                     "StackBERT": "runs/bert_stack"},
                            "charged_source": ["AKI"], "growth_reports": {"AKI": "growth/bert_aki.json"},
                            "ablation_eb": {"0": "AKI"}}]}
    json.dump(manifest, open(tmp_path / "experiment.json", "w"))
    report_cli.main([str(tmp_path), "--no-plots"])
    printed = capsys.readouterr().out
    assert "S(L=2, D=64, FFN=256, heads=2) -> T(L=2, D=128, FFN=512, heads=4)" in printed
    res = json.load(open(tmp_path / "results.json"))["bert"]
    assert res["target_loss"] == 6.0 and res["scratch_flops_to_target"] == pytest.approx(4e12)
    aki, stack = res["methods"]["AKI"], res["methods"]["StackBERT"]
    assert aki["flops_to_target"] == pytest.approx(1.5e12) and aki["saving"] == pytest.approx(1 - 1.5 / 4)
    assert aki["saving_with_source"] == pytest.approx(1 - 1.7 / 4)  # the source's 2e11 FLOPs charged
    assert stack["saving"] == stack["saving_with_source"] == pytest.approx(0.25)  # no source: nothing charged
    assert res["table1"]["AKI"]["grown_loss"] == 8.1 and res["ablation_eb"] == {"0": pytest.approx(1 - 1.5 / 4)}
