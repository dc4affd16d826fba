"""Benchmark: grow a random BERT-base (12, 768) into b2b_bert_large (24, 1024, 16 heads) on CPU.

Prints one JSON object: seconds per method (median of 3 fresh processes), the process's peak
RSS and its ratio to the target model's size (targets: <= 2 s, peak RSS <= 2.5x the target's
size).  Each run is a fresh subprocess so that peak RSS is its own.
"""
import json
import os
import resource
import subprocess
import sys
import time

VOCAB, POSITIONS = 30522, 514


def run_one(method: str) -> dict:
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from growth_helpers import random_state_dict

    from fairseq_b2b.growth import BERT, ModelShape, grow_state_dict

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    src, tgt = ModelShape(12, 768, 3072, 12), ModelShape(24, 1024, 4096, 16)
    source = random_state_dict(BERT, src, vocab=VOCAB)
    source["encoder.sentence_encoder.embed_positions.weight"] = torch.randn(POSITIONS, 768)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    grown = grow_state_dict(source, BERT, src, tgt, method=method, seed=1).state_dict
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seen, target_bytes = set(), 0
    for t in grown.values():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            target_bytes += t.numel() * t.element_size()
    return {"method": method, "seconds": round(seconds, 3), "peak_rss_bytes": peak,
            "rss_before_growth_bytes": rss_before, "target_model_bytes": target_bytes,
            "peak_rss_over_target": round(peak / target_bytes, 3),
            "growth_rss_over_target": round((peak - rss_before) / target_bytes, 3)}


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run_one(sys.argv[1])))
        return

    def once(method):
        out = subprocess.run([sys.executable, __file__, method], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    once("fpi")  # warm-up: the first process after a while pays for cold caches
    results = []
    for method in ("fpi", "aki"):
        runs = sorted((once(method) for _ in range(3)), key=lambda r: r["seconds"])
        results.append(dict(runs[1], seconds_all=[r["seconds"] for r in runs]))  # the median run
    print(json.dumps({"benchmark": "growth_speed", "source": "(12, 768, 12 heads)", "target": "b2b_bert_large (24, 1024, 16 heads)",
                      "targets": {"seconds": 2.0, "peak_rss_over_target": 2.5}, "results": results,
                      "threads": int(os.environ.get("BENCH_THREADS", "2"))}, indent=1))


if __name__ == "__main__":
    main()
