"""``--criterion b2b_span``: cross-entropy over the start and the end position of the answer
span (SQuAD), as BERT fine-tunes: per window ``(CE(start) + CE(end)) / 2`` over the window's
non-padding positions; a window without the answer has both targets at ``<s>`` (position 0).
``loss`` is summed over the batch with ``sample_size`` = windows, so fairseq's reported loss is
the mean (in base 2, like every fairseq loss)."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..models.span_head import SPAN_HEAD


@dataclass
class SpanCriterionConfig(FairseqDataclass):
    pass


def span_loss(logits: torch.Tensor, src_tokens: torch.Tensor, pad: int, start: torch.Tensor, end: torch.Tensor):
    """(summed loss, start logits, end logits): ``logits`` (B, T, 2); padding masked out."""
    logits = logits.float().masked_fill(src_tokens.eq(pad).unsqueeze(-1), -math.inf)
    start_logits, end_logits = logits[..., 0], logits[..., 1]
    loss_start = F.cross_entropy(start_logits, start, reduction="sum")
    loss_end = F.cross_entropy(end_logits, end, reduction="sum")
    return (loss_start + loss_end) / 2, start_logits, end_logits


@register_criterion("b2b_span", dataclass=SpanCriterionConfig)
class SpanCriterion(FairseqCriterion):
    span_head_name = SPAN_HEAD  # the head --task b2b_squad adds

    def __init__(self, task):
        super().__init__(task)

    def forward(self, model, sample, reduce=True):
        src_tokens = sample["net_input"]["src_tokens"]
        logits, _ = model(**sample["net_input"], features_only=True, classification_head_name=self.span_head_name)
        start, end = sample["target"]["start"], sample["target"]["end"]
        loss, start_logits, end_logits = span_loss(logits, src_tokens, self.padding_idx, start, end)
        sample_size = start.numel()
        both = (start_logits.argmax(-1).eq(start) & end_logits.argmax(-1).eq(end)).sum()
        logging_output = {"loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample_size,
                          "sample_size": sample_size, "ncorrect": both.data}
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ncorrect = sum(log.get("ncorrect", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / max(1, sample_size) / math.log(2), sample_size, round=3)
        metrics.log_scalar("span_acc", 100.0 * ncorrect / max(1, sample_size), sample_size, round=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
