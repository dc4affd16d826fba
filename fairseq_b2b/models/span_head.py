"""A span head for extractive QA on the ``b2b_bert`` encoder, built the way fairseq builds
RoBERTa's classification heads: it lives in ``model.classification_heads[name]`` with the
same ``dense`` -> activation -> ``out_proj`` layout (``out_proj`` has 2 outputs: start and
end), so fairseq's checkpoint code treats it like any head: ``--restore-file`` /
``--finetune-from-model`` of a pre-trained checkpoint (no head) adds it with its fresh
weights, and a fine-tuned checkpoint loads it back.  Unlike the sentence head, it scores
every position: ``model(src_tokens, classification_head_name=name)`` returns (B, T, 2).
"""
from __future__ import annotations

from torch import nn

SPAN_HEAD = "squad_span_head"


class SpanHead(nn.Module):
    def __init__(self, input_dim: int, inner_dim: int, activation_fn: str = "tanh", dropout: float = 0.0):
        super().__init__()
        from fairseq import utils

        self.dense = nn.Linear(input_dim, inner_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.dropout = nn.Dropout(p=dropout)
        self.out_proj = nn.Linear(inner_dim, 2)

    def forward(self, features, **kwargs):
        x = self.dropout(features)
        x = self.activation_fn(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)


def register_span_head(model, name: str = SPAN_HEAD) -> SpanHead:
    """Add (or return) the span head ``name`` of a RoBERTa-style model."""
    heads = getattr(model, "classification_heads", None)
    if heads is None:
        raise ValueError(f"{type(model).__name__} has no classification heads: span heads need a BERT-family model")
    if name in heads:
        if not isinstance(heads[name], SpanHead):
            raise ValueError(f"classification head {name!r} of the model is not a span head")
        return heads[name]
    args = model.args
    dim = int(args.encoder_embed_dim)
    heads[name] = SpanHead(dim, dim, getattr(args, "pooler_activation_fn", "tanh"),
                           float(getattr(args, "pooler_dropout", 0.0) or 0.0))
    return heads[name]
