"""fp16 training throughput of ``b2b_bert_base`` (task b2b_masked_lm, full-model training)
against stock fairseq ``roberta_base`` (task masked_lm) at the same shape, on one CUDA GPU,
measured side by side in one process on the same batches; prints one JSON object.

    .venv/bin/python bench/gpu_throughput.py [--data DATA_BIN] [--precision fp16|bf16]

Each round runs one update of each configuration in alternating order; the time per update is
the median over rounds (CUDA-synchronized wall time).  Target: b2b >= 0.97x stock.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from fairseq_b2b.checkpoints import build_trainer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("B2B_DATA_BIN"), help="a fairseq data-bin (default: built-in)")
    p.add_argument("--tokens", type=int, default=512, help="tokens per sequence (default 512, the paper's)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per update (default 32)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "bf16"], help="default fp16")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA GPU"}))
        return
    if a.data is None:
        from fairseq_b2b.data import prepare_builtin
        from fairseq_b2b.data.corpus import cache_dir

        a.data = str(prepare_builtin(cache_dir() / "bench-builtin")["data_bin"])
    import logging

    logging.disable(logging.WARNING)
    common = [a.data, "--optimizer", "adam", "--lr", "1e-4", "--batch-size", str(a.batch_size), "--tokens-per-sample",
              str(a.tokens), "--max-positions", str(a.tokens), "--sample-break-mode", "none",
              "--required-batch-size-multiple", "1", "--num-workers", "0", "--seed", "1", f"--{a.precision}"]
    _, b2b, b2b_trainer = build_trainer(common + ["--task", "b2b_masked_lm", "--arch", "b2b_bert_base",
                                                  "--submodel-epochs", "0"])
    _, stock, stock_trainer = build_trainer(common + ["--task", "masked_lm", "--criterion", "masked_lm",
                                                      "--arch", "roberta_base"])
    pad = b2b.source_dictionary.pad()
    batches = []
    for b in b2b_trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False):
        if b["net_input"]["src_tokens"].shape == (a.batch_size, a.tokens) and b["net_input"]["src_tokens"].ne(pad).all():
            batches.append(b)
        if len(batches) == 4:
            break
    if not batches:
        sys.exit(f"no full {a.batch_size}x{a.tokens} batch in {a.data}")
    configs = {"b2b_bert_base": b2b_trainer, "stock_roberta_base": stock_trainer}
    times = {n: [] for n in configs}
    for r in range(a.warmup + a.rounds):
        batch = batches[r % len(batches)]
        order = list(configs) if r % 2 == 0 else list(configs)[::-1]
        for name in order:
            torch.cuda.synchronize()
            t = time.perf_counter()
            configs[name].train_step([batch])
            torch.cuda.synchronize()
            if r >= a.warmup:
                times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(t) for n, t in times.items()}
    tokens = a.batch_size * a.tokens
    ratio = med["stock_roberta_base"] / med["b2b_bert_base"]
    print(json.dumps({
        "device": torch.cuda.get_device_name(0), "precision": a.precision, "tokens_per_update": tokens,
        "time_per_update_s": {n: round(v, 5) for n, v in med.items()},
        "tokens_per_s": {n: round(tokens / v) for n, v in med.items()},
        "b2b_speed_vs_stock": round(ratio, 4), "target_met": ratio >= 0.97,
    }, indent=1))


if __name__ == "__main__":
    main()
