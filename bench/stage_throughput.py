"""Time per update of stage 1 (averaged over the sub-model depths), stage 2 and stock fairseq
``masked_lm`` (arch ``roberta``, same shapes), measured side by side in one process on the
same batches; prints one JSON object. Times are process CPU time per update (one thread; other jobs on a
shared machine inflate wall time, which is reported too).

    OMP_NUM_THREADS=1 .venv/bin/python bench/stage_throughput.py [--data DATA_BIN]   (default: the built-in corpus)

Each round runs one update of every configuration in a rotating order (so drift and load from
other processes hit all of them alike); the reported time is the median over rounds. FLOPs per
update are the task's own metered FLOPs (fairseq_b2b.flops) of the timed updates.
Targets (issue 3): stage-1/stage-2 time ratio within 10% of the FLOPs ratio; stage 2 at least
0.97x the speed of stock fairseq.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from fairseq_b2b.checkpoints import build_trainer  # noqa: E402


def full_batches(trainer, task, batch_size, tokens, limit):
    pad = task.source_dictionary.pad()
    out = []
    for b in trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False):
        src = b["net_input"]["src_tokens"]
        if src.shape == (batch_size, tokens) and src.ne(pad).all():
            out.append(b)
        if len(out) == limit:
            break
    if not out:
        sys.exit(f"no full {batch_size}x{tokens} batch in the data-bin: use a larger corpus")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("B2B_DATA_BIN"),
                   help="a fairseq data-bin (default: the built-in corpus, prepared once into the cache)")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128, help="tokens per sequence")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per update")
    p.add_argument("--lb", type=int, default=2, help="--submodel-layers")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    if a.data is None:
        from fairseq_b2b.data import prepare_builtin
        from fairseq_b2b.data.corpus import cache_dir

        a.data = str(prepare_builtin(cache_dir() / "bench-builtin")["data_bin"])
    if not os.path.exists(os.path.join(a.data, "dict.txt")):
        sys.exit(f"no data-bin at {a.data}: pass --data")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import logging

    logging.disable(logging.WARNING)

    shape = ["--encoder-layers", str(a.layers), "--encoder-embed-dim", str(a.dim), "--encoder-ffn-embed-dim",
             str(4 * a.dim), "--encoder-attention-heads", str(a.heads), "--max-positions", str(a.tokens)]
    common = [a.data, "--optimizer", "adam", "--lr", "1e-4", "--batch-size", str(a.batch_size), "--tokens-per-sample",
              str(a.tokens), "--sample-break-mode", "none", "--required-batch-size-multiple", "1", "--cpu",
              "--num-workers", "0", "--seed", "1"] + shape
    _, b2b, b2b_trainer = build_trainer(common + ["--task", "b2b_masked_lm", "--arch", "b2b_bert", "--submodel-epochs",
                                                  "1", "--submodel-layers", str(a.lb), "--max-epoch", "2"])
    _, stock, stock_trainer = build_trainer(common + ["--task", "masked_lm", "--criterion", "masked_lm", "--arch",
                                                      "roberta"])
    batches = full_batches(b2b_trainer, b2b, a.batch_size, a.tokens, 4)
    subs = b2b._sampler.submodels
    update_of = {s: next(u for u in range(10_000) if b2b._sampler.sample(u) == s) for s in subs}

    def stage1(sub):
        def run(batch):
            b2b.begin_epoch(1, b2b_trainer.get_model())
            b2b_trainer.set_num_updates(update_of[sub])
            before = b2b.train_flops
            b2b_trainer.train_step([batch])
            return b2b.train_flops - before
        return run

    def stage2(batch):
        b2b.begin_epoch(2, b2b_trainer.get_model())
        before = b2b.train_flops
        b2b_trainer.train_step([batch])
        return b2b.train_flops - before

    def stock_step(batch):
        stock_trainer.train_step([batch])
        return None

    configs = {f"stage1_depth{s.depth}": stage1(s) for s in subs}
    configs["stage2"] = stage2
    configs["stock_masked_lm"] = stock_step
    names = list(configs)
    times = {n: [] for n in names}  # process CPU time: robust to other jobs time-slicing the machine
    walls = {n: [] for n in names}
    flops = {n: [] for n in names}
    for r in range(a.warmup + a.rounds):
        batch = batches[r % len(batches)]
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            wall, cpu = time.perf_counter(), time.process_time()
            f = configs[n](batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if r >= a.warmup:
                times[n].append(cpu)
                walls[n].append(wall)
                if f is not None:
                    flops[n].append(f)

    med = {n: statistics.median(t) for n, t in times.items()}
    med_wall = {n: statistics.median(t) for n, t in walls.items()}
    stage1_names = [n for n in names if n.startswith("stage1_")]
    t1 = sum(med[n] for n in stage1_names) / len(stage1_names)  # uniform sampling over depths
    f1 = sum(statistics.mean(flops[n]) for n in stage1_names) / len(stage1_names)
    f2 = statistics.mean(flops["stage2"])
    time_ratio, flops_ratio = t1 / med["stage2"], f1 / f2
    speed_vs_stock = med["stock_masked_lm"] / med["stage2"]
    result = {
        "shape": {"layers": a.layers, "dim": a.dim, "ffn": 4 * a.dim, "heads": a.heads, "tokens": a.tokens,
                  "batch_size": a.batch_size, "lb": a.lb, "vocab": len(b2b.source_dictionary),
                  "submodel_depths": [s.depth for s in subs]},
        "threads": torch.get_num_threads(), "rounds": a.rounds, "data": a.data,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "time_per_update_s": {n: round(med[n], 5) for n in names} | {"stage1_avg": round(t1, 5)},
        "time_spread_s": {n: [round(min(t), 5), round(max(t), 5)] for n, t in times.items()},
        "wall_time_per_update_s": {n: round(med_wall[n], 5) for n in names}
                                  | {"stage1_avg": round(sum(med_wall[n] for n in stage1_names) / len(stage1_names), 5)},
        "gflops_per_update": {n: round(statistics.mean(flops[n]) / 1e9, 4) for n in names if flops[n]}
                             | {"stage1_avg": round(f1 / 1e9, 4)},
        "stage1_over_stage2": {"time": round(time_ratio, 4), "flops": round(flops_ratio, 4),
                               "time_over_flops": round(time_ratio / flops_ratio, 4)},
        "stage2_speed_vs_stock": round(speed_vs_stock, 4),
        "targets_met": {"time_ratio_within_10pct_of_flops_ratio": abs(time_ratio / flops_ratio - 1) <= 0.10,
                        "stage2_at_least_0.97x_stock": speed_vs_stock >= 0.97},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
