"""One description of the parameter layout per model family.

Every parameter is described by what each of its axes means: which width it lives on
(``RES`` the residual stream / hidden size, ``HEAD`` the attention heads' neurons, ``FFN`` the
feed-forward neurons) and whether that axis is an out-dimension (rows that are copied, eq. 8)
or an in-dimension (columns that are copied and divided by their copy count, eq. 7).  BERT
and GPT share all expansion code and differ only in these tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

RES, HEAD, FFN = "res", "head", "ffn"
OUT, IN = "out", "in"


@dataclass(frozen=True)
class Param:
    """How one parameter tensor is widened.

    ``axes`` has one entry per tensor axis: ``None`` (left as it is, e.g. the vocabulary) or
    ``(width, OUT|IN)``.  ``norm`` is ``"weight"``/``"bias"`` for LayerNorm parameters (eq. 13).
    ``feeds_tied_output`` marks the LayerNorm right before the tied output embedding: its
    output is read by the *copied* (not divided) embedding columns, so it is divided by the
    copy counts instead.
    """

    name: str
    axes: tuple
    norm: str | None = None
    feeds_tied_output: bool = False


def _linear(name: str, out_width: str, in_width: str) -> tuple[Param, Param]:
    return (Param(f"{name}.weight", ((out_width, OUT), (in_width, IN))), Param(f"{name}.bias", ((out_width, OUT),)))


def _layernorm(name: str, feeds_tied_output: bool = False) -> tuple[Param, Param]:
    return (
        Param(f"{name}.weight", ((RES, OUT),), norm="weight", feeds_tied_output=feeds_tied_output),
        Param(f"{name}.bias", ((RES, OUT),), norm="bias", feeds_tied_output=feeds_tied_output),
    )


# fairseq's TransformerEncoderLayer and TransformerDecoderLayer (without encoder attention)
# name their parameters the same way.
TRANSFORMER_LAYER = (
    *_linear("self_attn.q_proj", HEAD, RES),
    *_linear("self_attn.k_proj", HEAD, RES),
    *_linear("self_attn.v_proj", HEAD, RES),
    *_linear("self_attn.out_proj", RES, HEAD),
    *_layernorm("self_attn_layer_norm"),
    *_linear("fc1", FFN, RES),
    *_linear("fc2", RES, FFN),
    *_layernorm("final_layer_norm"),
)


@dataclass(frozen=True)
class FamilyLayout:
    """Where a family keeps its parameters in a fairseq state dict."""

    family: str
    layer_prefix: str  # e.g. "decoder.layers." ; layer i lives under f"{layer_prefix}{i}."
    embed_tokens: str
    globals: tuple  # Params outside the layers, full keys
    tied: dict = field(default_factory=dict)  # alias key -> key it shares storage with
    pre_ln: bool = False
    layer_params: tuple = TRANSFORMER_LAYER
    untie_hint: str = ""  # how to build a target whose output projection is untied (one-line errors)

    def layer_key(self, layer: int, name: str) -> str:
        return f"{self.layer_prefix}{layer}.{name}"

    def num_layers(self, state_dict) -> int:
        pattern = re.compile(re.escape(self.layer_prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
        return max(found) + 1 if found else 0

    def is_layer_key(self, key: str) -> bool:
        return key.startswith(self.layer_prefix)


BERT = FamilyLayout(
    family="bert",
    layer_prefix="encoder.sentence_encoder.layers.",
    embed_tokens="encoder.sentence_encoder.embed_tokens.weight",
    globals=(
        Param("encoder.sentence_encoder.embed_tokens.weight", (None, (RES, OUT))),
        Param("encoder.sentence_encoder.embed_positions.weight", (None, (RES, OUT))),
        *_layernorm("encoder.sentence_encoder.layernorm_embedding"),
        *_linear("encoder.lm_head.dense", RES, RES),
        *_layernorm("encoder.lm_head.layer_norm", feeds_tied_output=True),
        Param("encoder.lm_head.weight", (None, (RES, OUT))),
        Param("encoder.lm_head.bias", (None,)),
    ),
    tied={"encoder.lm_head.weight": "encoder.sentence_encoder.embed_tokens.weight"},
    pre_ln=False,
    untie_hint="build the target with --untie-weights-roberta (b2b-grow takes it from the source)",
)

GPT = FamilyLayout(
    family="gpt",
    layer_prefix="decoder.layers.",
    embed_tokens="decoder.embed_tokens.weight",
    globals=(
        Param("decoder.embed_tokens.weight", (None, (RES, OUT))),
        Param("decoder.embed_positions.weight", (None, (RES, OUT))),
        *_layernorm("decoder.layernorm_embedding"),
        *_layernorm("decoder.layer_norm", feeds_tied_output=True),
        Param("decoder.output_projection.weight", (None, (RES, OUT))),
    ),
    tied={"decoder.output_projection.weight": "decoder.embed_tokens.weight"},
    pre_ln=True,
    untie_hint=("grow it with b2b-grow, which builds the b2b_gpt target untied like its source (a b2b_gpt "
                "that fairseq-train builds always ties them)"),
)

LAYOUTS = {"bert": BERT, "gpt": GPT}


def detect_family(state_dict) -> FamilyLayout:
    """The layout whose token embedding key the state dict has."""
    for layout in LAYOUTS.values():
        if layout.embed_tokens in state_dict:
            return layout
    raise ValueError("state dict is neither a BERT-family (roberta) nor a GPT-family (transformer_lm) model")
