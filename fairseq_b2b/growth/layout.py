"""One description of the parameter layout per model family.

Every parameter is described by what each of its axes means: which width it lives on
(``RES`` the residual stream / hidden size, ``HEAD`` the attention heads' neurons, ``FFN`` the
feed-forward neurons, ``KV`` the key/value heads' neurons of grouped-query attention) and whether
that axis is an out-dimension (rows that are copied, eq. 8) or an in-dimension (columns that are
copied and divided by their copy count, eq. 7).  BERT, GPT and LLaMA share all expansion code
and differ only in these tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

RES, HEAD, FFN, KV = "res", "head", "ffn", "kv"
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


def _rmsnorm(name: str, feeds_tied_output: bool = False) -> tuple[Param]:
    """RMSNorm: a gain and no bias; it follows the stream like LayerNorm's (eq. 13)."""
    return (Param(f"{name}.weight", ((RES, OUT),), norm="weight", feeds_tied_output=feeds_tied_output),)


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


# b2b_llama's LlamaDecoderLayer: pre-RMSNorm, GQA (query heads on HEAD, key/value heads on KV),
# SwiGLU (gate and up rows are FFN out-dimensions, down's columns FFN in-dimensions), no biases.
LLAMA_LAYER = (
    *_rmsnorm("attn_norm"),
    Param("self_attn.q_proj.weight", ((HEAD, OUT), (RES, IN))),
    Param("self_attn.k_proj.weight", ((KV, OUT), (RES, IN))),
    Param("self_attn.v_proj.weight", ((KV, OUT), (RES, IN))),
    Param("self_attn.o_proj.weight", ((RES, OUT), (HEAD, IN))),
    *_rmsnorm("ffn_norm"),
    Param("ffn.gate_proj.weight", ((FFN, OUT), (RES, IN))),
    Param("ffn.up_proj.weight", ((FFN, OUT), (RES, IN))),
    Param("ffn.down_proj.weight", ((RES, OUT), (FFN, IN))),
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
    ffn_in_key: str = "fc1.weight"  # a layer's FFN input matrix: its rows give the FFN width
    norm: str = "layernorm"  # or "rmsnorm" (no centring: the mean-filled exact mode does not apply)
    grouped_query: bool = False  # key/value heads on their own width KV (GQA)

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

LLAMA = FamilyLayout(
    family="llama",
    layer_prefix="decoder.layers.",
    embed_tokens="decoder.embed_tokens.weight",
    globals=(
        Param("decoder.embed_tokens.weight", (None, (RES, OUT))),
        *_rmsnorm("decoder.norm", feeds_tied_output=True),
        Param("decoder.output_projection.weight", (None, (RES, OUT))),
    ),
    # a tied b2b_llama keeps only decoder.embed_tokens.weight; an untied one has both keys
    tied={"decoder.output_projection.weight": "decoder.embed_tokens.weight"},
    pre_ln=True,
    layer_params=LLAMA_LAYER,
    untie_hint="build the target without --share-decoder-input-output-embed (b2b-grow takes it from the source)",
    ffn_in_key="ffn.up_proj.weight",
    norm="rmsnorm",
    grouped_query=True,
)

LAYOUTS = {"bert": BERT, "gpt": GPT, "llama": LLAMA}


def detect_family(state_dict) -> FamilyLayout:
    """The layout whose token embedding key the state dict has and whose layers (if any) have
    its FFN (GPT and LLaMA share ``decoder.embed_tokens.weight``)."""
    for layout in LAYOUTS.values():
        if layout.embed_tokens in state_dict and (
                not layout.num_layers(state_dict) or layout.layer_key(0, layout.ffn_in_key) in state_dict):
            return layout
    raise ValueError("state dict is neither a BERT-family (roberta), a GPT-family (transformer_lm) nor a "
                     "LLaMA-family (b2b_llama) model")
