"""What ``b2b-export-hf`` needs besides the weights: the checkpoint's fairseq dictionary, the
metadata of the HF import it descends from (its own record, the checkpoint it was grown from,
``--tokenizer-from``), and the HF config and special-token ids inherited from that import."""
from __future__ import annotations

import os

from ..errors import B2BError
from .common import META_KEY, VocabMapping, build_mapping, quiet_fairseq, special_tokens_from_files
from .state_dicts import model_arg

# keys of an imported config.json that describe the file, not the model
CONFIG_DROP = ("_name_or_path", "transformers_version", "architectures", "torch_dtype", "dtype", "auto_map")


def resolve_dict(ckpt: str, state: dict, dict_path: str | None) -> str:
    """``--dict``, else the dict.txt next to ``ckpt``, else the one in its training data directory."""
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


def hf_dir_metadata(src: str, family: str) -> dict:
    """Metadata as b2b-import-hf records it, read from the original HF directory."""
    from .hf_dir import read_config, read_vocab, tokenizer_files

    config = read_config(src)
    tokens, _ = read_vocab(src, family)
    mapping = build_mapping(family, tokens, special_tokens_from_files(src), config)
    return {"family": family, "hf_config": config, **mapping.metadata(), "tokenizer_files": tokenizer_files(src, family),
            "source": os.path.abspath(src), "token_type_embeddings": None}


def find_metadata(state: dict, args, family: str, tokenizer_from: str | None, ckpt: str | None = None):
    """(metadata of the HF import or None, where it came from, whether it is the checkpoint's own)."""
    from ..growth_hook import checkpoint_model_args, load_checkpoint
    from ..paths import resolve_file

    if tokenizer_from == "none":
        return None, None, False
    if tokenizer_from:
        if os.path.isdir(tokenizer_from):
            return hf_dir_metadata(tokenizer_from, family), tokenizer_from, False
        meta = load_checkpoint(tokenizer_from).get(META_KEY)
        if not meta:
            raise B2BError(f"--tokenizer-from '{tokenizer_from}' is not a checkpoint written by b2b-import-hf "
                           "(nor an HF model directory)")
        return meta, tokenizer_from, False
    if state.get(META_KEY):
        return state[META_KEY], "the checkpoint", True
    seen = set()
    for _ in range(8):  # follow b2b_grown_from back to an imported checkpoint
        grown = model_arg(args, "b2b_grown_from")
        source = model_arg(grown, "source") if grown is not None else None
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


def inherited_config(meta: dict | None, family: str) -> dict:
    """The imported config.json (when the import was of this family), minus file-level keys."""
    base = dict(meta.get("hf_config") or {}) if meta and meta.get("family", family) == family else {}
    for k in CONFIG_DROP:
        base.pop(k, None)
    return base


def special_id_of(mapping: VocabMapping, fairseq_mode: bool):
    """``symbol -> id`` in the exported vocabulary of a fairseq special (None if it has none):
    the fairseq id when the vocabulary is fairseq's, else the HF id recorded at import."""
    def special_id(symbol):
        if fairseq_mode:
            return mapping.fairseq_symbols.index(symbol) if symbol in mapping.fairseq_symbols else None
        return mapping.specials[symbol][0] if symbol in mapping.specials else None

    return special_id
