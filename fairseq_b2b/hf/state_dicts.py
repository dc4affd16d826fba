"""Helpers of the per-family converters (``hf/bert.py``, ``hf/gpt2.py``, ``hf/llama.py``): an
HF state dict read tensor by tensor with one-line errors, the key clean-up of HF checkpoints,
fairseq's learned-position offset, and the refusals of fairseq variants HF has no class for."""
from __future__ import annotations

import torch

from ..errors import B2BError

# HF activation name -> fairseq --activation-fn (same formula; gelu_new is the tanh approximation)
HF_TO_FAIRSEQ_ACT = {"gelu": "gelu", "gelu_new": "gelu_accurate", "gelu_fast": "gelu_accurate",
                     "gelu_pytorch_tanh": "gelu_accurate", "relu": "relu", "tanh": "tanh"}
FAIRSEQ_TO_HF_ACT = {"gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new", "relu": "relu", "tanh": "tanh"}


def model_arg(args, name, default=None):
    """An attribute of a checkpoint's model args (Namespace or OmegaConf), ``default`` if unset."""
    from ..fairseq_args import option

    return option(args, name, default)


class HFWeights:
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

    def no_leftovers(self, what: str) -> None:
        if self.sd:
            key = sorted(self.sd)[0]
            raise B2BError(f"the weights in '{self.src}' hold '{key}' ({len(self.sd)} unknown tensors) that a plain {what} "
                           "does not have: this variant is not supported")


def normalise_keys(sd: dict, prefix: str) -> dict:
    """Strip the model prefix (``bert.``, ``transformer.``, ``model.``); TF-converted checkpoints
    name LayerNorm parameters gamma/beta."""
    out = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            k = k[len(prefix):]
        if "LayerNorm." in k:
            k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def zero_pad_rows(t: torch.Tensor, rows: int = 2) -> torch.Tensor:
    """fairseq's learned positions start at padding_idx + 1 = 2: rows 0-1 are never read (zero)."""
    return torch.cat([t.new_zeros(rows, t.shape[1]), t])


def refuse_unless(ok: bool, what: str, arch: str, hf_name: str) -> None:
    """A fairseq variant without a HuggingFace class: one line naming what differs."""
    if not ok:
        raise B2BError(f"the checkpoint's {arch} model has {what}: it has no HuggingFace {hf_name} equivalent")


# ----------------------------------------------------------------------------- config.json <-> fairseq args

def config_value(config: dict, key: str, src: str, kind=int):
    """``config[key]`` as ``kind``; a missing or malformed value is a one-line error."""
    value = config.get(key)
    if value is None:
        raise B2BError(f"'{src}/config.json' has no '{key}'")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise B2BError(f"'{src}/config.json' has a bad '{key}': {value!r}") from None


def fairseq_activation(name, src) -> str:
    """HF activation name -> fairseq ``--activation-fn``."""
    if not isinstance(name, str) or name not in HF_TO_FAIRSEQ_ACT:
        raise B2BError(f"activation {name!r} of '{src}' is not supported (supported: {', '.join(HF_TO_FAIRSEQ_ACT)})")
    return HF_TO_FAIRSEQ_ACT[name]


def hf_activation(args) -> str:
    """fairseq ``--activation-fn`` of a checkpoint -> HF activation name."""
    act = model_arg(args, "activation_fn", "gelu")
    if act not in FAIRSEQ_TO_HF_ACT:
        raise B2BError(f"activation '{act}' has no HuggingFace equivalent (supported: {', '.join(FAIRSEQ_TO_HF_ACT)})")
    return FAIRSEQ_TO_HF_ACT[act]


def shared_arch_args(D: int, H: int, positions: int, act: str, eps: float, dropout: float, attn_dropout: float,
                     src: str) -> list:
    """The fairseq args every learned-position family takes after its shape args."""
    if D % H:
        raise B2BError(f"'{src}': hidden size {D} is not a multiple of the {H} attention heads")
    return ["--tokens-per-sample", positions, "--activation-fn", act, "--layernorm-eps", repr(eps),
            "--dropout", repr(dropout), "--attention-dropout", repr(attn_dropout), "--activation-dropout", "0.0"]
