"""b2b-preprocess hf (issue 19, item 4): real text tokenized with an imported model's HuggingFace
tokenizer and binarized with its dict.txt, for LLaMA (a GGUF file), GPT-2 and BERT imports: the
data-bin holds exactly the HF tokenizer's ids through the four-specials mapping.  Then the
documented path import -> b2b-grow --exact -> b2b-train on that data -> b2b-export-hf, end to
end on a tiny LLaMA: HF's forward of the export equals the trained fairseq model's."""
import json
import os
import string

import pytest
import torch

import fairseq_b2b  # noqa: F401
from conftest import TINY, b2b_train_main, exit_line
from fairseq_b2b.hf.corpus_tokens import prepare_with_model
from fairseq_b2b.cli.preprocess import main as preprocess_main
from fairseq_b2b.hf.import_hf import import_hf

tr = pytest.importorskip("transformers")
LINES = {"train": 1500, "valid": 200}


@pytest.fixture(scope="module")
def text(data_bin):
    """The first lines of the built-in corpus's train and valid splits (real English)."""
    from fairseq_b2b.data.corpus import cache_dir, first_lines

    root = cache_dir() / "tests-v3" / "corpus"
    return {split: first_lines(root / f"{split}.txt", n, to_document_end=False) for split, n in LINES.items()}


def _byte_level_vocab():
    from tokenizers.pre_tokenizers import ByteLevel

    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "Ġ w", "o u", "Ġ m", "a n"]
    return sorted(ByteLevel.alphabet()) + ["".join(m.split()) for m in merges], merges


def _gpt2_dir(path):
    tokens, merges = _byte_level_vocab()
    tokens = tokens + ["<|endoftext|>"]
    config = tr.GPT2Config(vocab_size=len(tokens), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                           bos_token_id=len(tokens) - 1, eos_token_id=len(tokens) - 1)
    torch.manual_seed(0)
    tr.GPT2LMHeadModel(config).save_pretrained(path)
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return str(path)


def _bert_dir(path):
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars + string.punctuation) + \
        ["##" + c for c in chars] + ["the", "and", "to", "of", "##ed", "##ing"]
    config = tr.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    tr.BertForMaskedLM(config).save_pretrained(path)
    with open(os.path.join(path, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True}, f)
    return str(path)


def _llama_gguf(path):
    gguf_tests = pytest.importorskip("test_gguf")
    tokens, _ = gguf_tests._vocab()
    return gguf_tests.write_gguf(path, gguf_tests._tiny_hf(len(tokens)), "Q8_0", pre="smollm")


def _raw_text_lines(path):
    with open(path, "rb") as f:
        return [t for t in (raw.decode("utf-8", errors="replace").replace("\ufeff", "").strip() for raw in f) if t]


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_the_data_bin_holds_the_hf_tokenizers_ids(tmp_path, text, family):
    src = {"llama": _llama_gguf, "gpt2": _gpt2_dir, "bert": _bert_dir}[family](tmp_path / "src")
    ckpt = str(tmp_path / "imported" / "model.pt")
    mapping = import_hf(src, family, ckpt, log=lambda *_: None)["mapping"]
    out = tmp_path / "data"
    res = prepare_with_model(ckpt, [text["train"]], text["valid"], None, out)
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(out / "dict.txt"))
    assert dictionary.symbols == Dictionary.load(os.path.join(os.path.dirname(ckpt), "dict.txt")).symbols
    dataset = data_utils.load_indexed_dataset(str(out / "data-bin" / "valid"), dictionary)
    samples = [dataset[i].tolist() for i in range(len(dataset))]
    samples = [s for s in samples if len(s) > 1]  # a blank line (document boundary) is eos alone
    lines = _raw_text_lines(text["valid"])
    assert len(samples) == len(lines)
    tok = res["tokenizer"]
    n_tokens = 0
    for line, sample in zip(lines, samples):
        hf_ids = torch.tensor(tok(line, add_special_tokens=False)["input_ids"], dtype=torch.long)
        assert sample == mapping.translate(hf_ids).tolist() + [dictionary.eos()], line
        n_tokens += len(hf_ids)
    print(f"\n[b2b-preprocess hf, {family}] {len(lines)} valid lines, {n_tokens} HF tokens: every id equal")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, text, capsys):
    imported = str(tmp_path / "imported" / "model.pt")
    import_hf(_gpt2_dir(tmp_path / "gpt2"), "gpt2", imported, log=lambda *_: None)
    state = torch.load(imported, weights_only=False)
    del state["b2b_hf"]  # what a checkpoint trained on a fairseq dictionary has: no import record
    small_gpt = str(tmp_path / "imported" / "plain.pt")
    torch.save(state, small_gpt)
    out = tmp_path / "out"
    line = exit_line(preprocess_main, ["hf", "--model", str(tmp_path / "missing.pt"), "--train", text["train"],
                                       "--valid", text["valid"], "--output", out], capsys)
    assert "--model file not found" in line
    line = exit_line(preprocess_main, ["hf", "--model", small_gpt, "--train", text["train"], "--output", out], capsys)
    assert "needs --valid" in line
    line = exit_line(preprocess_main, ["hf", "--model", small_gpt, "--train", text["train"], "--valid", text["valid"],
                                       "--output", out], capsys)
    assert "was not written by b2b-import-hf" in line and "b2b-preprocess corpus" in line
    assert not out.exists()


def test_import_grow_train_export_end_to_end_on_a_tiny_llama(tmp_path, text, capsys, monkeypatch):
    """The documented path (docs/huggingface.md): b2b-import-hf FILE.gguf -> b2b-grow --exact ->
    b2b-preprocess hf -> b2b-train --finetune-from-model (the RMSNorms anneal) -> b2b-export-hf."""
    from fairseq_b2b.cli.grow import main as grow_main
    from fairseq_b2b.hf.export_hf import export_hf

    src = _llama_gguf(tmp_path / "m.gguf")
    imported = str(tmp_path / "imported" / "model.pt")
    import_hf(src, "llama", imported, log=lambda *_: None)
    shape = ["--decoder-layers", "2", "--decoder-embed-dim", "96", "--decoder-attention-heads", "6",
             "--decoder-kv-heads", "3", "--decoder-head-dim", "16", "--decoder-ffn-embed-dim", "144",
             "--share-decoder-input-output-embed"]
    grown = str(tmp_path / "grown.pt")
    grow_main(["--source", imported, "--arch", "b2b_llama", *shape, "--method", "fpi", "--exact", "--output", grown])
    capsys.readouterr()
    data = tmp_path / "data"
    preprocess_main(["hf", "--model", imported, "--train", str(text["train"]), "--valid", str(text["valid"]),
                     "--output", str(data)])
    save = tmp_path / "train"
    log = b2b_train_main([str(data / "data-bin"), "--task", "b2b_language_modeling", "--arch", "b2b_llama", *shape,
                          "--finetune-from-model", grown, "--growth-anneal-updates", 4, "--max-update", 8,
                          "--save-dir", save, *TINY], monkeypatch)
    assert "ln_blend" in log
    out = str(tmp_path / "hf")
    export_hf(str(save / "checkpoint_last.pt"), out, tokenizer_from=imported, log=lambda *_: None)
    model = tr.LlamaForCausalLM.from_pretrained(out).eval()
    tok = tr.AutoTokenizer.from_pretrained(out)
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(save / "checkpoint_last.pt")],
                                                                    arg_overrides={"data": str(data / "data-bin")})
    from fairseq_b2b.hf.common import load_dictionary, mapping_from_metadata

    meta = torch.load(imported, weights_only=False)["b2b_hf"]
    mapping = mapping_from_metadata("llama", meta, load_dictionary(str(data / "dict.txt")).symbols)
    encoded = (tok(line)["input_ids"] for line in _raw_text_lines(text["valid"]))
    ids = torch.tensor([next(e for e in encoded if len(e) >= 16)[:32]])
    with torch.no_grad():
        ours = models[0].eval()(mapping.translate(ids))[0][..., mapping.hf_to_fairseq]
        theirs = model(ids).logits
    diff = (ours - theirs).abs().max().item()
    print(f"\n[import -> grow -> train 8 updates -> export, tiny llama] HF vs fairseq max |dlogit| {diff:.3g}")
    assert diff < 1e-4
    gen = model.generate(ids[:, :8], max_new_tokens=4, do_sample=False)  # may stop at eos (</s> ends every line)
    assert gen.shape[1] > 8 and torch.equal(gen[:, :8], ids[:, :8])
    assert gen[0, 8].item() == ours[0, 7].argmax().item()  # HF's greedy token is the fairseq model's
