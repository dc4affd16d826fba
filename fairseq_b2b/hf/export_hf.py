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
* LLaMA-family checkpoints become ``LlamaForCausalLM``; an exact-mode growth that still has its
  weighted RMSNorms is exported exactly with plain ones (the stream rescaled, ``hf/llama.py``).

Vocabulary: when the checkpoint came from ``b2b-import-hf`` (directly, or grown from such a
checkpoint: ``b2b_grown_from`` is followed while the source file exists, or ``--tokenizer-from``
names the imported checkpoint or the original HF directory), the HF vocabulary (vocab.txt,
vocab.json + merges.txt) is regenerated from the fairseq dict.txt with the original HF token ids,
and the model's rows are put back in that order.  Otherwise the dictionary is a fairseq one
(e.g. fastBPE): the weights and config are exported in fairseq's order and the tokenizer stays
fairseq's (dict.txt is copied next to them).

This file is the command (checks, the HF model built and checked key by key, the atomic write,
the report).  The tensor conversions: ``hf/bert.py``, ``hf/gpt2.py``; the dictionary and the
import's metadata: ``hf/export_inputs.py``; the tokenizer files: ``hf/export_tokenizer.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import os
import shutil
import sys

import torch

from ..errors import B2BError
from . import bert, gpt2, llama
from .common import (MASK, VocabMapping, cli_errors, load_dictionary, mapping_from_metadata, quiet_fairseq,
                     require_transformers, staging_dir)
from .export_inputs import find_metadata, inherited_config, resolve_dict, special_id_of
from .export_tokenizer import find_codes, write_generation_config, write_hf_tokenizer, write_xlm_tokenizer
from .state_dicts import model_arg


def _known_keys(sd: dict, family: str, L: int) -> None:
    """Every tensor of the checkpoint must be one the mapping reads (or a version buffer)."""
    from ..growth.layout import LAYOUTS

    layout = LAYOUTS[family]
    known = {p.name for p in layout.globals}
    known |= {layout.layer_key(i, p.name) for i in range(L) for p in layout.layer_params}
    if family == "llama":  # an exact-mode growth's RMSNorm statistics weights are folded into the export
        known |= {k for k in sd if k.endswith((".stat_weights", ".stat_blend"))}
    unknown = sorted(k for k in sd if k not in known and not k.endswith(".version"))
    if unknown:
        raise B2BError(f"the checkpoint holds '{unknown[0]}' ({len(unknown)} tensors) that a "
                       f"{ {'bert': 'BERT', 'gpt': 'GPT-2', 'llama': 'LLaMA'}[family]} has no place for (e.g. a "
                       "classification head): it cannot be exported")


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
    if model_arg(args, f"{side}_attention_heads") is None:
        raise B2BError(f"checkpoint '{ckpt}' does not record its attention heads: it is not a fairseq b2b_ checkpoint")
    ms = model_shape(args, family, sd)
    _known_keys(sd, family, ms.layers)
    embed_key = "encoder.sentence_encoder.embed_tokens.weight" if family == "bert" else "decoder.embed_tokens.weight"
    pos_key = embed_key.replace("embed_tokens", "embed_positions")
    if pos_key not in sd and family != "llama":  # LLaMA: rotary positions, no table
        raise B2BError(f"checkpoint '{ckpt}' has no learned positional embeddings: HuggingFace BERT/GPT-2 need them")
    positions = int(model_arg(args, "max_target_positions", 2048) or 2048) if family == "llama" else sd[pos_key].shape[0] - 2
    shape = {"layers": ms.layers, "dim": ms.embed_dim, "heads": ms.heads, "ffn": ms.ffn_dim, "positions": positions}

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
    base_config, special_id = inherited_config(meta, family), special_id_of(mapping, fairseq_mode)

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
        hf_sd = bert.to_hf(sd, args, shape["layers"], mapping, token_types, with_head)
        config = bert.hf_config(tr, args, shape, mapping, base_config, special_id, fairseq_mode, cls_name,
                                token_types.shape[0] if token_types is not None else 2)
    elif family == "llama":
        cls_name = "LlamaForCausalLM"
        hf_sd = llama.to_hf(sd, args, shape["layers"], mapping)
        config = llama.hf_config(tr, args, shape, mapping, base_config, special_id, fairseq_mode, cls_name,
                                 ms.kv_heads, ms.head_size, "decoder.output_projection.weight" not in sd)
    else:
        cls_name = "GPT2LMHeadModel"
        hf_sd = gpt2.to_hf(sd, args, shape["layers"], mapping)
        config = gpt2.hf_config(tr, args, shape, mapping, base_config, special_id, fairseq_mode, cls_name)

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
            tok_files = write_xlm_tokenizer(out, "gpt" if family == "llama" else family, symbols, codes_path, dpath,
                                            shape["positions"])
        elif fairseq_mode:
            shutil.copyfile(dpath, os.path.join(out, "dict.txt"))
            tok_files = ["dict.txt"]
        else:
            tok_files = write_hf_tokenizer(out, family, mapping, meta, shape["positions"], log)
        if family in ("gpt", "llama"):
            write_generation_config(tr, out, config)
        from ..checkpoints import follow_umask

        follow_umask(out)  # the process umask, not save_pretrained's private model.safetensors
        if os.path.exists(output):
            os.replace(output, os.path.join(tmp, "old"))
        os.replace(out, output)

    log(f"b2b-export-hf: {ckpt} -> {output} [{cls_name}: L={shape['layers']} D={shape['dim']} heads={shape['heads']} "
        f"FFN={shape['ffn']} positions={shape['positions']} act={config.to_dict().get('hidden_act', config.to_dict().get('activation_function'))} "
        + (f"kv-heads={ms.kv_heads} rms-norm-eps={float(model_arg(args, 'rms_norm_eps', 1e-5)):g}"
           f"{' (weighted RMSNorms folded into the stream)' if any(k.endswith('.stat_weights') for k in sd) else ''}]"
           if family == "llama" else f"layer-norm-eps={float(model_arg(args, 'layernorm_eps', 1e-5)):g}]"))
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
                                description="Export a fairseq b2b_bert / b2b_gpt / b2b_llama checkpoint as a HuggingFace directory "
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
