"""b2b-glue: the GLUE metrics on known values, every task's TSV layout, and the whole path on a
real binary task built offline from the built-in corpus (Milton's Paradise Lost vs Shakespeare's
plays, in SST-2's layout): the ``small_bert`` fixture (pre-trained on the built-in corpus), grown
with b2b-grow to b2b_bert_tiny_wide, is fine-tuned over a small grid with fairseq's
sentence_prediction task and beats the majority class on dev; the results table is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fairseq_b2b.eval import metrics
from fairseq_b2b.eval.glue import TASKS, parse_tasks, read_tsv, split_files
from fairseq_b2b.eval.glue import run as main

# ------------------------------------------------------------------------------ metrics


def test_metrics_on_known_values():
    y = [1, 1, 1, 0, 0, 0, 1, 0]
    p = [1, 0, 1, 0, 0, 1, 1, 0]  # TP 3, FN 1, FP 1, TN 3
    assert metrics.accuracy(p, y) == 0.75
    assert metrics.f1(p, y) == pytest.approx(0.75)
    assert metrics.matthews(p, y) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))  # 0.5
    # scikit-learn's documented example: matthews_corrcoef([+1,+1,+1,-1], [+1,-1,+1,+1]) = -0.333...
    assert metrics.matthews([1, -1, 1, 1], [1, 1, 1, -1]) == pytest.approx(-1 / 3)
    assert metrics.matthews([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # constant predictions
    assert metrics.f1([0, 0], [0, 0]) == 0.0
    x, z = [1, 2, 3, 4, 5], [2, 4, 5, 4, 5]
    assert metrics.pearson(x, z) == pytest.approx(6 / np.sqrt(60))  # 0.7746
    # ties: z ranks 1, 2.5, 4.5, 2.5, 4.5
    assert list(metrics.rankdata(z)) == [1, 2.5, 4.5, 2.5, 4.5]
    assert metrics.spearman(x, z) == pytest.approx(7 / np.sqrt(90))  # 0.7379
    assert metrics.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert np.isnan(metrics.pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        metrics.accuracy([1, 0], [1])


def test_metrics_match_scipy_and_sklearn_when_installed():
    stats = pytest.importorskip("scipy.stats")
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
        assert metrics.matthews(p, y) == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-12)
        yb, pb = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
        assert metrics.f1(pb, yb) == pytest.approx(skm.f1_score(yb, pb), abs=1e-12)
        a, b = rng.integers(0, 6, 100).astype(float), rng.normal(size=100).round(1)  # many ties
        assert metrics.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
        assert metrics.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)


# ------------------------------------------------------------------------------ TSV layouts

def _write(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in ([header] if header else []) + rows), encoding="utf-8")


def test_every_glue_tsv_layout_gives_its_texts_and_labels(tmp_path):
    """One row per task as the GLUE download script writes it (fairseq's column choices)."""
    cases = {
        "CoLA": (None, ["gj04", "1", "", "Our friends won't buy this analysis."],
                 (["Our friends won't buy this analysis."], "1")),
        "SST-2": (["sentence", "label"], ["it 's a charming journey .", "1"], (["it 's a charming journey ."], "1")),
        "MRPC": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                 ["1", "702876", "702977", "He said.", "He told."], (["He said.", "He told."], "1")),
        "QQP": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                ["5", "11", "12", "Why?", "How?", "0"], (["Why?", "How?"], "0")),
        "STS-B": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
                   "score"], ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A man plays.",
                              "A man is playing.", "4.500"], (["A man plays.", "A man is playing."], repr(0.9))),
        "MNLI": ([f"c{i}" for i in range(16)], ["0", "1", "2", "g", "(", "(", "(", "(", "The premise.", "A hypothesis.",
                                                "neutral", "neutral", "neutral", "neutral", "neutral", "neutral"],
                 (["The premise.", "A hypothesis."], "neutral")),
        "QNLI": (["index", "question", "sentence", "label"], ["0", "What?", "This.", "not_entailment"],
                 (["What?", "This."], "not_entailment")),
        "RTE": (["index", "sentence1", "sentence2", "label"], ["0", "A.", "B.", "entailment"],
                (["A.", "B."], "entailment")),
    }
    for task, (header, row, expected) in cases.items():
        spec = TASKS[task]
        path = tmp_path / task / "dev.tsv"
        _write(path, header, [row, ["a row with one column"]])
        rows, skipped = read_tsv(path, spec)
        assert rows == [expected], task
        assert skipped["bad_columns"] == 1, task
    mnli = TASKS["MNLI"]
    assert split_files(mnli) == {"train": "train", "valid": "dev_matched", "valid1": "dev_mismatched"}
    # an unknown label is skipped and counted; a file with nothing usable is a one-line error
    path = tmp_path / "SST-2" / "train.tsv"
    _write(path, ["sentence", "label"], [["good .", "1"], ["odd .", "7"]])
    rows, skipped = read_tsv(path, TASKS["SST-2"])
    assert len(rows) == 1 and skipped["bad_label"] == 1
    _write(path, ["sentence", "label"], [["odd .", "7"]])
    with pytest.raises(Exception, match="no usable rows"):
        read_tsv(path, TASKS["SST-2"])
    assert [s.name for s in parse_tasks("sst-2,MNLI,stsb")] == ["SST-2", "MNLI", "STS-B"]


# ------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def grown_bert(small_bert, bpe_corpus, tmp_path_factory):
    """small_bert (b2b_bert_tiny, 2 x 64) grown with AKI into b2b_bert_tiny_wide (2 x 128)."""
    grown = str(tmp_path_factory.mktemp("grown") / "grown_tiny_wide.pt")
    from fairseq_b2b.cli.grow import main as grow_main

    grow_main(["--source", str(small_bert), "--arch", "b2b_bert_tiny_wide", "--output", grown,
               "--data", str(bpe_corpus["data_bin"])])
    return grown


@pytest.fixture(scope="module")
def milton_task(data_bin, tmp_path_factory):  # data_bin: the built-in corpus is there (or skipped)
    glue_dir = tmp_path_factory.mktemp("glue")
    main(["builtin-task", "--output", str(glue_dir), "--train-per-class", "600", "--dev-per-class", "200"])
    return glue_dir


@pytest.fixture(scope="module")
def sweep(milton_task, grown_bert, bpe_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("glue_out")
    report = main(["sweep", "--checkpoint", grown_bert, "--glue-dir", str(milton_task), "--tasks", "MILTON",
                   "--output", str(out), "--grid", "small", "--cpu", "--keep-checkpoints",
                   "--codes", str(bpe_corpus["codes"]), "--dict", str(bpe_corpus["dict"])])
    return report, out


def test_builtin_task_is_real_balanced_sst2_layout(milton_task):
    for split, n in (("train", 1200), ("dev", 400)):
        lines = (milton_task / "MILTON" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "sentence\tlabel" and len(lines) == n + 1
        rows = [line.split("\t") for line in lines[1:]]
        assert all(len(r) == 2 and r[1] in ("0", "1") and len(r[0].split()) >= 5 for r in rows)
        assert sum(r[1] == "1" for r in rows) == n // 2
    train = set((milton_task / "MILTON" / "train.tsv").read_text().splitlines()[1:])
    dev = set((milton_task / "MILTON" / "dev.tsv").read_text().splitlines()[1:])
    assert not train & dev


def test_grown_bert_fine_tunes_above_majority_and_writes_the_table(sweep, grown_bert):
    report, out = sweep
    best = report["best"]["MILTON"]
    dev = best["dev"]["dev"]
    print(f"MILTON dev accuracy {dev['acc']:.3f} (majority {dev['majority_acc']:.3f}) at lr {best['lr']:g}; "
          f"grid: " + ", ".join(f"lr {r['lr']:g}: {r['score']:.3f}" for r in report["runs"]))
    assert dev["examples"] == 400 and dev["majority_acc"] == 0.5
    assert dev["acc"] > dev["majority_acc"] + 0.1
    assert len(report["runs"]) == 2 and {r["lr"] for r in report["runs"]} == {1e-4, 3e-4}
    for r in report["runs"]:  # fairseq's own dev accuracy of the best epoch agrees with ours
        assert r["fairseq_best"] == pytest.approx(100 * r["score"], abs=0.051)
    md = (out / "results.md").read_text()
    assert "| MILTON | acc |" in md and "Full grid" in md
    saved = json.loads((out / "results.json").read_text())
    assert saved["best"]["MILTON"]["score"] == best["score"] and len(saved["runs"]) == 2
    # the grown checkpoint was restored (not a fresh model) and got a classification head
    run = out / "runs" / "MILTON" / "lr0.0003_ep3_bs32"
    log = (run / "train.log").read_text()
    assert f"Loaded checkpoint {grown_bert}" in log and "Overwriting classification_heads" in log
    key = "encoder.sentence_encoder.embed_tokens.weight"
    grown = torch.load(grown_bert, map_location="cpu", weights_only=False)["model"][key]
    tuned = torch.load(run / "checkpoint_best.pt", map_location="cpu", weights_only=False)["model"][key]
    assert torch.nn.functional.cosine_similarity(grown.flatten(), tuned.flatten(), dim=0) > 0.9


def test_rerun_skips_finished_settings(sweep, milton_task, grown_bert, bpe_corpus, capsys):
    _, out = sweep
    results = sorted((out / "runs").glob("*/*/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    from fairseq_b2b.eval.glue import main as console_main

    # the console-script entry point returns None (its return value becomes the exit status);
    # without --codes/--dict they come from the checkpoint's pre-training data-bin
    assert console_main(["sweep", "--checkpoint", grown_bert, "--glue-dir", str(milton_task), "--tasks", "MILTON",
                         "--output", str(out), "--grid", "small", "--cpu", "--keep-checkpoints"]) is None
    assert [p.stat().st_mtime_ns for p in results] == stamps
    assert "MILTON-bin ready" in capsys.readouterr().out


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value.code)
    assert "\n" not in msg and msg.startswith("b2b-glue: error: "), msg
    return msg


def test_bad_input_is_one_line(milton_task, grown_bert, bpe_corpus, tmp_path, capsys):
    common = ["--glue-dir", str(milton_task), "--output", str(tmp_path / "o"), "--codes", str(bpe_corpus["codes"])]
    wrong_dict = tmp_path / "dict.txt"
    wrong_dict.write_text("".join(bpe_corpus["dict"].read_text().splitlines(keepends=True)[:-1]))
    cases = [
        (["sweep", "--checkpoint", grown_bert, "--tasks", "SST-9", *common], "unknown task"),
        (["sweep", "--checkpoint", grown_bert, "--tasks", "RTE", *common], "RTE/train.tsv not found"),
        (["sweep", "--checkpoint", str(tmp_path / "none.pt"), "--tasks", "MILTON", *common], "does not exist"),
        (["sweep", "--checkpoint", grown_bert, "--tasks", "MILTON", "--dict", str(wrong_dict), *common],
         "is not the dictionary"),
        (["sweep", "--checkpoint", grown_bert, "--tasks", "MILTON", "--lrs", ",", *common], "--lrs is empty"),
        (["table", "--output", str(tmp_path / "nothing")], "no runs"),
    ]
    for argv, needle in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert needle in one_line_error(e)
    # as the command ends: one line on stderr, no traceback (conftest.exit_line, alone)
    from conftest import exit_line

    from fairseq_b2b.eval.glue import main as console_main

    line = exit_line(console_main, ["sweep", "--checkpoint", grown_bert, "--tasks", "QQP", *common], capsys, alone=True)
    assert line.startswith("b2b-glue: error: ")
