"""A metric that noise cannot fake (issue 17): scratch is measured by the same first-crossing
rule as every method, a grown run without an update-0 validation that starts below the target is
"at start", scratch seeds give a noise floor, unfinished runs make a partial report, and the
plateau note is computed from the runs' losses."""
import json
import os

import pytest
from test_report import curves_of, write_log

from fairseq_b2b import report as rep
from fairseq_b2b.cli import report as report_cli

# scratch dips 0.02 bits below its final loss (7.0) before its end
DIPPING = [(0, 0, 10.0), (10, 1e12, 8.0), (20, 2e12, 6.98), (30, 3e12, 7.0)]


def test_an_exact_copy_of_a_dipping_scratch_curve_saves_nothing(tmp_path):
    write_log(tmp_path / "scratch" / "train.log", [(3e12, 7.0)], DIPPING)
    write_log(tmp_path / "copy" / "train.log", [(3e12, 7.0)], DIPPING)
    out = rep.savings(curves_of(tmp_path, ("scratch", "copy")), "scratch", {"copy": 0.0}, grown=set())
    crossing = 1e12 + (8.0 - 7.0) / (8.0 - 6.98) * 1e12  # scratch's own first crossing, not its last point
    copy = out["methods"]["copy"]
    assert abs(copy["saving"]) < 1e-9 and copy["flops_to_target"] == out["scratch_flops_to_target"]
    assert out["scratch_flops_to_target"] == pytest.approx(crossing) and out["scratch_final_flops"] == 3e12
    assert out["methods"]["scratch"]["saving"] == 0.0


def test_no_update_0_validation_and_a_first_point_below_the_target_is_at_start(tmp_path):
    write_log(tmp_path / "scratch" / "train.log", [(4e12, 5.0)], [(0, 0, 10.0), (10, 2e12, 7.0), (20, 4e12, 5.0)])
    write_log(tmp_path / "blind" / "train.log", [(1e12, 4.9)], [(10, 1e12, 4.9), (20, 2e12, 4.5)])
    write_log(tmp_path / "above" / "train.log", [(1e12, 6.0)], [(10, 1e12, 6.0), (20, 2e12, 4.0)])
    write_log(tmp_path / "below" / "train.log", [(1e12, 4.6)], [(0, 0, 4.9), (10, 1e12, 4.6)])
    out = rep.savings(curves_of(tmp_path, ("scratch", "blind", "above", "below")), "scratch",
                      {"blind": 1e12, "above": 1e12, "below": 1e12})
    blind, above, below = (out["methods"][n] for n in ("blind", "above", "below"))
    assert blind["reached_at_start"] is True and blind["at_start_reason"] == "no update-0 validation"
    assert blind["saving"] is None and blind["flops_to_target"] is None and blind["first_valid_loss"] == 4.9
    assert below["reached_at_start"] is True and below["at_start_reason"] == "update-0 loss at or below target"
    # no update-0 record but its first point is above the target: measured as usual
    assert above["reached_at_start"] is False and above["saving"] == pytest.approx(1 - 1.5 / 4)
    assert out["at_start"] == ["below", "blind"] and out["conditions"]["nobody_at_start"] is False
    row = next(line for line in rep.markdown_table(out).splitlines() if line.startswith("| blind |"))
    assert "at start (no update-0 validation)" in row and "%" not in row


def _scratch_seeds(root, finals):
    """Scratch seeds sharing their curve up to 2e12 (6.0), each ending at 3e12 on its final loss."""
    for seed, final in enumerate(finals, 1):
        write_log(root / f"s{seed}" / "scratch" / "train.log", [(3e12, final)],
                  [(0, 0, 10.0), (10, 1e12, 8.0), (20, 2e12, 6.0), (30, 3e12, final)])


def test_noise_floor_from_three_scratch_seeds_flags_a_saving_within_noise(tmp_path):
    finals = (5.0, 5.2, 5.5)
    _scratch_seeds(tmp_path, finals)
    per_seed = {}
    for seed, final in enumerate(finals, 1):
        root = tmp_path / f"s{seed}"
        # "good" reaches each seed's target at 1.5e12 (saving 0.5); "weak" at 1.5e12, 1.5e12, 2.7e12 (0.1)
        write_log(root / "good" / "train.log", [(1.5e12, final)], [(0, 0, 9.0), (10, 1.5e12, final), (20, 3e12, 4.0)])
        weak = 2.7e12 if seed == 3 else 1.5e12
        write_log(root / "weak" / "train.log", [(weak, final)], [(0, 0, 9.0), (10, weak, final), (20, 3e12, 4.0)])
        per_seed[seed] = curves_of(root, ("scratch", "good", "weak"))
    out = rep.savings_over_seeds(per_seed, "scratch", {"good": 0.0, "weak": 0.0})
    # seed i against seed j's target (all references 3e12): only a lower-ending seed reaches a higher target
    expected = {(1, 2): 1 - 2.8 / 3, (1, 3): 1 - 2.5 / 3, (2, 3): 1 - 2.625 / 3}
    pairs = {(p["seed"], p["against"]): p["saving"] for p in out["noise_pairs"]}
    assert len(pairs) == 6 and all(pairs[k] == pytest.approx(v) for k, v in expected.items())
    assert pairs[(2, 1)] is None and pairs[(3, 1)] is None and pairs[(3, 2)] is None
    assert out["noise_floor"] == pytest.approx(1 / 6)
    good, weak = out["methods"]["good"], out["methods"]["weak"]
    assert good["saving"] == pytest.approx(0.5) and good["above_noise"] is True
    assert weak["saving"] == pytest.approx((0.5 + 0.5 + 0.1) / 3)
    assert weak["saving"] > out["noise_floor"]  # the mean clears the floor ...
    assert weak["above_noise"] is False  # ... but seed 3 does not: within noise
    assert out["methods"]["scratch"]["above_noise"] is None
    table = rep.markdown_table(out)
    assert "noise floor: 16.7%" in table
    assert "(within noise)" in next(line for line in table.splitlines() if line.startswith("| weak |"))
    assert "(within noise)" not in next(line for line in table.splitlines() if line.startswith("| good |"))


def test_one_scratch_seed_leaves_the_noise_floor_unknown(tmp_path):
    _scratch_seeds(tmp_path, (5.0,))
    write_log(tmp_path / "s1" / "good" / "train.log", [(1.5e12, 5.0)], [(0, 0, 9.0), (10, 1.5e12, 5.0)])
    out = rep.savings(curves_of(tmp_path / "s1", ("scratch", "good")), "scratch", {"good": 0.0})
    assert out["noise_floor"] is None and out["methods"]["good"]["above_noise"] is None
    assert "noise floor: unknown (one scratch seed)" in rep.markdown_table(out)
    scratch = curves_of(tmp_path / "s1", ("scratch",))["scratch"]
    assert rep.noise_floor({1: scratch})[0] is None
    assert rep.noise_floor({1: scratch, 2: scratch})[0] == 0.0  # identical seeds: no positive pairwise saving


def test_a_report_over_an_unfinished_scratch_is_partial_in_log_mode(tmp_path, capsys):
    write_log(tmp_path / "scratch" / "train.log", [(2e12, 6.0)], [(0, 0, 10.0), (10, 2e12, 6.0)], done=False)
    write_log(tmp_path / "fast" / "train.log", [(1e12, 6.0)], [(0, 0, 8.0), (10, 1e12, 5.0)])
    logs = [str(tmp_path / n / "train.log") for n in ("scratch", "fast")]
    report_cli.main(logs + ["--output", str(tmp_path / "out"), "--no-plots"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("PARTIAL REPORT") and "scratch unfinished (scratch)" in first
    assert first.endswith("unfinished: scratch")
    results = json.load(open(tmp_path / "out" / "results.json"))
    assert results["partial"] is True and results["unfinished"] == ["scratch"]
    assert results["runs"]["partial"] is True and results["runs"]["unfinished_scratch"] == ["scratch"]
    with open(tmp_path / "scratch" / "train.log", "a") as f:
        f.write("INFO:fairseq_cli.train:done training in 3.0 seconds\n")
    report_cli.main(logs + ["--output", str(tmp_path / "out"), "--no-plots"])
    assert "PARTIAL" not in capsys.readouterr().out
    results = json.load(open(tmp_path / "out" / "results.json"))
    assert results["partial"] is False and results["unfinished"] == []


def test_a_record_after_done_training_means_a_resumed_run_still_training(tmp_path):
    path = tmp_path / "run" / "train.log"
    write_log(path, [(1e12, 6.0)], [(10, 1e12, 6.0)])
    assert rep.read_curve(str(path)).finished is True
    with open(path, "a") as f:
        f.write('INFO:valid:{"valid_loss": "5.9", "valid_num_updates": "20", "valid_train_flops": "2e12"}\n')
    assert rep.read_curve(str(path)).finished is False


def _experiment(root, finals, source_final, done=()):
    """An experiment directory: source, scratch, AKI (grown) and StackBERT ending at ``finals``;
    runs without a "done training" line unless named in ``done`` (a DONE marker, as the runner writes)."""
    write_log(root / "runs" / "bert_source" / "train.log", [(2e11, source_final)],
              [(10, 1e11, 8.5), (20, 2e11, source_final)])
    for run, start, final in (("bert_scratch", 10.0, finals[0]), ("bert_aki", 7.9, finals[1]),
                              ("bert_stack", 10.0, finals[2])):
        write_log(root / "runs" / run / "train.log", [(4e12, final)],
                  [(0, 0, start), (10, 2e12, 7.6), (20, 4e12, final)], done=False)
    for run in done:
        (root / "runs" / run / "DONE").write_text('{"seconds": 1.0}')
    manifest = {"groups": [{"family": "bert", "name": "main", "scratch": "scratch", "source_run": "runs/bert_source",
                            "title": "BERT", "runs": {"scratch": {"1": "runs/bert_scratch"},
                                                      "AKI": {"1": "runs/bert_aki"},
                                                      "StackBERT": {"1": "runs/bert_stack"}},
                            "sources": {"AKI": "runs/bert_source"}, "charged_source": ["AKI"]}]}
    json.dump(manifest, open(root / "experiment.json", "w"))


def test_a_report_over_an_unfinished_scratch_is_partial_in_experiment_mode(tmp_path, capsys):
    _experiment(tmp_path, (7.0, 6.9, 7.1), 7.5, done=("bert_aki", "bert_stack"))
    report_cli.main([str(tmp_path), "--no-plots"])
    printed = capsys.readouterr().out
    first = printed.splitlines()[0]
    assert first.startswith("PARTIAL REPORT") and "scratch unfinished (bert_scratch)" in first
    assert first.endswith("unfinished: bert_scratch")
    results = json.load(open(tmp_path / "results.json"))
    assert results["partial"] is True and results["unfinished"] == ["bert_scratch"]
    assert results["bert"]["partial"] is True and results["bert"]["unfinished_scratch"] == ["bert_scratch"]
    (tmp_path / "runs" / "bert_scratch" / "DONE").write_text('{"seconds": 1.0}')
    report_cli.main([str(tmp_path), "--no-plots"])
    assert "PARTIAL" not in capsys.readouterr().out
    results = json.load(open(tmp_path / "results.json"))
    assert results["partial"] is False and results["unfinished"] == [] and results["bert"]["partial"] is False


def test_the_plateau_note_is_computed_from_the_runs(tmp_path, capsys):
    # every run (source 7.36 included) ends between 7.32 and 7.38, scratch 0.01 below the source
    _experiment(tmp_path, (7.35, 7.32, 7.38), 7.36, done=("bert_scratch", "bert_aki", "bert_stack"))
    report_cli.main([str(tmp_path), "--no-plots"])
    printed = capsys.readouterr().out
    assert "every BERT run ended within 0.06 bits (7.32-7.38" in printed and "masked-LM plateau" in printed
    assert "conditions for a convergence comparison: scratch ends 0.010 bits below the source" in printed
    assert "NOT met" in printed
    res = json.load(open(tmp_path / "results.json"))["bert"]
    assert res["plateau"] is True and "masked-LM plateau" in res["notes"][0]
    assert res["conditions"]["scratch_clearly_better"] is False
    assert res["conditions"]["scratch_below_source_bits"] == pytest.approx(0.01)
    assert res["conditions"]["nobody_at_start"] is True


@pytest.mark.parametrize("finals, source_final", [((7.35, 7.32, 7.60), 7.36),  # spread 0.28
                                                  ((7.0, 6.95, 7.05), 7.5)])  # scratch clearly better
def test_no_plateau_note_when_the_runs_spread_or_scratch_is_clearly_better(tmp_path, capsys, finals, source_final):
    _experiment(tmp_path, finals, source_final, done=("bert_scratch", "bert_aki", "bert_stack"))
    report_cli.main([str(tmp_path), "--no-plots"])
    assert "masked-LM plateau" not in capsys.readouterr().out
    res = json.load(open(tmp_path / "results.json"))["bert"]
    assert res["plateau"] is False and res["notes"] == []
    clearly = source_final - finals[0] >= 0.1
    assert res["conditions"]["scratch_clearly_better"] is clearly and (res["degenerate"] is None) is clearly


def test_no_plateau_note_without_a_source_loss(tmp_path):
    write_log(tmp_path / "scratch" / "train.log", [(4e12, 7.35)], [(0, 0, 10.0), (10, 4e12, 7.35)])
    write_log(tmp_path / "aki" / "train.log", [(4e12, 7.33)], [(0, 0, 8.0), (10, 4e12, 7.33)])
    out = rep.savings(curves_of(tmp_path, ("scratch", "aki")), "scratch", {"aki": 0.0})
    assert out["notes"] == [] and out["conditions"]["scratch_clearly_better"] is None
    assert "scratch vs source: unknown" in rep.markdown_table(out)
