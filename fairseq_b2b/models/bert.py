"""The BERT family: post-LN encoder, masked LM, tied output embedding (fairseq RoBERTa)."""
from __future__ import annotations

from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_architecture

from .common import SubmodelMixin, WeightedLayerNormMixin, add_growth_args, finish_build, register_shapes


@register_model("b2b_bert")
class B2BBertModel(WeightedLayerNormMixin, SubmodelMixin, RobertaModel):
    """RoBERTa's encoder with the bert2BERT options (``--init-from-small`` grows on build)."""

    family = "bert"

    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        add_growth_args(parser)

    @classmethod
    def build_model(cls, args, task):
        bert_architecture(args)
        return finish_build(super().build_model(args, task), args, task)

    def layer_stack_owner(self):
        return self.encoder.sentence_encoder

    def embed_scale_value(self) -> float:
        return float(self.encoder.sentence_encoder.embed_scale or 1.0)


@register_model_architecture("b2b_bert", "b2b_bert")
def bert_architecture(args):
    """BERT: post-LN, GELU, learned positions, embedding LayerNorm, tied MLM head."""
    args.layernorm_eps = getattr(args, "layernorm_eps", None)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    roberta_base_architecture(args)


ARCHS = {
    # name: (layers, embed dim, heads); FFN is 4x the embed dim
    "b2b_bert_base": (12, 768, 12),
    "b2b_bert_large": (24, 1024, 16),
    "b2b_bert_12_512": (12, 512, 8),
    "b2b_bert_6_512": (6, 512, 8),
    "b2b_bert_12_384": (12, 384, 6),
    "b2b_bert_6_768": (6, 768, 12),
    # tiny shapes for tests and the CPU demo (head size 32 like the small ones)
    "b2b_bert_tiny": (2, 64, 2),
    "b2b_bert_tiny_wide": (2, 128, 4),
    "b2b_bert_tiny_deep": (4, 128, 4),
    "b2b_bert_mini": (4, 128, 4),
    "b2b_bert_mini_wide": (4, 256, 8),
}


register_shapes("b2b_bert", "encoder", ARCHS, bert_architecture)
