"""fairseq's own ``fairseq-eval-lm``, plus an exact record of what it scored.

    python -m fairseq_b2b.eval._fairseq_eval_lm RECORD.json <fairseq-eval-lm arguments>

runs ``fairseq_cli.eval_lm.cli_main()`` unchanged (same data loading, blocking, context
window and ``SequenceScorer``) and writes RECORD.json with the summed negative log-likelihood
in nats of every token fairseq scored, accumulated in float64 from the per-token scores,
the number of such tokens, and fairseq's own result (``loss`` in base 2, ``perplexity``).

fairseq itself only logs ``Loss (base 2)`` rounded to 4 decimals and accumulates in float32;
the record is exact, and ``b2b-eval-lm`` checks that the two agree.
"""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m fairseq_b2b.eval._fairseq_eval_lm RECORD.json <fairseq-eval-lm args>")
    record_path, argv = sys.argv[1], sys.argv[2:]
    import torch

    import fairseq_b2b  # noqa: F401  (safe globals; --user-dir imports the plugin again, harmlessly)
    from fairseq_cli import eval_lm as fairseq_eval_lm

    record = {"nll_nats": 0.0, "tokens": 0, "nonfinite_tokens": 0, "sequences": 0}
    state = {"remove_bos": False}

    class RecordingScorer(fairseq_eval_lm.SequenceScorer):
        def generate(self, models, sample, **kwargs):
            hypos = super().generate(models, sample, **kwargs)
            for hypo in hypos:
                scores = hypo[0]["positional_scores"].double()
                if state["remove_bos"]:  # as eval_lm does with --add-bos-token
                    scores = scores[1:]
                finite = torch.isfinite(scores)
                record["nll_nats"] -= float(scores[finite].sum())
                record["tokens"] += int(finite.sum())
                record["nonfinite_tokens"] += int((~finite).sum())
                record["sequences"] += 1
            return hypos

    original_eval_lm = fairseq_eval_lm.eval_lm

    def recording_eval_lm(*args, **kwargs):
        state["remove_bos"] = bool(kwargs.get("remove_bos_token", False))
        result = original_eval_lm(*args, **kwargs)
        record["fairseq_loss_base2"] = float(result["loss"])
        record["fairseq_perplexity"] = float(result["perplexity"])
        return result

    fairseq_eval_lm.SequenceScorer = RecordingScorer
    fairseq_eval_lm.eval_lm = recording_eval_lm
    sys.argv = ["fairseq-eval-lm", *argv]
    fairseq_eval_lm.cli_main()
    if "fairseq_loss_base2" not in record:
        raise SystemExit("fairseq-eval-lm finished without evaluating anything")
    tmp = record_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, record_path)


if __name__ == "__main__":
    main()
