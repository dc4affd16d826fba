"""HuggingFace LLaMA <-> b2b_llama (issue 19, item 3): b2b-import-hf / b2b-export-hf on tiny
LlamaForCausalLM directories, and on the real SmolLM2-135M-Instruct (a GGUF file; skipped
without it, see smollm2_helpers): the imported model's forward equals HF's on the same weights,
an exact-mode growth 576 -> 768 (query heads 9 -> 12, key/value heads 3 -> 4) exported and run
by HF keeps the logits and the greedy tokens, and the four-specials mapping round-trips every
token id of real text between the HF tokenizer and dict.txt."""
import copy
import json
import os
import time

import pytest
import torch

import fairseq_b2b  # noqa: F401  (registers b2b_llama)
from fairseq_b2b.hf import common
from fairseq_b2b.hf.export_hf import export_hf
from fairseq_b2b.hf.import_hf import import_hf
from hf_test_helpers import import_fails as _fail, load_fairseq as _load_fairseq
from smollm2_helpers import real_lines, require_smollm2

TOL = 1e-4
tr = pytest.importorskip("transformers")


# ----------------------------------------------------------------------------- tiny LlamaForCausalLM

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _tiny_llama_dir(path, tied=True, **config):
    """A random LlamaForCausalLM (GQA 4/2, RMSNorm gains away from 1) with a 60-token vocab.json."""
    cfg = dict(vocab_size=60, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=5e4, tie_word_embeddings=tied,
               max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    cfg.update(config)
    torch.manual_seed(0)
    model = tr.LlamaForCausalLM(tr.LlamaConfig(**cfg)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(path)
    tokens = SPECIAL + [f"t{i}" for i in range(60 - len(SPECIAL))]
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_llama_import_equals_hf_and_export_round_trips_bit_exactly(tmp_path, tied):
    src = str(tmp_path / "src")
    hf = _tiny_llama_dir(src, tied=tied)
    ckpt = str(tmp_path / "fs" / "m.pt")
    mapping = import_hf(src, "llama", ckpt, log=lambda *_: None)["mapping"]
    # eos <|im_end|> -> </s>, bos <|im_start|> -> <s>; pad is eos (taken) and there is no unk: two zero rows
    assert mapping.specials == {"</s>": (2, "<|im_end|>"), "<s>": (1, "<|im_start|>")}
    assert mapping.added == ["<pad>", "<unk>"]
    model, task = _load_fairseq(ckpt, str(tmp_path / "fs"))
    assert len(task.source_dictionary) == 62 and model.decoder.share_input_output_embed == tied
    ids = torch.randint(0, 60, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids).logits
        ours = model(mapping.translate(ids))[0][..., mapping.hf_to_fairseq]
    assert (ours - ref).abs().max() < 1e-5

    out = str(tmp_path / "out")
    export_hf(ckpt, out, log=lambda *_: None)
    back = tr.LlamaForCausalLM.from_pretrained(out).eval()
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c1, c2 = hf.config, back.config
    for key in ("vocab_size", "hidden_size", "num_key_value_heads", "head_dim", "rms_norm_eps", "tie_word_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings"):
        assert getattr(c1, key) == getattr(c2, key), key
    assert c1.rope_parameters["rope_theta"] == c2.rope_parameters["rope_theta"] == 5e4
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(src, name), encoding="utf-8") as f1, open(os.path.join(out, name), encoding="utf-8") as f2:
            assert f1.read() == f2.read()


def test_weighted_rmsnorms_of_an_exact_growth_fold_into_a_plain_hf_model(tmp_path):
    """b2b-grow --exact writes weighted RMSNorms; the export rescales the stream so that HF's
    uniform RMSNorm computes them (hf/llama.py): the grown tiny model's HF logits are the source's."""
    from fairseq_b2b.grow_checkpoint import grow_checkpoint

    src = str(tmp_path / "src")
    hf = _tiny_llama_dir(src)
    ckpt = str(tmp_path / "fs" / "m.pt")
    mapping = import_hf(src, "llama", ckpt, log=lambda *_: None)["mapping"]
    grown = str(tmp_path / "fs" / "grown.pt")
    grow_checkpoint(ckpt, "b2b_llama", "fpi", True, 1, grown, overrides=[
        "--decoder-layers", "2", "--decoder-embed-dim", "96", "--decoder-attention-heads", "6", "--decoder-kv-heads", "3",
        "--decoder-head-dim", "16", "--decoder-ffn-embed-dim", "144", "--share-decoder-input-output-embed"])
    assert any(k.endswith(".stat_weights") for k in torch.load(grown, weights_only=False)["model"])
    lines = []
    export_hf(grown, str(tmp_path / "out"), log=lines.append)
    assert "weighted RMSNorms folded" in lines[0]
    big = tr.LlamaForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    assert big.config.hidden_size == 96 and big.config.num_key_value_heads == 3
    ids = torch.randint(0, 60, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (big(ids).logits - hf(ids).logits).abs().max().item()
    print(f"\n[tiny llama 64 -> 96 exact, exported with folded RMSNorm weights] HF max |dlogit| vs source {diff:.3g}")
    assert diff < 1e-5
    del mapping


def test_a_llama_into_a_gpt_family_and_back_is_one_line_and_writes_nothing(tmp_path):
    src = str(tmp_path / "llama")
    _tiny_llama_dir(src)
    out = tmp_path / "out"
    assert "is a 'llama' model but --family is gpt2: pass --family llama" in _fail(
        [src, "--family", "gpt2", "--output", str(out / "m.pt")])
    gpt = tmp_path / "gpt2"
    tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=60, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=59, eos_token_id=59)).save_pretrained(gpt)
    assert "is a 'gpt2' model but --family is llama: pass --family gpt2" in _fail(
        [str(gpt), "--family", "llama", "--output", str(out / "m.pt")])
    assert not out.exists()


@pytest.mark.parametrize("config,needle", [
    ({"attention_bias": True}, "has attention biases"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rotary scaling 'llama3'"),
    ({"hidden_act": "gelu"}, "activation 'gelu'"),
])
def test_llama_variants_b2b_llama_lacks_are_refused(tmp_path, config, needle):
    src = str(tmp_path / "src")
    _tiny_llama_dir(src)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(config)
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert needle in _fail([src, "--family", "llama", "--output", str(tmp_path / "out" / "m.pt")])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the real SmolLM2

def _hf_from_dequantized(gg):
    """LlamaForCausalLM built from the tensors the GGUF reader dequantized (and unpermuted)."""
    config = {k: v for k, v in gg.config.items() if k not in ("model_type", "architectures")}
    with torch.random.fork_rng(devices=[]):
        model = tr.LlamaForCausalLM(tr.LlamaConfig(**config)).eval()
    weights = dict(gg.weights)
    weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
    model.load_state_dict(weights, strict=True)
    return model


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """SmolLM2 read once: the HF reference, the import, the fairseq model, the tokenizer, real text."""
    from fairseq_b2b.hf.gguf import read_gguf

    path = require_smollm2()
    lines = real_lines(10)
    t0 = time.time()
    gg = read_gguf(path)
    read_s = time.time() - t0
    hf = _hf_from_dequantized(gg)
    tok_dir = tmp_path_factory.mktemp("smol_tok")
    for name, text in gg.tokenizer_files.items():
        (tok_dir / name).write_text(text, encoding="utf-8")
    tokenizer = tr.AutoTokenizer.from_pretrained(str(tok_dir))
    out = tmp_path_factory.mktemp("smol")
    t0 = time.time()
    with pytest.MonkeyPatch.context() as mp:  # the file is read once: the import gets the tensors read above
        mp.setattr("fairseq_b2b.hf.import_hf.read_gguf", lambda p: gg if p == path else read_gguf(p))
        report = import_hf(path, "llama", str(out / "smol.pt"), log=lambda *_: None)
    import_s = time.time() - t0
    model, task = _load_fairseq(str(out / "smol.pt"), str(out))
    print(f"\n[SmolLM2] GGUF read + dequantized in {read_s:.1f}s; the rest of b2b-import-hf in {import_s:.1f}s "
          f"({torch.get_num_threads()} thread(s))")
    enc = tokenizer(" ".join(lines))["input_ids"]
    ids = torch.tensor([enc[:32], enc[32:64]])  # two rows of 32 tokens of the running text
    with torch.no_grad():
        ref = hf(ids).logits
    return {"path": path, "hf": hf, "tokenizer": tokenizer, "dir": str(out), "ckpt": str(out / "smol.pt"),
            "mapping": report["mapping"], "model": model, "dictionary": task.source_dictionary, "lines": lines,
            "ids": ids, "ref": ref}


def test_smollm2_import_equals_llamaforcausallm_on_the_same_weights(smol):
    mapping = smol["mapping"]
    with torch.no_grad():
        ours = smol["model"](mapping.translate(smol["ids"]))[0][..., mapping.hf_to_fairseq]
    diff = (ours - smol["ref"]).abs().max().item()
    ref = smol["ref"]
    loss = torch.nn.functional.cross_entropy(ref[:, :-1].reshape(-1, ref.shape[-1]), smol["ids"][:, 1:].reshape(-1)).item()
    print(f"\n[SmolLM2 import] fairseq b2b_llama vs LlamaForCausalLM, fp32, {tuple(smol['ids'].shape)} tokens of real text: "
          f"max |dlogit| {diff:.3g}; HF loss {loss:.2f} nats/token")
    assert diff <= TOL
    # the dequantized, unpermuted weights are SmolLM2's: 4.6 nats/token on the sonnets here, far below
    # uniform (ln 49152 = 10.8); q/k rows left permuted give a model that has lost its attention
    assert loss < 5.5


def test_smollm2_greedy_answer_shows_the_weights_are_read_right(smol):
    tok = smol["tokenizer"]
    prompt = tok("The capital of France is", return_tensors="pt")
    out = smol["hf"].generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])


def test_smollm2_grown_576_to_768_exact_exported_keeps_logits_and_greedy_tokens(smol, tmp_path):
    from fairseq_b2b.grow_checkpoint import grow_checkpoint

    target = ["--decoder-layers", "30", "--decoder-embed-dim", "768", "--decoder-attention-heads", "12",
              "--decoder-kv-heads", "4", "--decoder-head-dim", "64", "--decoder-ffn-embed-dim", "2048",
              "--share-decoder-input-output-embed"]
    mapping, ids = smol["mapping"], smol["ids"]
    t0 = time.time()
    paper = str(tmp_path / "paper.pt")
    grow_checkpoint(smol["ckpt"], "b2b_llama", "fpi", False, 1, paper, data=smol["dir"], overrides=target)
    paper_model, _ = _load_fairseq(paper, smol["dir"])
    with torch.no_grad():
        paper_diff = (paper_model(mapping.translate(ids))[0][..., mapping.hf_to_fairseq] - smol["ref"]).abs().max().item()
    del paper_model
    os.remove(paper)
    grown = str(tmp_path / "grown.pt")
    grow_checkpoint(smol["ckpt"], "b2b_llama", "fpi", True, 1, grown, data=smol["dir"], overrides=target)
    out = str(tmp_path / "hf")
    export_hf(grown, out, log=lambda *_: None)
    os.remove(grown)
    big = tr.LlamaForCausalLM.from_pretrained(out).eval()
    assert (big.config.hidden_size, big.config.num_attention_heads, big.config.num_key_value_heads) == (768, 12, 4)
    tok = tr.AutoTokenizer.from_pretrained(out)
    prompt = tok(smol["lines"][2], return_tensors="pt")
    a = smol["hf"].generate(**prompt, max_new_tokens=8, do_sample=False)
    b = big.generate(**prompt, max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        diff = (big(ids).logits - smol["ref"]).abs().max().item()
        big.double()
        source64 = copy.deepcopy(smol["hf"]).double()
        ref64 = source64(ids).logits
        diff64 = (big(ids).logits - ref64).abs().max().item()
        floor = (smol["ref"].double() - ref64).abs().max().item()  # the source's own fp32 rounding
    del source64
    print(f"\n[SmolLM2 576 -> 768, heads 9/3 -> 12/4, FFN 1536 -> 2048, exact, exported, HF forward] max |dlogit| vs the "
          f"source: fp32 {diff:.3g} (the source's own fp32-vs-fp64 error: {floor:.3g}), fp64 {diff64:.3g}; "
          f"paper FPI (fairseq, fp32): {paper_diff:.3g}  ({time.time() - t0:.0f}s)")
    print(f"[SmolLM2 grown] greedy continuation: {tok.decode(b[0, prompt['input_ids'].shape[1]:])!r}")
    # the function is the source's (fp64 evaluation of the exported fp32 weights); in fp32 the
    # difference is at the source's own rounding error on these 30 layers (logits up to ~36)
    assert diff64 <= TOL and diff <= max(TOL, 3 * floor) and paper_diff > 100 * TOL
    assert torch.equal(a, b)


def test_four_specials_round_trip_every_token_id_of_real_text(smol):
    """HF ids of real text (and the specials) -> fairseq ids through dict.txt's symbols and
    fairseq's own line encoding -> HF ids again, id for id."""
    from fairseq.data import Dictionary

    mapping, tok = smol["mapping"], smol["tokenizer"]
    dictionary = Dictionary.load(os.path.join(smol["dir"], "dict.txt"))
    assert dictionary.symbols == smol["dictionary"].symbols
    text = "<|im_start|>user\n" + " ".join(smol["lines"]) + " 1234 <|im_end|><|endoftext|>"
    hf_ids = torch.tensor(tok(text)["input_ids"])
    assert {0, 1, 2} <= set(hf_ids.tolist())  # unk (<|endoftext|>), bos, eos all occur
    fs_ids = mapping.translate(hf_ids)
    assert fs_ids[hf_ids == 2].eq(dictionary.eos()).all() and fs_ids[hf_ids == 1].eq(dictionary.bos()).all()
    assert fs_ids[hf_ids == 0].eq(dictionary.unk()).all()
    line = " ".join(dictionary[i] for i in fs_ids.tolist())
    encoded = dictionary.encode_line(line, add_if_not_exist=False, append_eos=False).long()
    assert torch.equal(encoded, fs_ids)
    assert torch.equal(mapping.hf_to_fairseq.new_tensor(mapping.fairseq_to_hf)[encoded], hf_ids)
    assert tok.decode(hf_ids.tolist()) == text
    assert mapping.added == ["<pad>"] and len(dictionary) == len(mapping.hf_tokens) + 1
