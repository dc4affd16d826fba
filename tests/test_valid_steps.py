"""``--validate-at-start`` scores exactly the batches of fairseq's own validation, also under
``--max-valid-steps`` (issue 17, 1; tasks/two_stage.py, tasks/evaluation.py)."""
import json
import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")

import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import train_in_process  # noqa: E402
from fairseq_b2b.tasks.two_stage import TwoStageMixin  # noqa: E402



def _records(log, tag):
    return [json.loads(line.split(":", 2)[2]) for line in log.splitlines() if line.startswith(f"INFO:{tag}:{{")]


@pytest.mark.parametrize("task,arch", [("b2b_masked_lm", "b2b_bert_tiny"), ("b2b_language_modeling", "b2b_gpt_tiny")])
def test_update_0_scores_the_batches_of_fairseq_validation(small_bin, tmp_path, monkeypatch, task, arch):
    """--max-valid-steps 2: fairseq scores batches 0, 1, 2 (it stops at i > 2); update 0 scores the
    same batches (same tokens, same masks) and, at the same weights (--lr 0), the same loss."""
    scored, at_start = [], []
    valid_step, validate_at_start = TwoStageMixin.valid_step, TwoStageMixin.validate_at_start

    def spy_valid_step(self, sample, model, criterion):
        scored.append((bool(at_start), sample["net_input"]["src_tokens"].clone(), sample["target"].clone()))
        return valid_step(self, sample, model, criterion)

    def spy_validate_at_start(self, *args):
        at_start.append(True)
        try:
            return validate_at_start(self, *args)
        finally:
            at_start.clear()

    monkeypatch.setattr(TwoStageMixin, "valid_step", spy_valid_step)
    monkeypatch.setattr(TwoStageMixin, "validate_at_start", spy_validate_at_start)
    log = train_in_process([small_bin, "--task", task, "--arch", arch, "--validate-at-start", "--max-valid-steps", "2",
                            "--batch-size", "2", "--tokens-per-sample", "32", "--required-batch-size-multiple", "1",
                            "--optimizer", "adam", "--lr", "0", "--max-update", "1", "--cpu", "--num-workers", "0",
                            "--log-format", "json", "--log-interval", "1", "--save-dir", str(tmp_path),
                            "--no-save"])
    start = [s[1:] for s in scored if s[0]]
    interval = [s[1:] for s in scored if not s[0]]
    assert len(interval) == 3  # fairseq's rule: batch i while i <= --max-valid-steps
    assert len(start) == len(interval)
    assert all(torch.equal(a, b) for x, y in zip(start, interval) for a, b in zip(x, y))
    at_0 = next(json.loads(line.split(" | ", 1)[1]) for line in log.splitlines()
                if "validation at update 0" in line)
    fairseq_valid = _records(log, "valid")[-1]
    assert int(fairseq_valid["valid_num_updates"]) == 1
    assert abs(float(at_0["valid_loss"]) - float(fairseq_valid["valid_loss"])) <= 5e-4 + 1e-9  # fairseq rounds to 3
