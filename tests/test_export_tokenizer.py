"""b2b-export-hf of a GPT trained on our Moses + fastBPE pipeline ships an HF tokenizer
(XLMTokenizer: Moses + the fastBPE merges, ids = fairseq's) whose ids equal ours on real text,
bos/eos/pad and generation_config that fit fairseq's language_modeling data, and bpe.codes;
``generate`` runs out of the box and continues the prompt as the fairseq model does."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


LM_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lm-eval"


@pytest.fixture(scope="module")
def exported(small_gpt, bpe_corpus, tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("gpt-hf") / "hf"
    from fairseq_b2b.hf.export_hf import main

    main([str(small_gpt), "--output", str(out), "--dict", str(bpe_corpus["dict"]), "--codes", str(bpe_corpus["codes"])])
    return out


def _ours(lines, codes, dict_path, tmp):
    from fairseq.data import Dictionary

    from fairseq_b2b.data import apply_to_file

    (tmp / "in.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    apply_to_file(codes, tmp / "in.txt", tmp / "out.bpe")
    d = Dictionary.load(str(dict_path))
    bpe = (tmp / "out.bpe").read_text(encoding="utf-8").split("\n")
    return [d.encode_line(b, add_if_not_exist=False, append_eos=False).tolist() for b in bpe[:len(lines)]]


def _real_lines(bpe_corpus):
    """Built-in corpus valid lines (always) and PTB valid (when the shared copy exists)."""
    valid = Path(bpe_corpus["data_bin"]).parent.parent / "corpus" / "valid.txt"
    lines = [l for l in valid.read_text(encoding="utf-8").split("\n") if l.strip()][:300] if valid.is_file() else []
    ptb = LM_EVAL / "ptb.valid.txt"
    if ptb.is_file():
        lines += [l for l in ptb.read_text(encoding="utf-8").split("\n") if l.strip()][:500]
    if len(lines) < 100:
        pytest.skip("no real text found beside the test data-bin")
    return lines


def test_files_and_special_ids(exported, bpe_corpus):
    from fairseq.data import Dictionary

    names = {p.name for p in exported.iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer_config.json", "bpe.codes", "dict.txt", "generation_config.json"} <= names
    assert (exported / "bpe.codes").read_bytes() == Path(bpe_corpus["codes"]).read_bytes()
    d = Dictionary.load(str(bpe_corpus["dict"]))
    config = json.loads((exported / "config.json").read_text())
    gen = json.loads((exported / "generation_config.json").read_text())
    # fairseq ends every line with </s>, so a prompt starts after one: bos = eos = </s>
    assert config["bos_token_id"] == config["eos_token_id"] == d.eos() == gen["bos_token_id"] == gen["eos_token_id"]
    assert config["pad_token_id"] == d.pad() == gen["pad_token_id"]


def test_hf_tokenizer_ids_equal_ours_on_real_text(exported, bpe_corpus, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(exported))
    assert type(tok).__name__ == "XLMTokenizer"
    lines = _real_lines(bpe_corpus)
    ours = _ours(lines, Path(bpe_corpus["codes"]), Path(bpe_corpus["dict"]), tmp_path)
    theirs = [tok(line, add_special_tokens=False)["input_ids"] for line in lines]
    differ = [k for k in range(len(lines)) if ours[k] != theirs[k]]
    assert not differ, f"{len(differ)} of {len(lines)} lines differ, e.g. {lines[differ[0]][:80]!r}"
    from fairseq.data import Dictionary

    d = Dictionary.load(str(bpe_corpus["dict"]))
    k = next(k for k in range(len(lines)) if d.unk() not in ours[k])
    assert tok.decode(theirs[k]) == " ".join(d[i] for i in ours[k]).replace("@@ ", "")  # back to Moses tokens
    with_specials = tok(lines[0])["input_ids"]
    assert with_specials[0] == tok.bos_token_id == 2 and with_specials[1:-1] == theirs[0]


def test_generate_continues_like_fairseq(exported, small_gpt, bpe_corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fairseq_b2b.checkpoints import load_model

    tok = AutoTokenizer.from_pretrained(str(exported))
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    ids = tok("Shall I compare thee to a summer's day ?", add_special_tokens=False)["input_ids"]
    prompt = torch.tensor([[tok.bos_token_id] + ids])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4, do_sample=False)
    assert prompt.shape[1] < out.shape[1] <= prompt.shape[1] + 4 and torch.equal(out[0, :prompt.shape[1]], prompt[0])
    fs_model, _, _ = load_model(small_gpt, str(bpe_corpus["data_bin"]))
    with torch.no_grad():
        logits = fs_model(prompt)[0]
    assert int(logits[0, -1].argmax()) == int(out[0, prompt.shape[1]])
