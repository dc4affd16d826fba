"""Tiny b2b_llama models built in-process (no fairseq-train), for the LLaMA-family tests."""
from argparse import Namespace

import torch
from fairseq.data import Dictionary

import fairseq_b2b  # noqa: F401  (registers b2b_llama)
from fairseq_b2b.models.llama import ARCHS, B2BLlamaModel

VOCAB = 40  # symbols of the test dictionary, fairseq's 4 specials included


class DictionaryTask:
    """The part of a fairseq task that ``build_model`` reads."""

    def __init__(self, vocab: int = VOCAB):
        d = Dictionary()
        for i in range(vocab - len(d)):
            d.add_symbol(f"w{i}")
        self.source_dictionary = self.target_dictionary = d


def build_llama(arch: str = "b2b_llama_tiny", seed: int = 0, **overrides) -> B2BLlamaModel:
    """``arch`` with its shape options replaced by ``overrides`` (decoder_embed_dim=..., ...), in eval mode."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    args = Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(seed)
    return B2BLlamaModel.build_model(args, DictionaryTask()).eval()


def randomize_norms(model, seed: int = 1) -> None:
    """RMSNorm gains away from 1 (a fresh model's are all 1), so growth tests see them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=gen))


def tokens(batch: int = 3, length: int = 12, seed: int = 0) -> torch.Tensor:
    """Random non-special token ids (no pad)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=gen)


__all__ = ["ARCHS", "DictionaryTask", "build_llama", "randomize_norms", "tokens", "VOCAB"]
