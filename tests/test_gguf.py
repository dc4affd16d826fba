"""The GGUF reader (hf/gguf.py, hf/gguf_tokenizer.py): tiny LLaMA GGUF files written with gguf's
own writer (q/k rows permuted as llama.cpp's converter does, matrices quantized by gguf), read by
b2b-import-hf: dequantization checked by hand (Q4_1, Q8_0), the import equal to HF's
LlamaForCausalLM on the same dequantized weights for every supported type, the byte-level BPE
tokenizer equal to HF's GPT-2 tokenizer on the same vocabulary, and the refusals (another
architecture, an unsupported quantization, a SentencePiece vocabulary, a GGUF with --family
gpt2), one line each with nothing written.  On the real SmolLM2 file (skipped without it): its
tokenizer against transformers' own GGUF tokenizer conversion, and the load time."""
import json
import os
import time

import numpy as np
import pytest
import torch

import fairseq_b2b  # noqa: F401
from fairseq_b2b.hf import common
from fairseq_b2b.hf.import_hf import import_hf
from hf_test_helpers import import_fails as _fail, load_fairseq as _load_fairseq
from smollm2_helpers import real_lines, require_smollm2

gguf = pytest.importorskip("gguf", reason='the gguf package is not installed (pip install ".[gguf]")')
tr = pytest.importorskip("transformers")



def _byte_symbols():
    """GPT-2's printable stand-ins of the 256 bytes (byte-level BPE's alphabet), sorted."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s"]


def _vocab():
    tokens = SPECIAL + _byte_symbols() + ["".join(m.split(" ")) for m in MERGES]
    types = [3] * len(SPECIAL) + [1] * (len(tokens) - len(SPECIAL))
    return tokens, types


def _permute(w, heads):
    """llama.cpp's converter: within each head, HF's two rotated halves -> interleaved pairs."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tiny_hf(vocab_size, tied=True):
    cfg = tr.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=1e4,
                         tie_word_embeddings=tied, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = tr.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


HF_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
            "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
            "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _gguf_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    i, rest = hf_name[len("model.layers."):].split(".", 1)
    return f"blk.{i}.{HF_NAMES[rest[:-len('.weight')]]}.weight"


def write_gguf(path, model, qtype="F32", arch="llama", tokenizer="gpt2", pre="smollm", raw=None):
    """A GGUF file of ``model`` (an HF LlamaForCausalLM) as llama.cpp writes one; matrices in
    ``qtype``, norms in F32; ``raw`` = {gguf name: (uint8 bytes, type)} replaces tensors."""
    tokens, types = _vocab()
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_tokenizer_model(tokenizer)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    qt = gguf.GGMLQuantizationType[qtype]
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        a = t.detach().float().numpy()
        if name.endswith("q_proj.weight"):
            a = _permute(a, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = _permute(a, cfg.num_key_value_heads)
        g = _gguf_name(name)
        if raw and g in raw:
            w.add_tensor(g, raw[g][0], raw_dtype=raw[g][1])
        elif a.ndim == 1 or qtype == "F32":
            w.add_tensor(g, np.ascontiguousarray(a))
        elif qtype == "F16":
            w.add_tensor(g, a.astype(np.float16))
        else:
            w.add_tensor(g, gguf.quants.quantize(a, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def _dequantized_like_gguf(model, qtype):
    """``model`` with every matrix quantized and dequantized as the GGUF file holds it."""
    if qtype == "F32":
        return model
    qt = gguf.GGMLQuantizationType[qtype]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                a = p.float().numpy()
                a = a.astype(np.float16).astype(np.float32) if qtype == "F16" else \
                    gguf.quants.dequantize(gguf.quants.quantize(a, qt), qt)
                p.copy_(torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(p.shape)))
    return model


# ----------------------------------------------------------------------------- dequantization by hand

def _raw_tensor(path, name):
    reader = gguf.GGUFReader(path)
    return next(t for t in reader.tensors if t.name == name)


def test_q4_1_and_q8_0_dequantize_as_the_format_says(tmp_path):
    """Q4_1 block of 32: f16 scale d, f16 minimum m, 16 bytes whose low nibbles are elements 0-15
    and high nibbles 16-31, x = d q + m.  Q8_0 block of 32: f16 d, 32 int8, x = d q."""
    from fairseq_b2b.hf.gguf import read_gguf

    tokens, _ = _vocab()
    model = _tiny_hf(len(tokens))
    for qtype in ("Q4_1", "Q8_0"):
        path = write_gguf(tmp_path / f"{qtype}.gguf", model, qtype)
        raw = np.asarray(_raw_tensor(path, "blk.0.ffn_up.weight").data)  # (96 rows, bytes)
        rows = raw.reshape(raw.shape[0], -1, 20 if qtype == "Q4_1" else 34)
        d = rows[..., 0:2].copy().view(np.float16).astype(np.float32)
        if qtype == "Q4_1":
            m = rows[..., 2:4].copy().view(np.float16).astype(np.float32)
            qs = rows[..., 4:20]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
            by_hand = (d * q + m).reshape(raw.shape[0], -1)
        else:
            q = rows[..., 2:34].copy().view(np.int8).astype(np.float32)
            by_hand = (d * q).reshape(raw.shape[0], -1)
        got = read_gguf(path).weights["model.layers.0.mlp.up_proj.weight"]
        assert torch.equal(got, torch.from_numpy(by_hand)), qtype
        err = (got - model.model.layers[0].mlp.up_proj.weight).abs().max().item()
        assert 0 < err < (0.02 if qtype == "Q4_1" else 2e-3), (qtype, err)


# ----------------------------------------------------------------------------- tiny GGUF files

@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_gguf_import_equals_llamaforcausallm_on_the_dequantized_weights(tmp_path, qtype):
    tokens, _ = _vocab()
    hf = _tiny_hf(len(tokens), tied=qtype != "Q8_0")  # one untied file: output.weight
    path = write_gguf(tmp_path / "m.gguf", hf, qtype)
    lines = []
    report = import_hf(path, "llama", str(tmp_path / "fs" / "m.pt"), log=lines.append)
    assert qtype in lines[0] and "GGUF" in lines[0]
    mapping = report["mapping"]
    assert mapping.specials == {"</s>": (2, "<|im_end|>"), "<s>": (1, "<|im_start|>"), "<unk>": (0, "<|endoftext|>")}
    model, _ = _load_fairseq(str(tmp_path / "fs" / "m.pt"), str(tmp_path / "fs"))
    if qtype == "BF16":
        with torch.no_grad():
            for p in hf.parameters():
                if p.dim() == 2:
                    p.copy_(p.bfloat16().float())
    else:
        _dequantized_like_gguf(hf, qtype)
    ids = torch.randint(0, len(tokens), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(mapping.translate(ids))[0][..., mapping.hf_to_fairseq] - hf(ids).logits).abs().max().item()
    assert diff < 1e-5, (qtype, diff)


def test_the_gguf_tokenizer_is_gpt2s_byte_level_bpe_and_exports(tmp_path):
    """tokenizer.json built from the GGUF vocabulary and merges tokenizes as HF's GPT-2 tokenizer
    built from the same vocab.json + merges.txt; b2b-export-hf writes it so AutoTokenizer loads it."""
    from fairseq_b2b.hf.export_hf import export_hf

    tokens, _ = _vocab()
    hf = _tiny_hf(len(tokens))
    path = write_gguf(tmp_path / "m.gguf", hf, "F32", pre="gpt-2")
    import_hf(path, "llama", str(tmp_path / "fs" / "m.pt"), log=lambda *_: None)
    out = str(tmp_path / "hf")
    export_hf(str(tmp_path / "fs" / "m.pt"), out, log=lambda *_: None)
    ours = tr.AutoTokenizer.from_pretrained(out)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (ref_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", encoding="utf-8")
    ref = tr.GPT2Tokenizer.from_pretrained(str(ref_dir))
    text = "Then the sister is in the garden, and 42 others are on the stairs.<|im_end|>"
    got = ours(text)["input_ids"]
    assert got[:-1] == ref(text[:-len("<|im_end|>")])["input_ids"] and got[-1] == 2
    assert ours.decode(got) == text
    back = tr.LlamaForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([got])
    with torch.no_grad():
        assert torch.equal(back(ids).logits, hf(ids).logits)


# ----------------------------------------------------------------------------- refusals

def _refused(tmp_path, argv_path, needle, family="llama"):
    out = tmp_path / "out"
    msg = _fail([argv_path, "--family", family, "--output", str(out / "m.pt")])
    assert needle in msg, msg
    assert not out.exists()
    return msg


def test_a_gguf_of_another_architecture_is_one_line(tmp_path):
    tokens, _ = _vocab()
    path = write_gguf(tmp_path / "gpt2.gguf", _tiny_hf(len(tokens)), arch="gpt2")
    _refused(tmp_path, path, "is a 'gpt2' model: b2b-import-hf reads GGUF files of the llama architecture only")


def test_an_unsupported_quantization_is_one_line_naming_it(tmp_path):
    tokens, _ = _vocab()
    model = _tiny_hf(len(tokens))
    iq4 = gguf.GGMLQuantizationType.IQ4_NL  # blocks of 32 values in 18 bytes
    raw = {"blk.1.ffn_gate.weight": (np.zeros((96, 64 // 32 * 18), dtype=np.uint8), iq4)}
    path = write_gguf(tmp_path / "iq4.gguf", model, "Q4_1", raw=raw)
    msg = _refused(tmp_path, path, "tensor 'blk.1.ffn_gate.weight' is IQ4_NL, a quantization this reader does not support")
    assert "Q4_1" in msg


def test_a_sentencepiece_vocabulary_and_an_unknown_pre_tokenizer_are_one_line(tmp_path):
    tokens, _ = _vocab()
    model = _tiny_hf(len(tokens))
    _refused(tmp_path, write_gguf(tmp_path / "spm.gguf", model, tokenizer="llama"), "has a 'llama' tokenizer")
    _refused(tmp_path, write_gguf(tmp_path / "pre.gguf", model, pre="qwen2"), "pre-tokenizer 'qwen2'")


def test_a_gguf_into_the_gpt2_family_is_one_line(tmp_path):
    tokens, _ = _vocab()
    path = write_gguf(tmp_path / "m.gguf", _tiny_hf(len(tokens)))
    _refused(tmp_path, path, "GGUF files are read with --family llama", family="gpt2")


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not a model")
    _refused(tmp_path, str(path), "is not a directory: pass a HuggingFace model directory (config.json, weights, "
                                   "vocabulary) or a GGUF file")


# ----------------------------------------------------------------------------- the real SmolLM2 file

def test_smollm2_tokenizer_equals_transformers_gguf_conversion_on_real_text(tmp_path):
    """Our tokenizer.json against transformers' own GGUF tokenizer conversion (which needs no
    accelerate), on real text; and the time to read and dequantize the whole file."""
    from fairseq_b2b.hf.gguf import describe, read_gguf

    path = require_smollm2()
    t0 = time.time()
    gg = read_gguf(path)
    seconds = time.time() - t0
    print(f"\n[SmolLM2 GGUF] {describe(gg)}: read, dequantized and unpermuted in {seconds:.1f}s")
    assert gg.config["num_attention_heads"] == 9 and gg.config["num_key_value_heads"] == 3 and len(gg.tokens) == 49152
    for name, text in gg.tokenizer_files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    ours = tr.AutoTokenizer.from_pretrained(str(tmp_path))
    try:
        theirs = tr.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    except Exception as e:  # transformers without GGUF support here
        pytest.skip(f"transformers cannot convert the GGUF tokenizer here: {type(e).__name__}: {str(e)[:100]}")
    text = "\n".join(real_lines(20)) + " In 1609, 154 sonnets. <|im_start|>user"
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]
