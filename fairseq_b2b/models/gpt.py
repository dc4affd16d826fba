"""The GPT family: pre-LN decoder, causal LM, tied output embedding (fairseq transformer_lm)."""
from __future__ import annotations

from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig, base_lm_architecture

from .common import SubmodelMixin, WeightedLayerNormMixin, add_growth_args, finish_build, register_shapes


@register_model("b2b_gpt")
class B2BGPTModel(WeightedLayerNormMixin, SubmodelMixin, TransformerLanguageModel):
    """fairseq's transformer_lm as GPT (pre-LN, GELU, learned positions, tied embeddings,
    unscaled input embeddings) with the bert2BERT options."""

    family = "gpt"

    @staticmethod
    def add_args(parser):
        # no defaults: the b2b_gpt_* architecture functions fill in what the user did not set
        gen_parser_from_dataclass(parser, TransformerLanguageModelConfig(), delete_default=True)
        add_growth_args(parser)

    @classmethod
    def build_model(cls, args, task):
        gpt_architecture(args)
        return finish_build(super().build_model(args, task), args, task)

    def layer_stack_owner(self):
        return self.decoder

    def embed_scale_value(self) -> float:
        return float(self.decoder.embed_scale or 1.0)


@register_model_architecture("b2b_gpt", "b2b_gpt")
def gpt_architecture(args):
    args.layernorm_eps = getattr(args, "layernorm_eps", None)
    args.activation_fn = getattr(args, "activation_fn", "gelu")
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", True)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
    args.no_scale_embedding = getattr(args, "no_scale_embedding", True)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    base_lm_architecture(args)


ARCHS = {
    "b2b_gpt_base": (12, 768, 12),
    "b2b_gpt_12_512": (12, 512, 8),
    "b2b_gpt_6_512": (6, 512, 8),
    "b2b_gpt_medium": (24, 1024, 16),
    "b2b_gpt_tiny": (2, 64, 2),
    "b2b_gpt_tiny_wide": (2, 128, 4),
    "b2b_gpt_tiny_deep": (4, 128, 4),
    "b2b_gpt_mini": (4, 128, 4),
    "b2b_gpt_mini_wide": (4, 256, 8),
}


register_shapes("b2b_gpt", "decoder", ARCHS, gpt_architecture)
