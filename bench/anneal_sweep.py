"""How long to anneal (--growth-anneal-updates N): train a grown BERT with several N beside
paper FPI and AKI, on the built-in corpus, and print one JSON object with the training loss
curves (mean over windows of updates) and the final validation loss of each run.

The source (b2b_bert_tiny, 2 x 64) trains --source-updates updates; it grows to 2 x 96 (3
heads, ratio 1.5, where paper FPI is not exact) and each run trains --updates updates with the
same seed, data order and learning rate (Adam, 1e-3 after 20 warm-up updates, dropout 0).

    OMP_NUM_THREADS=1 .venv/bin/python bench/anneal_sweep.py [--data DATA_BIN] [--anneal 1,25,100,200]
"""
import argparse
import json
import os
import statistics
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

from fairseq_b2b.checkpoints import train_in_process  # noqa: E402

COMMON = ["--tokens-per-sample", "64", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
          "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20", "--dropout", "0", "--attention-dropout", "0",
          "--cpu", "--no-epoch-checkpoints", "--no-save", "--log-format", "json", "--log-interval", "1", "--seed", "1"]


def losses(log: str, tag: str, key: str) -> list:
    out = []
    for line in log.splitlines():
        if line.startswith(f"INFO:{tag}:{{"):
            record = json.loads(line.split(":", 2)[2])
            if key in record:
                out.append(float(record[key]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("B2B_TEST_DATA_BIN"),
                   help="a fairseq data-bin (default: the test suite's cached built-in corpus)")
    p.add_argument("--source-updates", type=int, default=400)
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--anneal", default="1,25,100,200", help="values of --growth-anneal-updates to run")
    p.add_argument("--window", type=int, default=25, help="updates per point of the loss curves")
    a = p.parse_args()
    if a.data is None:
        from fairseq_b2b.data.corpus import cache_dir

        a.data = str(cache_dir() / "tests-v3" / "prepared" / "data-bin")
    work = tempfile.mkdtemp(prefix="b2b-anneal-")
    src_dir = os.path.join(work, "source")
    train_in_process([a.data, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert_tiny",
                      "--max-update", str(a.source_updates), "--save-dir", src_dir,
                      *[x for x in COMMON if x != "--no-save"]])
    source = os.path.join(src_dir, "checkpoint_last.pt")
    target = ["--task", "b2b_masked_lm", "--submodel-epochs", "0", "--arch", "b2b_bert_tiny",
              "--encoder-embed-dim", "96", "--encoder-attention-heads", "3", "--encoder-ffn-embed-dim", "384",
              "--max-update", str(a.updates), "--init-from-small", source, "--validate-at-start"]
    runs = {f"exact, N={n}": ["--growth-method", "fpi", "--growth-exact", "--growth-anneal-updates", n]
            for n in a.anneal.split(",")}
    runs["paper FPI"] = ["--growth-method", "fpi"]
    runs["AKI"] = ["--growth-method", "aki"]
    result = {"setup": {"source": "b2b_bert_tiny 2x64", "target": "2x96, 3 heads", "source_updates": a.source_updates,
                        "updates": a.updates, "window": a.window}, "runs": {}}
    for name, opts in runs.items():
        log = train_in_process([a.data, *target, *opts, "--save-dir", os.path.join(work, name.replace(" ", "_")),
                                *COMMON])
        train = losses(log, "train_inner", "loss")
        start = [float(line.split('"valid_loss": "')[1].split('"')[0]) for line in log.splitlines()
                 if "validation at update 0" in line and '"valid_loss"' in line]
        result["runs"][name] = {
            "valid_loss_at_start": start[0] if start else None,
            "train_loss_windows": [round(statistics.mean(train[i:i + a.window]), 4) for i in range(0, len(train), a.window)],
            "valid_loss_end": losses(log, "valid", "valid_loss")[-1],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
