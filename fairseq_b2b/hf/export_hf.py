"""``b2b-export-hf CKPT --output DIR``: a fairseq ``b2b_bert`` / ``b2b_gpt`` checkpoint (for instance a
grown one) as a HuggingFace directory that ``from_pretrained`` loads offline: config.json,
model.safetensors and the tokenizer files.

* BERT-family checkpoints become ``BertForMaskedLM`` (``BertModel.from_pretrained`` loads the
  encoder part of it); a checkpoint imported from an HF model without an MLM head, whose head
  is still the untrained initialisation, becomes ``BertModel``.  The pooler does not exist in
  fairseq: ``BertModel.from_pretrained`` initialises it (transformers warns).  Token types: the
  fairseq positions already hold token type 0, so the type table is zero, except for a
  checkpoint of the imported width, where the imported table is restored (positions minus
  type 0), which also gives segment B back.
* GPT-family checkpoints become ``GPT2LMHeadModel`` (a GPT-2 import round-trips bit-exactly).

Vocabulary: when the checkpoint came from ``b2b-import-hf`` (directly, or grown from such a
checkpoint: ``b2b_grown_from`` is followed while the source file exists, or ``--tokenizer-from``
names the imported checkpoint or the original HF directory), the HF vocabulary (vocab.txt,
vocab.json + merges.txt) is regenerated from the fairseq dict.txt with the original HF token ids,
and the model's rows are put back in that order.  Otherwise the dictionary is a fairseq one
(e.g. fastBPE): the weights and config are exported in fairseq's order and the tokenizer stays
fairseq's (dict.txt is copied next to them).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import sys

import torch

from ..errors import B2BError
from .common import (BERT_LAYER_NAMES, FAIRSEQ_TO_HF_ACT, MASK, META_KEY, VocabMapping, build_mapping, cli_errors,
                     load_dictionary, mapping_from_metadata, quiet_fairseq, require_transformers, special_tokens_from_files, staging_dir)

_CONFIG_DROP = ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "auto_map")


def _get(args, name, default=None):
    from ..growth_hook import _get as get

    return get(args, name, default)


# ----------------------------------------------------------------------------- inputs

def resolve_dict(ckpt: str, state: dict, dict_path: str | None) -> str:
    if dict_path:
        if not os.path.isfile(dict_path):
            raise B2BError(f"--dict '{dict_path}' does not exist")
        return dict_path
    candidates = [os.path.join(os.path.dirname(os.path.abspath(ckpt)), "dict.txt")]
    try:
        data = state["cfg"]["task"]["data"]
    except (KeyError, TypeError, AttributeError):
        data = None
    if data:
        from ..paths import resolve_data_dir

        found = resolve_data_dir(data, ckpt)  # a relative path recorded at training, found from here
        candidates += [os.path.join(str(found or data).split(os.pathsep)[0], "dict.txt")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise B2BError(f"no dict.txt next to '{ckpt}' nor in the checkpoint's data directory ({data}): pass --dict PATH")


def _hf_dir_metadata(src: str, family: str) -> dict:
    """Metadata as b2b-import-hf records it, read from the original HF directory."""
    from .import_hf import _tokenizer_files, read_config, read_vocab

    config = read_config(src)
    tokens, _ = read_vocab(src, family)
    mapping = build_mapping(family, tokens, special_tokens_from_files(src), config)
    return {"family": family, "hf_config": config, **mapping.metadata(), "tokenizer_files": _tokenizer_files(src, family),
            "source": os.path.abspath(src), "token_type_embeddings": None}


def find_metadata(state: dict, args, family: str, tokenizer_from: str | None, ckpt: str | None = None):
    """(metadata of the HF import or None, where it came from, whether it is the checkpoint's own)."""
    from ..growth_hook import checkpoint_model_args, load_checkpoint
    from ..paths import resolve_file

    if tokenizer_from == "none":
        return None, None, False
    if tokenizer_from:
        if os.path.isdir(tokenizer_from):
            return _hf_dir_metadata(tokenizer_from, family), tokenizer_from, False
        meta = load_checkpoint(tokenizer_from).get(META_KEY)
        if not meta:
            raise B2BError(f"--tokenizer-from '{tokenizer_from}' is not a checkpoint written by b2b-import-hf "
                           "(nor an HF model directory)")
        return meta, tokenizer_from, False
    if state.get(META_KEY):
        return state[META_KEY], "the checkpoint", True
    seen = set()
    for _ in range(8):  # follow b2b_grown_from back to an imported checkpoint
        grown = _get(args, "b2b_grown_from")
        source = _get(grown, "source") if grown is not None else None
        source = resolve_file(source, ckpt) or source  # recorded relative to the training folder
        if not source or source in seen or not os.path.isfile(source):
            return None, source, False
        ckpt = source
        seen.add(source)
        with quiet_fairseq():
            src_state = load_checkpoint(source)
        if src_state.get(META_KEY):
            return src_state[META_KEY], source, False
        args = checkpoint_model_args(src_state)
    return None, None, False


# ----------------------------------------------------------------------------- weight mapping

def _check(ok: bool, what: str, arch: str) -> None:
    if not ok:
        raise B2BError(f"the checkpoint's {arch} model has {what}: it has no HuggingFace "
                       f"{'BERT' if 'bert' in arch else 'GPT-2'} equivalent")


def bert_to_hf(sd: dict, args, L: int, mapping: VocabMapping, token_types, with_head: bool) -> dict:
    arch = str(_get(args, "_name", _get(args, "arch", "b2b_bert")))
    _check(not _get(args, "encoder_normalize_before", False), "pre-LN layers (--encoder-normalize-before)", arch)
    _check(_get(args, "layernorm_embedding", True), "no embedding LayerNorm", arch)
    _check(_get(args, "no_scale_embedding", True), "scaled token embeddings", arch)
    _check(not _get(args, "untie_weights_roberta", False), "an untied output embedding", arch)
    E = "encoder.sentence_encoder."
    p = "bert." if with_head else ""
    out = {}
    out[p + "embeddings.word_embeddings.weight"] = mapping.rows_to_hf(sd[E + "embed_tokens.weight"])
    pos = sd[E + "embed_positions.weight"][2:]
    if token_types is not None:
        pos = pos - token_types[0]
        out[p + "embeddings.token_type_embeddings.weight"] = token_types.clone()
    else:
        out[p + "embeddings.token_type_embeddings.weight"] = pos.new_zeros(2, pos.shape[1])
    out[p + "embeddings.position_embeddings.weight"] = pos.clone()
    out[p + "embeddings.LayerNorm.weight"] = sd[E + "layernorm_embedding.weight"]
    out[p + "embeddings.LayerNorm.bias"] = sd[E + "layernorm_embedding.bias"]
    for i in range(L):
        for hf_name, fs_name in BERT_LAYER_NAMES.items():
            for w in ("weight", "bias"):
                out[f"{p}encoder.layer.{i}.{hf_name}.{w}"] = sd[f"{E}layers.{i}.{fs_name}.{w}"]
    if with_head:
        out["cls.predictions.transform.dense.weight"] = sd["encoder.lm_head.dense.weight"]
        out["cls.predictions.transform.dense.bias"] = sd["encoder.lm_head.dense.bias"]
        out["cls.predictions.transform.LayerNorm.weight"] = sd["encoder.lm_head.layer_norm.weight"]
        out["cls.predictions.transform.LayerNorm.bias"] = sd["encoder.lm_head.layer_norm.bias"]
        bias = mapping.rows_to_hf(sd["encoder.lm_head.bias"])
        out["cls.predictions.bias"] = bias
        out["cls.predictions.decoder.bias"] = bias
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"]
    return out


def gpt_to_hf(sd: dict, args, L: int, mapping: VocabMapping) -> dict:
    arch = str(_get(args, "_name", _get(args, "arch", "b2b_gpt")))
    _check(_get(args, "decoder_normalize_before", True), "post-LN layers", arch)
    _check(_get(args, "no_scale_embedding", True), "scaled token embeddings (sqrt(D))", arch)
    _check(_get(args, "share_decoder_input_output_embed", True), "an untied output embedding", arch)
    _check(not _get(args, "layernorm_embedding", False), "an embedding LayerNorm", arch)
    _check("decoder.layer_norm.weight" in sd, "no final LayerNorm", arch)
    out = {"transformer.wte.weight": mapping.rows_to_hf(sd["decoder.embed_tokens.weight"]),
           "transformer.wpe.weight": sd["decoder.embed_positions.weight"][2:].clone()}
    for i in range(L):
        h, F = f"transformer.h.{i}.", f"decoder.layers.{i}."
        out[h + "ln_1.weight"] = sd[F + "self_attn_layer_norm.weight"]
        out[h + "ln_1.bias"] = sd[F + "self_attn_layer_norm.bias"]
        out[h + "ln_2.weight"] = sd[F + "final_layer_norm.weight"]
        out[h + "ln_2.bias"] = sd[F + "final_layer_norm.bias"]
        out[h + "attn.c_attn.weight"] = torch.cat([sd[F + f"self_attn.{n}_proj.weight"] for n in "qkv"], 0).t().contiguous()
        out[h + "attn.c_attn.bias"] = torch.cat([sd[F + f"self_attn.{n}_proj.bias"] for n in "qkv"], 0)
        for hf_name, fs_name in (("attn.c_proj", "self_attn.out_proj"), ("mlp.c_fc", "fc1"), ("mlp.c_proj", "fc2")):
            out[h + hf_name + ".weight"] = sd[F + fs_name + ".weight"].t().contiguous()
            out[h + hf_name + ".bias"] = sd[F + fs_name + ".bias"]
    out["transformer.ln_f.weight"] = sd["decoder.layer_norm.weight"]
    out["transformer.ln_f.bias"] = sd["decoder.layer_norm.bias"]
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def _known_keys(sd: dict, family: str, L: int) -> None:
    """Every tensor of the checkpoint must be one the mapping reads (or a version buffer)."""
    from ..growth.layout import LAYOUTS

    layout = LAYOUTS[family]
    known = {p.name for p in layout.globals}
    known |= {layout.layer_key(i, p.name) for i in range(L) for p in layout.layer_params}
    unknown = sorted(k for k in sd if k not in known and not k.endswith(".version"))
    if unknown:
        raise B2BError(f"the checkpoint holds '{unknown[0]}' ({len(unknown)} tensors) that a "
                       f"{'BERT' if family == 'bert' else 'GPT-2'} has no place for (e.g. a classification head): "
                       "it cannot be exported")


# ----------------------------------------------------------------------------- config

def _hf_config(tr, family: str, args, shape: dict, mapping: VocabMapping, meta, fairseq_mode: bool, cls_name: str,
               type_vocab: int):
    base = dict(meta.get("hf_config") or {}) if meta and meta.get("family", family) == family else {}
    for k in _CONFIG_DROP:
        base.pop(k, None)
    act = _get(args, "activation_fn", "gelu")
    if act not in FAIRSEQ_TO_HF_ACT:
        raise B2BError(f"activation '{act}' has no HuggingFace equivalent (supported: {', '.join(FAIRSEQ_TO_HF_ACT)})")

    def hf_id(symbol):
        if fairseq_mode:
            return mapping.fairseq_symbols.index(symbol) if symbol in mapping.fairseq_symbols else None
        return mapping.specials[symbol][0] if symbol in mapping.specials else None

    eps = float(_get(args, "layernorm_eps", 1e-5))
    dropout, attn_dropout = float(_get(args, "dropout", 0.1)), float(_get(args, "attention_dropout", 0.1))
    D, F = shape["dim"], shape["ffn"]
    if family == "bert":
        values = dict(vocab_size=len(mapping.hf_tokens), hidden_size=D, num_hidden_layers=shape["layers"],
                      num_attention_heads=shape["heads"], intermediate_size=F, hidden_act=FAIRSEQ_TO_HF_ACT[act],
                      max_position_embeddings=shape["positions"], type_vocab_size=type_vocab, layer_norm_eps=eps,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=attn_dropout,
                      position_embedding_type="absolute", pad_token_id=hf_id("<pad>"), architectures=[cls_name])
        if fairseq_mode:
            values.update(bos_token_id=hf_id("<s>"), eos_token_id=hf_id("</s>"))
        return tr.BertConfig(**{**base, **values})
    eos = hf_id("</s>")
    values = dict(vocab_size=len(mapping.hf_tokens), n_embd=D, n_layer=shape["layers"], n_head=shape["heads"],
                  n_inner=None if F == 4 * D else F, n_positions=shape["positions"],
                  activation_function=FAIRSEQ_TO_HF_ACT[act], layer_norm_epsilon=eps, resid_pdrop=dropout,
                  embd_pdrop=dropout, attn_pdrop=attn_dropout, bos_token_id=eos,
                  eos_token_id=eos, architectures=[cls_name])
    if "n_ctx" in base:
        values["n_ctx"] = shape["positions"]
    if fairseq_mode:
        values["pad_token_id"] = hf_id("<pad>")
    return tr.GPT2Config(**{**base, **values})


# ----------------------------------------------------------------------------- tokenizer files

def _write_tokenizer(out: str, family: str, mapping: VocabMapping, meta: dict, max_len: int, log) -> list:
    files = dict(meta.get("tokenizer_files") or {})
    role_of = {"<s>": "cls_token", "<pad>": "pad_token", "</s>": "sep_token", "<unk>": "unk_token", MASK: "mask_token"} \
        if family == "bert" else {"</s>": "eos_token"}
    specials = {role: mapping.specials[s][1] for s, role in role_of.items() if s in mapping.specials}
    if family == "gpt" and "eos_token" in specials:
        specials.update(bos_token=specials["eos_token"], unk_token=specials["eos_token"])
    written = []
    if family == "bert":
        with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in mapping.hf_tokens))
        written.append("vocab.txt")
        default_cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": max_len, **specials}
    else:
        with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(mapping.hf_tokens)}, f, ensure_ascii=False)
        written.append("vocab.json")
        default_cfg = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": max_len, **specials}
        if "merges.txt" not in files:
            log("b2b-export-hf: warning: no merges.txt was recorded at import: the GPT-2 tokenizer needs one "
                "(copy it from the original model or pass --tokenizer-from HF_DIR)")
    files.setdefault("tokenizer_config.json", json.dumps(default_cfg, indent=2))
    files.setdefault("special_tokens_map.json", json.dumps(specials, indent=2))
    for name, text in files.items():
        if name in ("vocab.txt", "vocab.json") or os.path.basename(name) != name:
            continue
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(text)
        written.append(name)
    return written


# ----------------------------------------------------------------------------- fairseq BPE as an XLM tokenizer

def find_codes(dict_path: str, codes: str | None) -> str | None:
    """--codes, or the ``bpe.codes`` that b2b-preprocess writes beside ``data-bin/``."""
    if codes:
        if not os.path.isfile(codes):
            raise B2BError(f"--codes '{codes}' does not exist")
        return codes
    here = os.path.dirname(os.path.abspath(dict_path))
    for path in (os.path.join(here, "bpe.codes"), os.path.join(os.path.dirname(here), "bpe.codes")):
        if os.path.isfile(path):
            return path
    return None


def xlm_token(symbol: str) -> str:
    """A fastBPE unit in HF XLM's notation: a word-internal unit ``ab@@`` is ``ab``, a word-final
    unit ``ab`` is ``ab</w>``; fairseq's specials keep their names."""
    if symbol in ("<s>", "<pad>", "</s>", "<unk>", MASK):
        return symbol
    return symbol[:-2] if symbol.endswith("@@") else symbol + "</w>"


def write_xlm_tokenizer(out: str, family: str, symbols: list, codes: str, dict_path: str, max_len: int) -> list:
    """HF ``XLMTokenizer`` files that reproduce b2b-preprocess: Moses (en, no escaping, no
    lower-casing) + the fastBPE merges, ids = fairseq's dictionary ids.  ``</s>`` is bos, eos and
    sep for GPT (fairseq ends every line with it, so a prompt starts after one); BERT's inputs are
    ``<s> ... </s>`` as masked_lm wraps them; ``<pad>``/``<unk>`` as in fairseq.  ``bpe.codes``
    and ``dict.txt`` are copied beside them."""
    from ..data.bpe import read_codes

    vocab = {}
    for i, symbol in enumerate(symbols):
        vocab.setdefault(xlm_token(symbol), i)  # duplicates cannot occur in a fairseq dictionary
    merges = read_codes(codes)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{m[0]} {m[1]}\n" for m in merges))
    first = "</s>" if family == "gpt" else "<s>"
    specials = {"bos_token": first, "eos_token": "</s>", "sep_token": "</s>", "cls_token": first,
                "pad_token": "<pad>", "unk_token": "<unk>"}
    if MASK in vocab:
        specials["mask_token"] = MASK
    # split_special_tokens: "<unk>" in raw text (PTB, WikiText) is text to Moses, as in b2b-preprocess
    config = {"tokenizer_class": "XLMTokenizer", "do_lowercase_and_remove_accent": False, "model_max_length": max_len,
              "split_special_tokens": True,
              "additional_special_tokens": [], "lang2id": None, "id2lang": None, **specials}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(specials, f, indent=2)
    shutil.copyfile(codes, os.path.join(out, "bpe.codes"))
    shutil.copyfile(dict_path, os.path.join(out, "dict.txt"))
    return ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "bpe.codes", "dict.txt"]


def write_generation_config(tr, out: str, config) -> None:
    """bos/eos/pad of the config as the defaults of ``generate``."""
    gen = tr.GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                              pad_token_id=getattr(config, "pad_token_id", None))
    gen.save_pretrained(out)


# ----------------------------------------------------------------------------- the command

@contextlib.contextmanager
def _no_progress_bars(tr):
    """transformers draws a progress bar for a one-file save; keep the command's output to its report."""
    hf_logging = getattr(getattr(tr, "utils", None), "logging", None)
    enabled = getattr(hf_logging, "is_progress_bar_enabled", lambda: False)()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def export_hf(ckpt: str, output: str, dict_path: str | None = None, tokenizer_from: str | None = None,
              force: bool = False, log=print, codes: str | None = None) -> dict:
    """Export the fairseq checkpoint ``ckpt`` to the HF directory ``output``; B2BError on bad
    input, and then nothing is written."""
    tr = require_transformers()
    from ..growth.layout import detect_family
    from ..growth_hook import checkpoint_model_args, load_checkpoint, model_shape

    from ..outputs import check_output

    # a new or empty folder, or a folder replaced by --force (never a file, never one holding the input)
    check_output(output, "dir", force, "--output", inputs={"CKPT": ckpt, "--dict": dict_path, "--codes": codes,
                                                           "--tokenizer-from": tokenizer_from})
    with quiet_fairseq():
        state = load_checkpoint(ckpt)
    sd = state["model"]
    try:
        family = detect_family(sd).family
    except ValueError as e:
        raise B2BError(f"checkpoint '{ckpt}': {e}") from None
    args = checkpoint_model_args(state)
    side = "encoder" if family == "bert" else "decoder"
    if _get(args, f"{side}_attention_heads") is None:
        raise B2BError(f"checkpoint '{ckpt}' does not record its attention heads: it is not a fairseq b2b_ checkpoint")
    ms = model_shape(args, family, sd)
    _known_keys(sd, family, ms.layers)
    embed_key = "encoder.sentence_encoder.embed_tokens.weight" if family == "bert" else "decoder.embed_tokens.weight"
    pos_key = embed_key.replace("embed_tokens", "embed_positions")
    if pos_key not in sd:
        raise B2BError(f"checkpoint '{ckpt}' has no learned positional embeddings: HuggingFace BERT/GPT-2 need them")
    shape = {"layers": ms.layers, "dim": ms.embed_dim, "heads": ms.heads, "ffn": ms.ffn_dim,
             "positions": sd[pos_key].shape[0] - 2}

    dpath = resolve_dict(ckpt, state, dict_path)
    symbols = list(load_dictionary(dpath).symbols)
    if family == "bert" and MASK not in symbols:
        symbols.append(MASK)  # as the masked_lm task does
    rows = sd[embed_key].shape[0]
    if rows != len(symbols):
        raise B2BError(f"the dictionary '{dpath}' has {len(symbols)} symbols but the checkpoint's embedding has {rows} "
                       "rows: pass the dict.txt the model was trained with (--dict)")

    meta, meta_from, own_meta = find_metadata(state, args, family, tokenizer_from, ckpt)
    if meta is not None:
        mapping = mapping_from_metadata(family, meta, symbols)
    else:
        mapping = VocabMapping(family, list(symbols), list(symbols), list(range(len(symbols))))
    fairseq_mode = meta is None

    token_types = None
    if family == "bert" and meta is not None:
        tt = meta.get("token_type_embeddings")
        if isinstance(tt, torch.Tensor) and tt.dim() == 2 and tt.shape[1] == shape["dim"]:
            token_types = tt.to(sd[embed_key].dtype)
    if family == "bert":
        head_untrained = (own_meta and not meta.get("mlm_head", True)
                          and meta.get("init_head_sha") == _sha(sd["encoder.lm_head.dense.weight"]))
        with_head = not head_untrained
        cls_name = "BertForMaskedLM" if with_head else "BertModel"
        hf_sd = bert_to_hf(sd, args, shape["layers"], mapping, token_types, with_head)
    else:
        cls_name = "GPT2LMHeadModel"
        hf_sd = gpt_to_hf(sd, args, shape["layers"], mapping)
    type_vocab = token_types.shape[0] if token_types is not None else 2
    config = _hf_config(tr, family, args, shape, mapping, meta, fairseq_mode, cls_name, type_vocab)

    with torch.random.fork_rng(devices=[]):
        model = (tr.BertModel(config, add_pooling_layer=False) if cls_name == "BertModel"
                 else getattr(tr, cls_name)(config))
    target = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in target if k not in hf_sd and k not in buffers]
    extra = [k for k in hf_sd if k not in target]
    if missing or extra:
        raise B2BError(f"internal error: the {cls_name} of this transformers version "
                       f"{'lacks ' + repr(extra[0]) if extra else 'needs ' + repr(missing[0])}: please report")
    for k, v in hf_sd.items():
        if tuple(v.shape) != tuple(target[k].shape):
            raise B2BError(f"internal error: '{k}' is {tuple(v.shape)}, {cls_name} expects {tuple(target[k].shape)}")
    model.load_state_dict({**{k: target[k] for k in target if k not in hf_sd}, **hf_sd}, strict=True)
    model.eval()

    parent = os.path.dirname(os.path.abspath(output))
    with staging_dir(parent, ".b2b-export-hf-") as tmp:
        out = os.path.join(tmp, "out")
        kwargs = {"safe_serialization": True} if "safe_serialization" in inspect.signature(model.save_pretrained).parameters else {}
        with _no_progress_bars(tr):
            model.save_pretrained(out, **kwargs)
        codes_path = find_codes(dpath, codes) if fairseq_mode else None
        if fairseq_mode and codes_path:
            tok_files = write_xlm_tokenizer(out, family, symbols, codes_path, dpath, shape["positions"])
        elif fairseq_mode:
            shutil.copyfile(dpath, os.path.join(out, "dict.txt"))
            tok_files = ["dict.txt"]
        else:
            tok_files = _write_tokenizer(out, family, mapping, meta, shape["positions"], log)
        if family == "gpt":
            write_generation_config(tr, out, config)
        from ..checkpoints import follow_umask

        follow_umask(out)  # the process umask, not save_pretrained's private model.safetensors
        if os.path.exists(output):
            os.replace(output, os.path.join(tmp, "old"))
        os.replace(out, output)

    log(f"b2b-export-hf: {ckpt} -> {output} [{cls_name}: L={shape['layers']} D={shape['dim']} heads={shape['heads']} "
        f"FFN={shape['ffn']} positions={shape['positions']} act={config.to_dict().get('hidden_act', config.to_dict().get('activation_function'))} "
        f"layer-norm-eps={float(_get(args, 'layernorm_eps', 1e-5)):g}]")
    if fairseq_mode and codes_path:
        log(f"b2b-export-hf: tokenizer: XLMTokenizer (Moses + the fastBPE codes {codes_path}, ids = {dpath}): "
            f"{', '.join(tok_files)}")
    elif fairseq_mode:
        log(f"b2b-export-hf: the dictionary '{dpath}' is a fairseq dictionary (not from b2b-import-hf"
            f"{', grown from ' + meta_from + ' which was not found' if meta_from else ''}): weights and config are exported "
            "in fairseq's token order and the tokenizer is fairseq's: no bpe.codes was found beside it (dict.txt copied; "
            "pass --codes to export an HF XLMTokenizer). "
            "Pass --tokenizer-from IMPORTED_CKPT_OR_HF_DIR if the model came from an HF import")
    else:
        log(f"b2b-export-hf: tokenizer regenerated from {dpath} with the HF ids recorded by the import "
            f"({meta_from}): {', '.join(tok_files)}")
    if family == "bert":
        if cls_name == "BertModel":
            log("b2b-export-hf: the MLM head is the untrained initialisation of the import (the HF model had none): "
                "exported as BertModel without it")
        log("b2b-export-hf: no pooler (fairseq has none): BertModel.from_pretrained initialises it; "
            + ("token-type table restored from the import" if token_types is not None else
               "token-type embeddings are zero (type 0 is folded into the positions; exact for single-segment input)"))
    return {"output": output, "class": cls_name, "mapping": mapping, "fairseq_mode": fairseq_mode, "config": config}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="b2b-export-hf",
                                description="Export a fairseq b2b_bert / b2b_gpt checkpoint as a HuggingFace directory "
                                            "(config.json, model.safetensors, tokenizer files).")
    p.add_argument("checkpoint", metavar="CKPT", help="fairseq checkpoint (.pt)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to write (must be new or empty)")
    p.add_argument("--dict", default=None, metavar="PATH",
                   help="the model's fairseq dict.txt (default: next to CKPT, else in the checkpoint's data directory)")
    p.add_argument("--tokenizer-from", default=None, metavar="PATH",
                   help="checkpoint written by b2b-import-hf or the original HF directory, for the HF vocabulary "
                        "(default: the checkpoint's own record, or the one it was grown from); 'none' exports "
                        "with the fairseq dictionary")
    p.add_argument("--codes", default=None, metavar="PATH",
                   help="fastBPE codes of a fairseq-dictionary model, exported as an HF XLMTokenizer (default: the "
                        "bpe.codes beside the dictionary's data-bin, b2b-preprocess's layout)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --output directory by the export (default: "
                                                       "off; never a file, never a directory holding CKPT)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with cli_errors("b2b-export-hf"):
        export_hf(args.checkpoint, args.output, dict_path=args.dict, tokenizer_from=args.tokenizer_from, force=args.force,
                  codes=args.codes)


if __name__ == "__main__":
    main()
