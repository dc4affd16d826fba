"""Algorithm 2's sub-models (line 2: the bottom lb, 2*lb, ..., Lt layers, the top lb of each
trained) and how one is sampled per update (line 5): uniformly, as a pure function of
(``--seed``, update), so that every data-parallel rank and a resumed run draw the same one.
A :class:`Submodel` is also what a baseline schedule's phase runs (:mod:`.schedules`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Submodel:
    """What one update runs: the bottom ``depth`` layers, of which ``trainable_from``..``depth``-1
    are trained (the ones below run forward-only), plus the LM head.

    ``train_embeddings``: the embedding block (token lookup, positions, embedding LayerNorm) is
    trained when the trained block starts at layer 0; False (Algorithm 2's stage 1) detaches the
    embedding output so that the block only moves through the tied output projection.
    ``shared``: every layer position runs layer 0's module (weight sharing)."""

    depth: int
    trainable_from: int
    train_embeddings: bool = False
    shared: bool = False

    @property
    def frozen_input(self) -> bool:
        """The lowest trained layer's input needs no gradient (FLOPs: no input-gradient matmuls)."""
        return self.trainable_from > 0 or not self.train_embeddings


def submodels(num_layers: int, lb: int, train_embeddings: bool = False) -> Tuple[Submodel, ...]:
    """Algorithm 2, line 2: depths lb, 2*lb, ..., and Lt (top lb layers trained).  With
    ``train_embeddings`` the bottom sub-model also trains the embedding block (line 6 read as
    forward and backward of the whole sub-model T')."""
    if not 1 <= lb <= num_layers:
        raise ValueError(f"--submodel-layers {lb} must be between 1 and the model's {num_layers} layers")
    depths = list(range(lb, num_layers + 1, lb))
    if depths[-1] != num_layers:
        depths.append(num_layers)
    return tuple(Submodel(d, d - lb, train_embeddings=train_embeddings) for d in depths)


class SubmodelSampler:
    """Algorithm 2, line 5: the sub-model of update ``u`` drawn uniformly, as a pure function
    of (seed, u) - a hash, not a stateful RNG - so all ranks and resumed runs agree."""

    def __init__(self, num_layers: int, lb: int, seed: int, train_embeddings: bool = False):
        self.submodels = submodels(num_layers, lb, train_embeddings)
        self.seed = int(seed)

    def index(self, update: int) -> int:
        digest = hashlib.sha256(f"fairseq-b2b/submodel/{self.seed}/{int(update)}".encode()).digest()
        return int.from_bytes(digest[:8], "little") % len(self.submodels)

    def sample(self, update: int) -> Submodel:
        return self.submodels[self.index(update)]
