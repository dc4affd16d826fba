"""``b2b-import-hf SRC --family bert|gpt2|llama --output CKPT``: a HuggingFace BERT / GPT-2 /
LLaMA directory (config.json, model.safetensors or pytorch_model.bin, vocab.txt, vocab.json +
merges.txt or tokenizer.json; read offline), or a llama.cpp GGUF file of a LLaMA, as a fairseq
checkpoint of a ``b2b_bert`` / ``b2b_gpt`` / ``b2b_llama`` model, plus the fairseq ``dict.txt`` next
to CKPT, ready for ``--init-from-small`` and growth.

This file is the command: it checks the inputs, writes the dictionary and the checkpoint
atomically and reports.  What is exact and what is not, family by family: ``hf/bert.py``,
``hf/gpt2.py`` and ``hf/llama.py`` (the tensor conversions); reading the HF directory:
``hf/hf_dir.py``; a GGUF file: ``hf/gguf.py``; the vocabulary mapping: ``hf/common.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

import torch

from ..errors import B2BError
from . import bert, gpt2, llama
from .common import (FAMILIES, HF_MODEL_TYPES, META_FORMAT, META_KEY, build_fairseq, build_mapping, check_dict_roundtrip,
                     cli_errors, load_dictionary, one_line, save_checkpoint, special_tokens_from_files, staging_dir,
                     write_dict)
from .gguf import describe, is_gguf, read_gguf
from .hf_dir import check_model_type, read_config, read_vocab, read_weights, tokenizer_files
from .state_dicts import normalise_keys

CONVERTERS = {"bert": bert, "gpt": gpt2, "llama": llama}  # fairseq_b2b family -> its HF conversion module
# family -> (model prefix of the HF tensor names, the token embedding under it)
EMBEDDINGS = {"bert": ("bert.", "embeddings.word_embeddings.weight"), "gpt": ("transformer.", "wte.weight"),
              "llama": ("model.", "embed_tokens.weight")}


# ----------------------------------------------------------------------------- the command

def _tensor_sha(t: torch.Tensor) -> str:
    return hashlib.sha1(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def import_hf(src: str, family: str, output: str, force: bool = False, seed: int = 1, log=print) -> dict:
    """Import ``src`` (an HF model directory) into the fairseq checkpoint ``output`` and write
    ``dict.txt`` next to it.  Raises B2BError (one line) on bad input; writes nothing then."""
    if family not in FAMILIES:
        raise B2BError(f"unknown --family '{family}': choose {', '.join(FAMILIES)}")
    fam = FAMILIES[family]
    gguf_file = os.path.isfile(src) and is_gguf(src)
    if not os.path.isdir(src) and not gguf_file:
        raise B2BError(f"'{src}' is not a directory: pass a HuggingFace model directory (config.json, weights, vocabulary)"
                       + (" or a GGUF file" if os.path.isfile(src) else ""))
    if gguf_file and fam != "llama":
        raise B2BError(f"'{src}' is a GGUF file but --family is {family}: GGUF files are read with --family llama")
    from ..outputs import check_output

    # before anything is read: the output's kind, an existing file (--force), a folder that cannot be written
    check_output(output, "file", force, "--output", inputs={"SRC_DIR": src})
    if gguf_file:
        gg = read_gguf(src)
        config, tokens, vocab_path, roles, tok_files = gg.config, gg.tokens, src, gg.roles, gg.tokenizer_files
        hf_sd, weight_file = gg.weights, f"GGUF: {describe(gg)}"
        args, shape = CONVERTERS[fam].arch_args(config, src)
    else:
        config = read_config(src)
        check_model_type(config, fam, src)
        args, shape = CONVERTERS[fam].arch_args(config, src)
        tokens, vocab_path = read_vocab(src, fam)
        roles, tok_files = special_tokens_from_files(src), tokenizer_files(src, fam)
    cfg_vocab = config.get("vocab_size")
    if cfg_vocab is not None and int(cfg_vocab) != len(tokens):
        raise B2BError(f"'{vocab_path}' has {len(tokens)} tokens but config.json says vocab_size={cfg_vocab}: "
                       "the vocabulary does not belong to these weights")
    if not gguf_file:
        hf_sd, weight_file = read_weights(src)
    prefix, embed_key = EMBEDDINGS[fam]
    embed = normalise_keys(hf_sd, prefix).get(embed_key)
    if embed is None:
        raise B2BError(f"'{src}/{weight_file}' has no '{embed_key}': it is not a {HF_MODEL_TYPES[fam]} checkpoint")
    if embed.shape[0] != len(tokens) or embed.shape[1] != shape["dim"]:
        raise B2BError(f"'{vocab_path}' has {len(tokens)} tokens but the weights have {embed.shape[0]} embedding rows "
                       f"of size {embed.shape[1]} (config: {shape['dim']}): the vocabulary does not match the weights")
    mapping = build_mapping(fam, tokens, roles, config)
    notes = []
    fs_sd, extra = CONVERTERS[fam].to_fairseq(hf_sd, config, mapping, src, notes)

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
            "tokenizer_files": tok_files, **extra,
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
    heads = f"{shape['heads']} kv-heads={shape['kv_heads']} head-dim={shape['head_dim']}" if "kv_heads" in shape \
        else shape["heads"]
    norm = f"rmsnorm-eps={shape['eps']:g} rope-theta={shape['rope_theta']:g} tied={shape['tied']}" if fam == "llama" \
        else f"layernorm-eps={shape['eps']:g}"
    log(f"b2b-import-hf: {HF_MODEL_TYPES[fam]} from {src} ({weight_file}) -> {output} "
        f"[{cfg.model._name}: L={shape['layers']} D={shape['dim']} heads={heads} FFN={shape['ffn']} "
        f"positions={shape['positions']} act={shape['activation']} {norm}; "
        f"{n_params / 1e6:.1f}M parameters]")
    specials = ", ".join(f"{tok} -> {sym}" for sym, (_, tok) in mapping.specials.items())
    added = f"; added (zero rows, no HF token): {' '.join(mapping.added)}" if mapping.added else ""
    log(f"b2b-import-hf: dictionary {final_dict}: {len(mapping.fairseq_symbols)} symbols from {len(tokens)} HF tokens; "
        f"{specials}{added}; every other token keeps its string and order")
    for note in notes:
        log(f"b2b-import-hf: {note}")
    return {"checkpoint": output, "dict": final_dict, "mapping": mapping, "notes": notes, "shape": shape}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="b2b-import-hf",
        description="Import a HuggingFace BERT, GPT-2 or LLaMA directory (offline), or a LLaMA GGUF file, as a fairseq "
                    "b2b_bert / b2b_gpt / b2b_llama checkpoint plus its dict.txt, ready for --init-from-small.")
    p.add_argument("src", metavar="SRC_DIR", help="HF model directory: config.json, model.safetensors or "
                   "pytorch_model.bin, vocab.txt (BERT), vocab.json + merges.txt (GPT-2) or tokenizer.json (LLaMA); "
                   "or a llama.cpp .gguf file (--family llama)")
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
