"""Training schedules: which layers each update runs and trains, and what happens between phases.

The model is always built at the full target depth ``Lt`` (checkpoints have the target arch and
load anywhere); a schedule decides, per update, the :class:`Submodel` that runs - a pure
function of (epoch, update) - and, at each phase boundary, which weights are copied and which
optimizer state is reset or copied (a :class:`Boundary`). :class:`~.two_stage.TwoStageMixin`
consults the schedule and does the rest (forward, restricted optimizer step, FLOPs, the
boundary surgery, checkpointed "last boundary applied").

* :class:`TwoStageSchedule` - bert2BERT's Algorithm 2 (``--submodel-epochs Eb``): in epochs
  1..Eb one sub-model sampled per update; the embedding block is not trained (its output is
  detached).
* :class:`StackingSchedule` - StackBERT (Gong et al., 2019; ``--stacking-schedule 3:5,6:7,12:28``):
  train the bottom ``d_1`` layers for ``e_1`` epochs, stack them to ``d_2`` (new layer ``j`` is
  a copy of layer ``j mod d_1``: for a doubling, layer ``n+i`` = layer ``i``), train ``e_2``
  epochs, ... The whole active model is trained, embeddings included.
* :class:`MSLTSchedule` - MSLT (Yang et al., 2020; ``--mslt-layers 3 --mslt-stage-epochs 8``):
  stage 1 trains a ``k``-layer model (all of it) for ``E`` epochs; each further stage copies
  the current top ``k`` layers on top and trains only the new top ``k`` layers and the LM head
  (layers below run forward-only under ``no_grad``) for ``E`` epochs, until the target depth;
  the remaining epochs train the full model.
* :class:`ShareThenUnshareSchedule` - share-then-unshare (``--share-layers-until N`` or
  ``epoch:N``): all layers run layer 0's weights until then, after which every layer gets its
  own copy of the shared weights and of their optimizer state.

Validation inside ``fairseq-train`` runs the model being trained: the active depth of the phase
whose weights the model holds (StackBERT, MSLT; all layers for Algorithm 2 and sharing, whose
layers are mirrored). A mid-schedule checkpoint evaluated *outside* ``fairseq-train``
(``fairseq-eval-lm``, ``fairseq-validate``, the hub interface, b2b's own evaluation) runs all
``Lt`` layers, including the untrained ones above the active depth: only checkpoints from the
last phase of a StackBERT/MSLT schedule are meaningful there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

from .submodel_sampling import Submodel, SubmodelSampler, submodels  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Boundary:
    """What happens when phase ``index`` starts (before its first update).

    ``copies``: (source layer, destination layer) weight copies, in order; ``reset``: layers whose
    optimizer state is dropped (Adam: moments 0 and step 0 at their next update, so that bias
    correction restarts with the fresh moments); ``untie``: layer 0's optimizer state (moments,
    step) is copied to every other layer."""

    index: int
    copies: Tuple[Tuple[int, int], ...] = ()
    reset: Tuple[int, ...] = ()
    untie: bool = False
    message: str = ""


def _span(a: int, b: int) -> str:
    """Layers a..b-1 as text."""
    return f"layer {a}" if b - a == 1 else f"layers {a}..{b - 1}"


class TrainingSchedule:
    """Base: one phase, the full model (``submodel`` None = the parent task's own step)."""

    method = "full"

    def __init__(self, num_layers: int):
        self.num_layers = int(num_layers)

    def phase(self, epoch: int, update: int) -> int:
        """Index of the phase that update ``update`` (0-based) of epoch ``epoch`` belongs to."""
        return 0

    def submodel(self, epoch: int, update: int) -> Optional[Submodel]:
        return None

    def boundary(self, index: int) -> Optional[Boundary]:
        """What to do when phase ``index`` starts (None: nothing)."""
        return None

    def eval_depth(self, phase: int) -> Optional[int]:
        """Depth validation runs at once phase ``phase`` holds the weights (None: all layers)."""
        return None

    def phase_description(self, phase: int) -> str:
        return "full model"

    def describe(self) -> str:
        return self.method

    def _is_full(self, sub: Submodel) -> bool:
        return sub.depth == self.num_layers and sub.trainable_from == 0 and sub.train_embeddings and not sub.shared


class TwoStageSchedule(TrainingSchedule):
    """bert2BERT's Algorithm 2: sampled sub-models in epochs 1..Eb, the full model afterwards."""

    method = "two-stage"

    def __init__(self, num_layers: int, lb: int, eb: int, seed: int, train_embeddings: bool = False):
        super().__init__(num_layers)
        self.sampler = SubmodelSampler(num_layers, lb, seed, train_embeddings)
        self.eb = int(eb)

    def phase(self, epoch, update):
        return 0 if epoch <= self.eb else 1

    def submodel(self, epoch, update):
        return self.sampler.sample(update) if epoch <= self.eb else None

    def phase_description(self, phase):
        if phase == 0:
            return "stage 1 (sub-model training, Algorithm 2 lines 3-9)"
        return "stage 2 (full-model training, Algorithm 2 lines 10-15)"

    def describe(self):
        desc = ", ".join(f"{s.depth} (trains {s.trainable_from}..{s.depth - 1})" for s in self.sampler.submodels)
        return (f"two-stage training (Algorithm 2): epochs 1..{self.eb} train sub-models of depth {desc} + the "
                f"shared head, one sampled per update; full model afterwards")


class _EpochPhases(TrainingSchedule):
    """Phases that each last a number of epochs; the last one runs until the end of training."""

    def __init__(self, num_layers: int, phases: Tuple[Tuple[Submodel, int], ...]):
        super().__init__(num_layers)
        self.phases = tuple(phases)  # (submodel, epochs)
        starts, e = [], 1
        for _, epochs in self.phases:
            starts.append(e)
            e += epochs
        self.starts = tuple(starts)  # first epoch of each phase

    @property
    def epochs(self) -> int:
        return sum(e for _, e in self.phases)

    def phase(self, epoch, update):
        index = 0
        for i, start in enumerate(self.starts):
            if epoch >= start:
                index = i
        return index

    def submodel(self, epoch, update):
        sub = self.phases[self.phase(epoch, update)][0]
        return None if self._is_full(sub) else sub

    def eval_depth(self, phase):
        return self.phases[min(max(phase, 0), len(self.phases) - 1)][0].depth

    def _epochs_text(self, i: int) -> str:
        first = self.starts[i]
        if i == len(self.phases) - 1:
            return f"epochs {first}.."
        last = first + self.phases[i][1] - 1
        return f"epoch {first}" if first == last else f"epochs {first}..{last}"

    def phase_description(self, phase):
        sub = self.phases[phase][0]
        trained = _span(sub.trainable_from, sub.depth)
        extra = " + embeddings" if sub.trainable_from == 0 else ""
        return (f"{self.method} phase {phase + 1}/{len(self.phases)}: depth {sub.depth}, trains {trained}{extra} "
                f"+ LM head" + ("" if sub.trainable_from == 0 else f" ({_span(0, sub.trainable_from)} forward-only)"))

    def describe(self):
        return f"{self.method}: " + "; ".join(
            f"{self._epochs_text(i)} {self.phase_description(i).split(': ', 1)[1]}" for i in range(len(self.phases)))


class StackingSchedule(_EpochPhases):
    """StackBERT: progressive stacking by ``(depth, epochs)`` pairs; each phase trains the whole
    active model, and each boundary stacks the trained layers (layer j <- layer j mod d)."""

    method = "StackBERT"

    def __init__(self, num_layers: int, stages: Tuple[Tuple[int, int], ...]):
        super().__init__(num_layers, tuple((Submodel(d, 0, train_embeddings=True), e) for d, e in stages))

    def boundary(self, index):
        if index == 0:
            return None
        prev, new = self.phases[index - 1][0].depth, self.phases[index][0].depth
        copies = tuple((j % prev, j) for j in range(prev, new))
        return Boundary(index, copies=copies, reset=tuple(range(prev, new)), message=(
            f"StackBERT: stacked depth {prev} -> {new}: {_span(prev, new)} <- copies of "
            + ("layers " + ", ".join(str(s) for s, _ in copies) if new > 2 * prev else _span(0, new - prev))
            + f"; optimizer state of {_span(prev, new)} reset (Adam moments 0, step 0); "
              f"{_span(0, prev)}, embeddings and head keep theirs"))


class MSLTSchedule(_EpochPhases):
    """MSLT: stage 1 trains the bottom ``k`` layers; stage s > 1 copies the top ``k`` trained
    layers on top and trains only them + the head; then the full model."""

    method = "MSLT"

    def __init__(self, num_layers: int, k: int, stage_epochs: int, total_epochs: int = 0):
        stages = num_layers // k
        phases = [(Submodel(k, 0, train_embeddings=True), stage_epochs)]
        phases += [(Submodel((s + 1) * k, s * k, train_embeddings=True), stage_epochs) for s in range(1, stages)]
        phases.append((Submodel(num_layers, 0, train_embeddings=True), max(1, total_epochs - stages * stage_epochs)))
        super().__init__(num_layers, tuple(phases))
        self.k, self.stages = k, stages

    def boundary(self, index):
        if index == 0:
            return None
        k = self.k
        if index < self.stages:
            top = index * k
            copies = tuple((top - k + i, top + i) for i in range(k))
            return Boundary(index, copies=copies, reset=tuple(range(top, top + k)), message=(
                f"MSLT: stage {index + 1}/{self.stages}: {_span(top, top + k)} <- copies of the top "
                f"{_span(top - k, top)}; optimizer state of {_span(top, top + k)} reset (Adam moments 0, step 0); "
                f"{_span(0, top)} and the embedding block frozen in this stage"))
        return Boundary(index, message=f"MSLT: full-model training of all {self.num_layers} layers from here on "
                                       f"(optimizer state of every parameter kept)")

    def phase_description(self, phase):
        if phase == len(self.phases) - 1:
            return f"MSLT phase {phase + 1}/{len(self.phases)}: full-model training ({self.num_layers} layers)"
        return super().phase_description(phase)


class ShareThenUnshareSchedule(TrainingSchedule):
    """Share-then-unshare: phase 0 runs every layer with layer 0's module (its weights are
    mirrored into the other layers after each step, so checkpoints and validation see the
    shared function); phase 1 unties them (each layer keeps a copy of the shared weights and of
    layer 0's optimizer state) and trains normally."""

    method = "share-then-unshare"

    def __init__(self, num_layers: int, unit: str, until: int):
        super().__init__(num_layers)
        self.unit, self.until = unit, int(until)

    def phase(self, epoch, update):
        if self.unit == "epoch":
            return 0 if epoch <= self.until else 1
        return 0 if update < self.until else 1

    def submodel(self, epoch, update):
        if self.phase(epoch, update) == 0:
            return Submodel(self.num_layers, 0, train_embeddings=True, shared=True)
        return None

    def boundary(self, index):
        rest = tuple(range(1, self.num_layers))
        if index == 0:
            return Boundary(0, copies=tuple((0, i) for i in rest), reset=rest, message=(
                f"share-then-unshare: all {self.num_layers} layers tied to layer 0's weights "
                f"(layers 1..{self.num_layers - 1} take its values)"))
        when = f"epoch {self.until}" if self.unit == "epoch" else f"{self.until} updates"
        return Boundary(1, untie=True, message=(
            f"share-then-unshare: layers untied after {when}: each of the {self.num_layers} "
            f"layers keeps a copy of the shared weights, and of layer 0's optimizer state (moments, step)"))

    def phase_description(self, phase):
        if phase == 0:
            return f"share-then-unshare phase 1/2: {self.num_layers} layers sharing layer 0's weights"
        return "share-then-unshare phase 2/2: layers untied, full-model training"

    def describe(self):
        when = f"epoch {self.until}" if self.unit == "epoch" else f"update {self.until}"
        return f"share-then-unshare: all layers share one set of weights until {when}, then untied"


# -- option parsing ------------------------------------------------------------------------------

_PAIR = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_stacking_schedule(text: str) -> Tuple[Tuple[int, int], ...]:
    """``"3:5,6:7,12:28"`` -> ((3, 5), (6, 7), (12, 28)); ValueError with a one-line reason."""
    example = "pass depth:epochs pairs separated by commas with increasing depths, e.g. 3:5,6:7,12:28"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"--stacking-schedule is empty: {example}")
    stages = []
    for part in text.split(","):
        m = _PAIR.match(part)
        if not m:
            raise ValueError(f"--stacking-schedule {text!r} is malformed at {part.strip()!r}: {example}")
        depth, epochs = int(m.group(1)), int(m.group(2))
        if depth < 1 or epochs < 1:
            raise ValueError(f"--stacking-schedule {text!r}: depths and epochs must be >= 1 ({part.strip()!r}): "
                             f"{example}")
        if stages and depth <= stages[-1][0]:
            raise ValueError(f"--stacking-schedule {text!r}: depth {depth} does not grow from {stages[-1][0]}: "
                             f"{example}")
        stages.append((depth, epochs))
    return tuple(stages)


def parse_share_until(text: str) -> Tuple[str, int]:
    """``"3000"`` -> ("update", 3000); ``"epoch:2"`` -> ("epoch", 2)."""
    example = "pass an update count (e.g. 3000) or epoch:N (e.g. epoch:10)"
    value = str(text).strip()
    m = re.fullmatch(r"(?:(epoch|update)s?\s*:\s*)?(\d+)", value)
    if not m:
        raise ValueError(f"--share-layers-until {text!r} is malformed: {example}")
    unit, n = m.group(1) or "update", int(m.group(2))
    if n < 1:
        raise ValueError(f"--share-layers-until {text!r} shares for no {unit}: {example}")
    return unit, n


__all__ = ["Submodel", "submodels", "SubmodelSampler", "Boundary", "TrainingSchedule", "TwoStageSchedule",
           "StackingSchedule", "MSLTSchedule", "ShareThenUnshareSchedule", "parse_stacking_schedule",
           "parse_share_until"]
