"""fairseq glue of the growth operators: read a source checkpoint, grow it into a freshly
built ``b2b_`` model, and decide when not to (a run that resumes from its own checkpoint)."""
from __future__ import annotations

import logging
import os
import time


from .errors import B2BError
from .fairseq_args import option
from .growth import GrowthError, ModelShape, grow_state_dict, infer_shape
from .growth.grow import untied_outputs
from .growth.layout import detect_family
from .log_file import forward_to_fairseq_log_file

logger = logging.getLogger("fairseq_b2b.growth")
forward_to_fairseq_log_file()  # the growth record and the two-stage notes reach fairseq-train's --log-file


def load_checkpoint(path: str, what: str = "checkpoint") -> dict:
    """A fairseq checkpoint as a dict with ``model`` and ``cfg``/``args``; one-line errors that
    name the option (``what``) the path came from."""
    if path and os.path.isdir(path):
        found = sorted(name for name in os.listdir(path) if name.endswith(".pt"))
        found = sorted(found, key=lambda n: n not in ("checkpoint_best.pt", "checkpoint_last.pt"))[:3]
        raise B2BError(f"{what} '{path}' is a directory, not a checkpoint: pass a checkpoint file in it"
                       + (f" (it holds {', '.join(found)})" if found else " (it holds no .pt file)"))
    if not path or not os.path.isfile(path):
        raise B2BError(f"{what} '{path}' does not exist: pass the path of a fairseq checkpoint (.pt)")
    from fairseq import checkpoint_utils

    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as e:  # corrupt, truncated or not a torch file
        why = " ".join(str(e).split())
        why = why if len(why) <= 120 else why[:120].rsplit(" ", 1)[0] + " ..."  # whole words only
        raise B2BError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {why}): "
                       "it is corrupt or not a fairseq checkpoint") from None
    if not isinstance(state, dict) or "model" not in state:
        raise B2BError(f"checkpoint '{path}' has no 'model' state dict: it is not a fairseq checkpoint")
    return state


def checkpoint_model_args(state: dict):
    """The model's args of a checkpoint (a Namespace or a DictConfig), or None."""
    cfg = state.get("cfg")
    if cfg is not None and cfg.get("model") is not None:
        return cfg["model"]
    return state.get("args")


def model_shape(args, family: str, state_dict: dict | None = None) -> ModelShape:
    """ModelShape from a model's args (heads are only known there; the LLaMA family's key/value
    heads and head size too)."""
    side = "encoder" if family == "bert" else "decoder"
    if state_dict is not None:
        from .growth.layout import LAYOUTS

        return infer_shape(state_dict, LAYOUTS[family], int(option(args, f"{side}_attention_heads")))
    shape = (int(option(args, f"{side}_layers")), int(option(args, f"{side}_embed_dim")),
             int(option(args, f"{side}_ffn_embed_dim")), int(option(args, f"{side}_attention_heads")))
    if family == "llama":
        return ModelShape(*shape, kv_heads=int(option(args, "decoder_kv_heads") or shape[3]),
                          head_size=int(option(args, "decoder_head_dim") or shape[1] // shape[3]))
    return ModelShape(*shape)


def resume_checkpoint(args) -> str | None:
    """The checkpoint fairseq-train will restore after building the model, if any (mirrors
    fairseq.checkpoint_utils.load_checkpoint)."""
    save_dir = option(args, "save_dir")
    restore = option(args, "restore_file", "checkpoint_last.pt")
    if save_dir is None or restore is None:
        return None
    if restore == "checkpoint_last.pt":
        last = os.path.join(save_dir, f"checkpoint_last{option(args, 'checkpoint_suffix', '') or ''}.pt")
        if os.path.exists(last):
            return last
        finetune = option(args, "finetune_from_model")
        return finetune if finetune and os.path.exists(finetune) else None
    return restore if os.path.exists(restore) else None


def grow_into(model, target_family: str, target_args, dict_checksum: str | None, path: str, method: str,
              exact: bool, seed: int, embed_scale: float = 1.0, inherit_eps: bool = False,
              weighted_layernorm: bool | None = None, notes: tuple = (), what: str = "checkpoint") -> dict:
    """Grow the checkpoint at ``path`` into ``model`` in place; returns a report dict.

    With ``inherit_eps`` (the user set no ``--layernorm-eps``) the target takes the source's
    LayerNorm eps (e.g. 1e-12 of an imported HuggingFace BERT).  ``weighted_layernorm`` (default:
    ``exact``) gives the model weighted-statistics LayerNorms (``models.weighted_layernorm``);
    ``notes`` are logged and reported with the growth's own; ``what`` names the option ``path``
    came from in errors."""
    started = time.perf_counter()
    state = load_checkpoint(path, what)
    source_sd = state["model"]
    try:
        layout = detect_family(source_sd)
    except ValueError as e:
        raise B2BError(f"checkpoint '{path}': {e}") from None
    if layout.family != target_family:
        raise B2BError(f"checkpoint '{path}' is a {layout.family.upper()}-family model but the target arch is "
                       f"{target_family.upper()}-family: grow BERT into b2b_bert_*, GPT into b2b_gpt_* and LLaMA into "
                       "b2b_llama_*")
    src_args = checkpoint_model_args(state)
    src_checksum = option(src_args, "b2b_dictionary_checksum")
    target_sd = model.state_dict()
    vocab_src = source_sd[layout.embed_tokens].shape[0]
    vocab_tgt = target_sd[layout.embed_tokens].shape[0]
    if vocab_src != vocab_tgt or (src_checksum and dict_checksum and src_checksum != dict_checksum):
        raise B2BError(f"dictionary mismatch: '{path}' was trained with a {vocab_src}-symbol dictionary "
                       f"(checksum {src_checksum}), the target data has {vocab_tgt} (checksum {dict_checksum}); "
                       "binarize the target data with the source's dict.txt (fairseq-preprocess --srcdict)")
    if option(src_args, f"{'encoder' if target_family == 'bert' else 'decoder'}_attention_heads") is None:
        raise B2BError(f"checkpoint '{path}' does not record its attention heads: it is not a fairseq checkpoint")
    src_shape = model_shape(src_args, layout.family, source_sd)
    tgt_shape = model_shape(target_args, layout.family)
    source_sd = _adapt_embed_scale(source_sd, layout, src_args, embed_scale)
    result = grow_state_dict(source_sd, layout, src_shape, tgt_shape, method=method, exact=exact, seed=seed,
                             target_init=target_sd, weighted_layernorm=weighted_layernorm)
    model.load_state_dict(result.state_dict, strict=True)
    if result.layernorm_weights:  # the b2b_ models' WeightedLayerNormMixin (this module sits below models)
        model.install_layernorm_weights(result.layernorm_weights)
    result.notes[:0] = list(notes)
    eps = float(option(src_args, "layernorm_eps", None) or 1e-5) if inherit_eps else float(
        option(target_args, "layernorm_eps", None) or 1e-5)
    eps *= result.layernorm_eps_scale
    # recorded in the args; the model's LayerNorms get it from the caller (models.common.finish_build,
    # b2b-grow): this module sits below fairseq_b2b.models and never imports models.common
    if isinstance(target_args, dict):
        target_args["layernorm_eps"] = eps
    else:
        target_args.layernorm_eps = eps
    for note in result.notes:
        logger.warning(note)
    report = {
        "notes": result.notes,
        "source": path, "source_shape": str(src_shape), "target_shape": str(tgt_shape), "method": method,
        "exact": exact, "seed": seed, "layer_order": result.layer_order, "layernorm_eps_scale": result.layernorm_eps_scale,
        "layernorm": "weighted" if result.layernorm_weights else "standard", "layernorm_eps": eps,
        "untied_outputs": untied_outputs(layout, source_sd),
        "embed_dims": [src_shape.embed_dim, tgt_shape.embed_dim],
        "seconds": round(time.perf_counter() - started, 3),
    }
    logger.info(f"grew {src_shape} -> {tgt_shape} with {method}{' (exact)' if exact else ''} from {path} "
                f"in {report['seconds']:.2f}s; depth order {result.layer_order}"
                + (f"; {len(result.layernorm_weights)} weighted-statistics LayerNorms" if result.layernorm_weights else ""))
    return report


def _adapt_embed_scale(source_sd: dict, layout, src_args, target_embed_scale: float) -> dict:
    """A stock transformer_lm scales token embeddings by sqrt(D); fold the source's scale into
    its (tied) embedding and compensate on the LayerNorm that feeds the tied output, so that
    the source function is unchanged before it is grown into a target with another scale."""
    src_dim = source_sd[layout.embed_tokens].shape[1]
    src_scale = 1.0 if option(src_args, "no_scale_embedding", True) else src_dim ** 0.5
    ratio = src_scale / target_embed_scale
    if ratio == 1.0:
        return source_sd
    sd = dict(source_sd)
    untied = untied_outputs(layout, source_sd)
    sd[layout.embed_tokens] = sd[layout.embed_tokens] * ratio
    if untied:  # the output projection is its own matrix: the input scale does not reach it
        return sd
    for alias, original in layout.tied.items():
        if original == layout.embed_tokens and alias in sd:
            sd[alias] = sd[layout.embed_tokens]
    for p in layout.globals:
        if p.feeds_tied_output and p.name in sd:
            sd[p.name] = sd[p.name] / ratio
    return sd


def weighted_layernorm_choice(exact: bool, weighted: bool, task) -> tuple:
    """Whether ``--init-from-small`` gives the model weighted-statistics LayerNorms, and notes.

    They need a task that anneals them (``--growth-anneal-updates N > 0`` of the b2b tasks);
    otherwise the exact mode keeps standard LayerNorms (N = 0: the mean-filled exact mode)."""
    if not (exact or weighted):
        return False, ()
    task_cfg = getattr(task, "b2b_cfg", None)  # the two-stage tasks' config (language_modeling keeps no task.cfg)
    anneal = option(task_cfg if task_cfg is not None else getattr(task, "cfg", None), "growth_anneal_updates", None)
    if anneal:
        return True, ()
    why = ("--growth-anneal-updates 0" if anneal is not None else
           f"the task {type(task).__name__} does not anneal LayerNorms (the b2b_masked_lm / b2b_language_modeling tasks do)")
    if exact:
        return False, (f"{why}: the exact mode keeps standard LayerNorms (mean-filled stream entries, LayerNorm gains "
                       "and eps rescaled): exact for pre-LN models, and for post-LN at integer width ratios only",)
    return False, (f"{why}: --growth-weighted-layernorm is ignored, the LayerNorms stay standard",)


def maybe_grow(model, family: str, args, task, inherit_eps: bool = False) -> None:
    """The ``--init-from-small`` hook, called when a ``b2b_`` model is built."""
    path = option(args, "init_from_small")
    if not path:
        return
    resume = resume_checkpoint(args)
    if resume is not None:
        logger.info(f"--init-from-small: {resume} will be restored, growth from {path} skipped")
        try:
            restored = checkpoint_model_args(load_checkpoint(resume, what="the checkpoint to resume"))
        except GrowthError as e:  # truncated by a killed save, or not a checkpoint
            raise SystemExit(f"fairseq-b2b: error: {e}; move it away to grow from --init-from-small again, or pass "
                             "--restore-file with an intact checkpoint") from None
        eps = option(restored, "layernorm_eps", None)
        if inherit_eps and eps:  # the grown run's LayerNorm eps came from its source: keep it on resume
            args.layernorm_eps = float(eps)  # finish_build sets it on the model
        # as after a growth: the saved args say where the weights came from, and loading a
        # checkpoint of the resumed run never grows again
        args.b2b_grown_from = option(restored, "b2b_grown_from", None)
        args.init_from_small = None
        return
    exact = bool(option(args, "growth_exact", False))
    weighted, notes = weighted_layernorm_choice(exact, bool(option(args, "growth_weighted_layernorm", False)), task)
    try:
        report = grow_into(model, family, args, option(args, "b2b_dictionary_checksum"), path,
                           option(args, "growth_method", "aki"), exact,
                           int(option(args, "growth_seed", 1)), model.embed_scale_value(), inherit_eps,
                           weighted_layernorm=weighted, notes=notes, what="--init-from-small")
    except GrowthError as e:
        raise SystemExit(f"fairseq-b2b: error: {e}") from None
    # The checkpoints of this run already hold the grown weights: a later load of them (eval,
    # fine-tuning) must not grow again, so the saved args say where the weights came from.
    args.b2b_grown_from = report
    args.init_from_small = None
