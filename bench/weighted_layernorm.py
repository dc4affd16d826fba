"""Step-time cost of the weighted-statistics LayerNorm of exact growth (issue 11), ratios side
by side in one process; prints one JSON object.

For each growth (source width -> target width) a ``b2b_bert`` of the target shape trains one
update (forward, backward, Adam step) on the same batch in three forms: fairseq's standard
LayerNorms, weighted LayerNorms with the growth's statistics weights (blend 0, as right after
growth), and weighted LayerNorms at blend 1 (uniform: the ``F.layer_norm`` path).  Each round
runs one update of every configuration in a rotating order; the time is the median process CPU
time per update over rounds (one thread).

    OMP_NUM_THREADS=1 .venv/bin/python bench/weighted_layernorm.py [--layers 4 --tokens 128 ...]
"""
import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import fairseq_b2b  # noqa: E402,F401
from fairseq_b2b.checkpoints import build_from_args, parse_training_args  # noqa: E402
from fairseq_b2b.growth import BERT, ModelShape, grow_state_dict  # noqa: E402
from fairseq_b2b.models import weighted_layernorm as wln  # noqa: E402


def build(data, layers, dim, heads, tokens):
    args = parse_training_args([data, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert",
                                "--encoder-layers", str(layers), "--encoder-embed-dim", str(dim),
                                "--encoder-attention-heads", str(heads), "--encoder-ffn-embed-dim", str(4 * dim),
                                "--tokens-per-sample", str(tokens), "--dropout", "0", "--attention-dropout", "0",
                                "--cpu", "--save-dir", tempfile.mkdtemp(prefix="b2b-bench-")])
    return build_from_args(args)[2]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--growths", default="256:384,512:768,256:640", help="source:target widths (head size 32)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128, help="tokens per sequence")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8000, help="dictionary size (LM head cost)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(0)
    data = tempfile.mkdtemp(prefix="b2b-bench-dict-")
    with open(os.path.join(data, "dict.txt"), "w") as f:
        f.write("".join(f"w{i} {a.vocab - i}\n" for i in range(a.vocab - 5)))
    tokens = torch.randint(5, a.vocab - 5, (a.batch_size, a.tokens))
    tokens[:, 0] = 0
    configs = {}
    for growth in a.growths.split(","):
        src_dim, tgt_dim = map(int, growth.split(":"))
        src, tgt = ModelShape(a.layers, src_dim, 4 * src_dim, src_dim // 32), ModelShape(a.layers, tgt_dim, 4 * tgt_dim, tgt_dim // 32)
        base = build(data, a.layers, tgt_dim, tgt_dim // 32, a.tokens)
        source = build(data, a.layers, src_dim, src_dim // 32, a.tokens).state_dict()
        grown = grow_state_dict(source, BERT, src, tgt, method="fpi", exact=True, seed=1)
        for form in ("standard", "weighted", "weighted_uniform"):
            model = build(data, a.layers, tgt_dim, tgt_dim // 32, a.tokens)
            model.load_state_dict(grown.state_dict)
            if form != "standard":
                wln.install(model, grown.layernorm_weights, blend=1.0 if form == "weighted_uniform" else 0.0)
            model.train()
            configs[(growth, form)] = (model, torch.optim.Adam(model.parameters(), lr=1e-5))
        del base
    targets = tokens.clone()

    def step(model, opt):
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)[0]
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))
        loss.backward()
        opt.step()

    times = {k: [] for k in configs}
    keys = list(configs)
    for r in range(a.warmup + a.rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            start = time.process_time()
            step(*configs[k])
            if r >= a.warmup:
                times[k].append(time.process_time() - start)
    result = {"setup": {"layers": a.layers, "tokens": a.tokens, "batch_size": a.batch_size, "vocab": a.vocab,
                        "rounds": a.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__},
              "growths": {}}
    for growth in a.growths.split(","):
        med = {form: statistics.median(times[(growth, form)]) for form in ("standard", "weighted", "weighted_uniform")}
        result["growths"][growth] = {
            **{f"{form}_s_per_update": round(t, 5) for form, t in med.items()},
            "weighted_overhead": round(med["weighted"] / med["standard"] - 1, 4),
            "uniform_overhead": round(med["weighted_uniform"] / med["standard"] - 1, 4),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
