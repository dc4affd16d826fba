"""b2b-experiment's llama family (issue 19, item 5): tiny b2b_llama shapes trained from scratch on
the built-in corpus, grown in width with grouped-query attention (S(4,64), heads 4/2 -> T(4,96),
heads 6/3): scratch, DirectCopy, FPI, exact FPI, AKI and bert2BERT, as dry-run commands that
fairseq parses; a preset without LLaMA shapes is refused in one line."""
import os
import shlex
import subprocess

import pytest

from fairseq_b2b import experiment as ex
from fairseq_b2b.cli import experiment as ex_cli
from fairseq_b2b.experiment.presets import EXACT_FPI

LLAMA_LABELS = ["source", "scratch", "DirectCopy", "FPI", EXACT_FPI, "AKI", "bert2BERT"]


def _opt(argv, name):
    return argv[argv.index(name) + 1]


def test_dry_run_of_the_llama_family(data_bin, tmp_path, capsys):
    ex_cli.main(["--preset", "cpu", "--output", str(tmp_path / "exp"), "--data", data_bin, "--families", "llama",
                 "--dry-run"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    runs = ex.plan(ex.PRESETS["cpu"], ("llama",), ex.updates_per_epoch(data_bin, ex.PRESETS["cpu"], 1, ("llama",)))
    assert [r.label for r in runs] == LLAMA_LABELS and len(lines) == len(runs)
    by_label = {}
    for line, run in zip(lines, runs):
        assert subprocess.run(["bash", "-n", "-c", line]).returncode == 0
        argv = shlex.split(line.split(" && ", 2)[2])
        assert argv[0] == "b2b-train" and argv[1] == os.path.abspath(data_bin) and f"runs/{run.name}" in line
        assert _opt(argv, "--task") == "b2b_language_modeling" and _opt(argv, "--arch") == "b2b_llama"
        assert "--share-decoder-input-output-embed" in argv
        by_label[run.label] = argv
    assert (_opt(by_label["source"], "--decoder-embed-dim"), _opt(by_label["source"], "--decoder-kv-heads")) == ("64", "2")
    for label in LLAMA_LABELS[1:]:
        argv = by_label[label]
        assert (_opt(argv, "--decoder-embed-dim"), _opt(argv, "--decoder-attention-heads"),
                _opt(argv, "--decoder-kv-heads"), _opt(argv, "--decoder-ffn-embed-dim")) == ("96", "6", "3", "256")
        assert ("--init-from-small" in argv) == (label != "scratch")
    assert _opt(by_label["DirectCopy"], "--growth-method") == "direct_copy"
    assert "--growth-exact" in by_label[EXACT_FPI] and "--growth-exact" not in by_label["FPI"]
    assert int(_opt(by_label[EXACT_FPI], "--growth-anneal-updates")) >= 1
    assert _opt(by_label["bert2BERT"], "--growth-method") == "aki" and _opt(by_label["bert2BERT"], "--submodel-epochs") == "1"
    assert not (tmp_path / "exp" / "runs").exists()


@pytest.mark.parametrize("preset", ["cpu", "cpu-full"])
def test_every_llama_run_parses_with_fairseq(data_bin, preset):
    from fairseq_b2b.checkpoints import parse_training_args

    runs = ex.plan(ex.PRESETS[preset], ("llama",), {"llama": 100})
    assert {r.label for r in runs} == set(LLAMA_LABELS)
    assert len({r.name for r in runs}) == len(runs)
    for run in runs:
        args = parse_training_args([data_bin, *run.argv, "--save-dir", "unused"])
        assert args.arch == "b2b_llama" and args.validate_at_start and int(args.total_num_update) == int(args.max_epoch) * 100


def test_the_manifest_names_the_key_value_heads():
    from fairseq_b2b.experiment.manifest import shape_label

    preset = ex.PRESETS["cpu"]
    assert shape_label(preset.llama_target, "llama") == "(L=4, D=96, FFN=256, heads=6, kv-heads=3)"


def test_a_preset_without_llama_shapes_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        ex_cli.main(["--preset", "gpu", "--output", str(tmp_path / "exp"), "--families", "llama", "--dry-run"])
    assert "has no LLaMA shapes" in str(e.value.code) and "\n" not in str(e.value.code)
    assert not (tmp_path / "exp").exists()
