"""``b2b-import-hf SRC_DIR --family bert|gpt2 --output CKPT``: a HuggingFace BERT / GPT-2
directory (config.json, model.safetensors or pytorch_model.bin, vocab.txt or vocab.json +
merges.txt; read offline) as a fairseq checkpoint of a ``b2b_bert`` / ``b2b_gpt`` model, plus the
fairseq ``dict.txt`` next to CKPT, ready for ``--init-from-small`` and growth.

What is exact and what is not:

* BERT: the token-type embedding of type 0 is folded into the positional table, so the fairseq
  model equals HF's ``BertModel`` on single-segment input (token_type_ids all 0).  Learned
  positions are shifted by fairseq's offset (padding_idx + 1 = 2 rows, left zero).  Post-LN,
  GELU and LayerNorm eps (``--layernorm-eps``, 1e-12 for BERT) carry over.  The pooler (and an
  NSP head) has no place in fairseq's RoBERTa encoder and is dropped.  The MLM head
  (``cls.predictions``) is imported when present; otherwise the target arch keeps its own
  initialisation for ``encoder.lm_head`` and the command says so.
* GPT-2: Conv1D weights are transposed, ``c_attn`` is split into q/k/v (fairseq scales q by
  head_dim**-0.5 after the projection, which is HF's scaling of the scores), pre-LN, the LM
  head is tied, ``gelu_new`` becomes fairseq's ``gelu_accurate`` (the same tanh formula).

The vocabulary mapping is described in ``fairseq_b2b.hf.common``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

from ..errors import B2BError
from .common import (BERT_LAYER_NAMES, FAMILIES, HF_MODEL_TYPES, HF_TO_FAIRSEQ_ACT, META_FORMAT, META_KEY, build_fairseq,
                     build_mapping, check_dict_roundtrip, cli_errors, load_dictionary, one_line,
                     require_safetensors, save_checkpoint, special_tokens_from_files, staging_dir, write_dict)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = {"bert": ("tokenizer_config.json", "special_tokens_map.json"),
                   "gpt": ("tokenizer_config.json", "special_tokens_map.json", "merges.txt")}


# ----------------------------------------------------------------------------- reading HF files

def read_config(src: str) -> dict:
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise B2BError(f"'{src}' has no config.json: pass a HuggingFace model directory "
                       "(config.json + model.safetensors or pytorch_model.bin + vocabulary files)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise B2BError(f"'{path}' is not valid JSON ({one_line(e)[:100]})") from None
    if not isinstance(config, dict):
        raise B2BError(f"'{path}' is not a HuggingFace config (no JSON object)")
    return config


def check_model_type(config: dict, family: str, src: str) -> None:
    model_type = config.get("model_type")
    supported = ", ".join(f"{t} (--family {f})" for f, t in (("bert", "bert"), ("gpt2", "gpt2")))
    if model_type not in HF_MODEL_TYPES.values():
        raise B2BError(f"'{src}/config.json' is a '{model_type}' model: b2b-import-hf supports {supported}")
    if model_type != HF_MODEL_TYPES[family]:
        flag = "gpt2" if model_type == "gpt2" else "bert"
        raise B2BError(f"'{src}' is a '{model_type}' model but --family is "
                       f"{'gpt2' if family == 'gpt' else 'bert'}: pass --family {flag}")


def _load_weight_file(path: str) -> dict:
    try:
        if path.endswith(".safetensors"):
            return dict(require_safetensors().load_file(path, device="cpu"))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except B2BError:
        raise
    except Exception as e:
        raise B2BError(f"'{path}' cannot be read ({type(e).__name__}: {one_line(e)[:120]}): it is corrupt or truncated") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise B2BError(f"'{path}' is not a state dict of tensors")
    return sd


def read_weights(src: str) -> tuple[dict, str]:
    """All tensors of the model (sharded checkpoints are merged); safetensors preferred."""
    for name in WEIGHT_FILES:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        if not name.endswith(".index.json"):
            return _load_weight_file(path), name
        try:
            with open(path, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise B2BError(f"'{path}' is not a weight index ({type(e).__name__})") from None
        sd = {}
        for shard in shards:
            shard_path = os.path.join(src, shard)
            if not os.path.isfile(shard_path):
                raise B2BError(f"'{path}' names the shard '{shard}' that is missing: copy the whole model directory")
            sd.update(_load_weight_file(shard_path))
        return sd, name
    raise B2BError(f"'{src}' has no weights: expected one of {', '.join(WEIGHT_FILES)}")


def read_vocab(src: str, family: str) -> tuple[list, str]:
    """HF tokens by id: vocab.txt (one token a line) for BERT, vocab.json for GPT-2."""
    if family == "bert":
        path = os.path.join(src, "vocab.txt")
        if not os.path.isfile(path):
            raise B2BError(f"'{src}' has no vocab.txt: a BERT import needs its WordPiece vocabulary")
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]  # as transformers' load_vocab
        return tokens, path
    path = os.path.join(src, "vocab.json")
    if not os.path.isfile(path):
        raise B2BError(f"'{src}' has no vocab.json: a GPT-2 import needs its BPE vocabulary (vocab.json + merges.txt)")
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, ValueError) as e:
        raise B2BError(f"'{path}' is not valid JSON ({one_line(e)[:100]})") from None
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise B2BError(f"'{path}' does not map tokens to the ids 0..N-1: it is not a GPT-2 vocabulary")
    tokens = [None] * len(vocab)
    for tok, i in vocab.items():
        tokens[i] = tok
    return tokens, path


# ----------------------------------------------------------------------------- weight mapping

class _Weights:
    """Pops HF tensors by name; a missing one is a one-line error."""

    def __init__(self, sd: dict, src: str, what: str):
        self.sd, self.src, self.what = dict(sd), src, what

    def pop(self, key: str) -> torch.Tensor:
        if key not in self.sd:
            raise B2BError(f"the weights in '{self.src}' lack '{key}' that {self.what} has: "
                           "the weight file does not match config.json")
        return self.sd.pop(key)

    def maybe(self, key: str):
        return self.sd.pop(key, None)


def _normalise_keys(sd: dict, prefix: str) -> dict:
    out = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            k = k[len(prefix):]
        if "LayerNorm." in k:  # TF-converted checkpoints name LayerNorm params gamma/beta
            k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def _zero_pad_rows(t: torch.Tensor, rows: int = 2) -> torch.Tensor:
    """fairseq's learned positions start at padding_idx + 1 = 2: rows 0-1 are never read (zero)."""
    return torch.cat([t.new_zeros(rows, t.shape[1]), t])


def bert_state(hf: dict, config: dict, mapping, src: str, notes: list) -> tuple[dict, dict]:
    """fairseq ``b2b_bert`` tensors from HF BERT tensors; returns (state, extra metadata)."""
    layers = int(config["num_hidden_layers"])
    w = _Weights(_normalise_keys(hf, "bert."), src, f"a {layers}-layer BERT")
    E = "encoder.sentence_encoder."
    out = {}
    word = w.pop("embeddings.word_embeddings.weight")
    out[E + "embed_tokens.weight"] = mapping.rows_to_fairseq(word)
    pos = w.pop("embeddings.position_embeddings.weight")
    token_types = w.maybe("embeddings.token_type_embeddings.weight")
    if token_types is not None:
        pos = pos + token_types[0]
        notes.append("token type 0 folded into the positional embeddings: exact for single-segment input "
                     "(token_type_ids all 0); segment B embeddings are not part of the fairseq model")
    out[E + "embed_positions.weight"] = _zero_pad_rows(pos)
    out[E + "layernorm_embedding.weight"] = w.pop("embeddings.LayerNorm.weight")
    out[E + "layernorm_embedding.bias"] = w.pop("embeddings.LayerNorm.bias")
    for i in range(layers):
        for hf_name, fs_name in BERT_LAYER_NAMES.items():
            for p in ("weight", "bias"):
                out[f"{E}layers.{i}.{fs_name}.{p}"] = w.pop(f"encoder.layer.{i}.{hf_name}.{p}")
    w.maybe("embeddings.position_ids")
    w.maybe("embeddings.token_type_ids")
    dropped = [k for k in list(w.sd) if k.startswith(("pooler.", "cls.seq_relationship."))]
    for k in dropped:
        w.sd.pop(k)
    if any(k.startswith("pooler.") for k in dropped):
        notes.append("pooler.dense dropped: fairseq's RoBERTa encoder has no pooler (BERT's [CLS] pooler/NSP head)")
    if any(k.startswith("cls.seq_relationship.") for k in dropped):
        notes.append("next-sentence-prediction head (cls.seq_relationship) dropped")
    has_head = "cls.predictions.transform.dense.weight" in w.sd
    if has_head:
        out["encoder.lm_head.dense.weight"] = w.pop("cls.predictions.transform.dense.weight")
        out["encoder.lm_head.dense.bias"] = w.pop("cls.predictions.transform.dense.bias")
        out["encoder.lm_head.layer_norm.weight"] = w.pop("cls.predictions.transform.LayerNorm.weight")
        out["encoder.lm_head.layer_norm.bias"] = w.pop("cls.predictions.transform.LayerNorm.bias")
        bias = w.maybe("cls.predictions.bias")
        decoder_bias = w.maybe("cls.predictions.decoder.bias")
        bias = bias if bias is not None else decoder_bias
        if bias is None:
            raise B2BError(f"the MLM head in '{src}' has no output bias (cls.predictions.bias): the weight file is incomplete")
        out["encoder.lm_head.bias"] = mapping.rows_to_fairseq(bias[:, None])[:, 0]
        decoder = w.maybe("cls.predictions.decoder.weight")
        if decoder is not None and not torch.equal(decoder, word):
            raise B2BError(f"the MLM decoder of '{src}' is not tied to the word embeddings: b2b_bert ties them; "
                           "untied BERT heads are not supported")
        notes.append("MLM head (cls.predictions) imported into encoder.lm_head")
    else:
        notes.append(f"no MLM head in '{src}' (cls.predictions.*): encoder.lm_head keeps the b2b_bert "
                     "initialisation (its output embedding is tied to the imported word embeddings)")
    _no_leftovers(w, "BERT")
    extra = {"mlm_head": has_head, "token_type_embeddings": None if token_types is None else token_types.clone()}
    return out, extra


def gpt2_state(hf: dict, config: dict, mapping, src: str, notes: list) -> tuple[dict, dict]:
    """fairseq ``b2b_gpt`` tensors from HF GPT-2 tensors (Conv1D weights are [in, out])."""
    layers = int(config["n_layer"])
    w = _Weights(_normalise_keys(hf, "transformer."), src, f"a {layers}-layer GPT-2")
    out = {}
    wte = w.pop("wte.weight")
    out["decoder.embed_tokens.weight"] = mapping.rows_to_fairseq(wte)
    out["decoder.embed_positions.weight"] = _zero_pad_rows(w.pop("wpe.weight"))
    for i in range(layers):
        h, L = f"h.{i}.", f"decoder.layers.{i}."
        for hf_name, fs_name in (("ln_1", "self_attn_layer_norm"), ("ln_2", "final_layer_norm")):
            out[L + fs_name + ".weight"] = w.pop(h + hf_name + ".weight")
            out[L + fs_name + ".bias"] = w.pop(h + hf_name + ".bias")
        qkv_w = w.pop(h + "attn.c_attn.weight").t()
        qkv_b = w.pop(h + "attn.c_attn.bias")
        if qkv_w.shape[0] % 3:
            raise B2BError(f"'{h}attn.c_attn.weight' in '{src}' is not a fused q/k/v projection")
        for name, wt, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w.chunk(3, 0), qkv_b.chunk(3, 0)):
            out[L + f"self_attn.{name}.weight"] = wt.contiguous()
            out[L + f"self_attn.{name}.bias"] = b.contiguous()
        for hf_name, fs_name in (("attn.c_proj", "self_attn.out_proj"), ("mlp.c_fc", "fc1"), ("mlp.c_proj", "fc2")):
            out[L + fs_name + ".weight"] = w.pop(h + hf_name + ".weight").t().contiguous()
            out[L + fs_name + ".bias"] = w.pop(h + hf_name + ".bias")
        w.maybe(h + "attn.bias")  # causal-mask buffers of older transformers
        w.maybe(h + "attn.masked_bias")
    out["decoder.layer_norm.weight"] = w.pop("ln_f.weight")
    out["decoder.layer_norm.bias"] = w.pop("ln_f.bias")
    out["decoder.output_projection.weight"] = out["decoder.embed_tokens.weight"]
    head = w.maybe("lm_head.weight")
    if head is not None and not torch.equal(head, wte):
        raise B2BError(f"the LM head of '{src}' is not tied to wte: b2b_gpt ties them; untied heads are not supported")
    _no_leftovers(w, "GPT-2")
    return out, {}


def _no_leftovers(w: _Weights, what: str) -> None:
    if w.sd:
        key = sorted(w.sd)[0]
        raise B2BError(f"the weights in '{w.src}' hold '{key}' ({len(w.sd)} unknown tensors) that a plain {what} "
                       "does not have: this variant is not supported")


# ----------------------------------------------------------------------------- architecture

def _need(config: dict, key: str, src: str, kind=int):
    value = config.get(key)
    if value is None:
        raise B2BError(f"'{src}/config.json' has no '{key}'")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise B2BError(f"'{src}/config.json' has a bad '{key}': {value!r}") from None


def _activation(name, src) -> str:
    if not isinstance(name, str) or name not in HF_TO_FAIRSEQ_ACT:
        raise B2BError(f"activation {name!r} of '{src}' is not supported (supported: {', '.join(HF_TO_FAIRSEQ_ACT)})")
    return HF_TO_FAIRSEQ_ACT[name]


def arch_args(config: dict, family: str, src: str) -> tuple[list, dict]:
    """fairseq command-line args of the matching b2b_ arch, and a summary of the shape."""
    if family == "bert":
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise B2BError(f"'{src}' uses position_embedding_type={config['position_embedding_type']!r}: "
                           "only absolute (learned) positions are supported")
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise B2BError(f"'{src}' is a BERT decoder (is_decoder/add_cross_attention): only encoders are supported")
        L, D, H = (_need(config, k, src) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
        F, P = _need(config, "intermediate_size", src), _need(config, "max_position_embeddings", src)
        act = _activation(config.get("hidden_act", "gelu"), src)
        eps = float(config.get("layer_norm_eps", 1e-12))
        drop, attn_drop = float(config.get("hidden_dropout_prob", 0.1)), float(config.get("attention_probs_dropout_prob", 0.1))
        args = ["--encoder-layers", L, "--encoder-embed-dim", D, "--encoder-attention-heads", H,
                "--encoder-ffn-embed-dim", F, "--max-positions", P]
    else:
        if not config.get("scale_attn_weights", True) or config.get("scale_attn_by_inverse_layer_idx", False):
            raise B2BError(f"'{src}' changes GPT-2's attention scaling (scale_attn_weights / "
                           "scale_attn_by_inverse_layer_idx): only the standard 1/sqrt(head_dim) is supported")
        if config.get("add_cross_attention"):
            raise B2BError(f"'{src}' has cross-attention: only decoder-only GPT-2 is supported")
        L, D, H = (_need(config, k, src) for k in ("n_layer", "n_embd", "n_head"))
        F = int(config.get("n_inner") or 4 * D)
        P = _need(config, "n_positions", src)
        act = _activation(config.get("activation_function", "gelu_new"), src)
        eps = float(config.get("layer_norm_epsilon", 1e-5))
        drop, attn_drop = float(config.get("resid_pdrop", 0.1)), float(config.get("attn_pdrop", 0.1))
        args = ["--decoder-layers", L, "--decoder-embed-dim", D, "--decoder-attention-heads", H,
                "--decoder-ffn-embed-dim", F, "--max-target-positions", P]
    if D % H:
        raise B2BError(f"'{src}': hidden size {D} is not a multiple of the {H} attention heads")
    args += ["--tokens-per-sample", P, "--activation-fn", act, "--layernorm-eps", repr(eps),
             "--dropout", repr(drop), "--attention-dropout", repr(attn_drop), "--activation-dropout", "0.0"]
    return args, {"layers": L, "dim": D, "heads": H, "ffn": F, "positions": P, "activation": act, "eps": eps}


# ----------------------------------------------------------------------------- the command

def _tensor_sha(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def import_hf(src: str, family: str, output: str, force: bool = False, seed: int = 1, log=print) -> dict:
    """Import ``src`` (an HF model directory) into the fairseq checkpoint ``output`` and write
    ``dict.txt`` next to it.  Raises B2BError (one line) on bad input; writes nothing then."""
    if family not in FAMILIES:
        raise B2BError(f"unknown --family '{family}': choose bert or gpt2")
    fam = FAMILIES[family]
    if not os.path.isdir(src):
        raise B2BError(f"'{src}' is not a directory: pass a HuggingFace model directory (config.json, weights, vocabulary)")
    from ..outputs import check_output

    # before anything is read: the output's kind, an existing file (--force), a folder that cannot be written
    check_output(output, "file", force, "--output", inputs={"SRC_DIR": src})
    config = read_config(src)
    check_model_type(config, fam, src)
    args, shape = arch_args(config, fam, src)
    tokens, vocab_path = read_vocab(src, fam)
    cfg_vocab = config.get("vocab_size")
    if cfg_vocab is not None and int(cfg_vocab) != len(tokens):
        raise B2BError(f"'{vocab_path}' has {len(tokens)} tokens but config.json says vocab_size={cfg_vocab}: "
                       "the vocabulary does not belong to these weights")
    hf_sd, weight_file = read_weights(src)
    embed_key = "embeddings.word_embeddings.weight" if fam == "bert" else "wte.weight"
    embed = _normalise_keys(hf_sd, "bert." if fam == "bert" else "transformer.").get(embed_key)
    if embed is None:
        raise B2BError(f"'{src}/{weight_file}' has no '{embed_key}': it is not a {HF_MODEL_TYPES[fam]} checkpoint")
    if embed.shape[0] != len(tokens) or embed.shape[1] != shape["dim"]:
        raise B2BError(f"'{vocab_path}' has {len(tokens)} tokens but the weights have {embed.shape[0]} embedding rows "
                       f"of size {embed.shape[1]} (config: {shape['dim']}): the vocabulary does not match the weights")
    mapping = build_mapping(fam, tokens, special_tokens_from_files(src), config)
    notes = []
    fs_sd, extra = (bert_state if fam == "bert" else gpt2_state)(hf_sd, config, mapping, src, notes)

    out_dir = os.path.dirname(os.path.abspath(output))
    final_dict = os.path.join(out_dir, "dict.txt")
    with staging_dir(out_dir, ".b2b-import-hf-") as tmp:
        dict_path = os.path.join(tmp, "dict.txt")
        write_dict(dict_path, mapping.fairseq_symbols)
        check_dict_roundtrip(dict_path, mapping.fairseq_symbols)
        if os.path.exists(final_dict) and not force:
            if load_dictionary(final_dict).symbols != mapping.fairseq_symbols:
                raise B2BError(f"'{final_dict}' exists with other symbols: write the checkpoint to another "
                               "directory or pass --force to replace that dictionary")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # reproducible init of what is not imported (a missing MLM head)
            cfg, task, model = build_fairseq(fam, tmp, args)
        if task.source_dictionary.symbols != mapping.fairseq_symbols:
            raise B2BError("the fairseq task changed the imported dictionary (internal error: please report)")
        state = model.state_dict()
        unknown = [k for k in fs_sd if k not in state]
        if unknown:
            raise B2BError(f"internal error: '{unknown[0]}' is not a parameter of the {cfg.model._name} model")
        state.update(fs_sd)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            msg = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), one_line(e)[:200])
            raise B2BError(f"the weights in '{src}' do not fit the shape of config.json ({msg[:200]})") from None
        model_state = model.state_dict()
        from ..models.common import dictionary_checksum

        meta = {
            "format": META_FORMAT, "family": fam, "model_type": config.get("model_type"), "source": os.path.abspath(src),
            "hf_config": config, **mapping.metadata(), "fairseq_dict_checksum": dictionary_checksum(task.source_dictionary),
            "tokenizer_files": _tokenizer_files(src, fam), **extra,
        }
        if fam == "bert" and not extra["mlm_head"]:
            meta["init_head_sha"] = _tensor_sha(model_state["encoder.lm_head.dense.weight"])
        cfg.task.data = out_dir
        ckpt_tmp = os.path.join(tmp, "checkpoint.pt")
        save_checkpoint(ckpt_tmp, cfg, model, {META_KEY: meta})
        os.replace(dict_path, final_dict)
        os.replace(ckpt_tmp, output)

    n_params = sum(v.numel() for k, v in model_state.items() if not k.endswith("version") and k not in
                   ("encoder.lm_head.weight", "decoder.output_projection.weight"))
    log(f"b2b-import-hf: {HF_MODEL_TYPES[fam]} from {src} ({weight_file}) -> {output} "
        f"[{cfg.model._name}: L={shape['layers']} D={shape['dim']} heads={shape['heads']} FFN={shape['ffn']} "
        f"positions={shape['positions']} act={shape['activation']} layernorm-eps={shape['eps']:g}; "
        f"{n_params / 1e6:.1f}M parameters]")
    specials = ", ".join(f"{tok} -> {sym}" for sym, (_, tok) in mapping.specials.items())
    added = f"; added (zero rows, no HF token): {' '.join(mapping.added)}" if mapping.added else ""
    log(f"b2b-import-hf: dictionary {final_dict}: {len(mapping.fairseq_symbols)} symbols from {len(tokens)} HF tokens; "
        f"{specials}{added}; every other token keeps its string and order")
    for note in notes:
        log(f"b2b-import-hf: {note}")
    return {"checkpoint": output, "dict": final_dict, "mapping": mapping, "notes": notes, "shape": shape}


def _tokenizer_files(src: str, family: str) -> dict:
    out = {}
    for name in TOKENIZER_FILES[family]:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out[name] = f.read()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="b2b-import-hf",
        description="Import a HuggingFace BERT or GPT-2 directory (offline) as a fairseq b2b_bert / b2b_gpt "
                    "checkpoint plus its dict.txt, ready for --init-from-small.")
    p.add_argument("src", metavar="SRC_DIR", help="HF model directory: config.json, model.safetensors or "
                   "pytorch_model.bin, vocab.txt (BERT) or vocab.json + merges.txt (GPT-2)")
    p.add_argument("--family", required=True, choices=sorted(FAMILIES), help="model family of SRC_DIR")
    p.add_argument("--output", required=True, metavar="CKPT", help="fairseq checkpoint to write; dict.txt goes next to it")
    p.add_argument("--force", action="store_true", help="replace an existing CKPT file, and an existing dict.txt with other "
                                                       "symbols next to it (default: off: both are refused)")
    p.add_argument("--seed", type=int, default=1, help="seed of the initialisation of parts HF does not have (MLM head; default: %(default)s)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with cli_errors("b2b-import-hf"):
        import_hf(args.src, args.family, args.output, force=args.force, seed=args.seed)


if __name__ == "__main__":
    main()
