"""Restrict one optimizer step to the active parameters (Algorithm 2, line 7).

In stage 1 only the top ``lb`` layers of the sampled sub-model and the shared head may change.
Leaving the other parameters without gradients is not enough: ``legacy_ddp`` fills missing
gradients with zeros before its all-reduce, ``pytorch_ddp`` hands zero gradients to locally
unused parameters, and ``FP16Optimizer`` copies a zero fp32 gradient for every fp16 parameter
without one. Adam would then decay the moments, advance ``step`` and apply weight decay to
parameters that took no part in the update.

:class:`RestrictedStep` removes the inactive parameters from the param groups of the innermost
``torch.optim.Optimizer`` for the duration of ``optimizer.step()`` and puts them back afterwards,
so that the step neither reads nor writes them or their state (moments, ``step``). It is called
from the task's ``optimizer_step`` hook, i.e. with stock ``fairseq-train`` as the driver, and it
works with every fairseq optimizer wrapper whose innermost optimizer holds one tensor per model
parameter:

* plain ``FairseqOptimizer`` (fp32, ``--amp``): the inner optimizer holds the model parameters;
* ``MemoryEfficientFP16Optimizer`` (``--memory-efficient-fp16``): the inner optimizer holds
  the fp16 model parameters (fp32 state inside the optimizer);
* ``FP16Optimizer`` (``--fp16``) with per-parameter fp32 master copies
  (``--fp16-no-flatten-grads``): fp16 parameter ``i`` maps to master copy ``i``; the copy-back
  of unchanged masters rewrites inactive fp16 parameters with their own values. A flattened
  master buffer (one tensor, one Adam ``step`` for the whole model) cannot be restricted: the
  two-stage tasks switch ``--fp16-no-flatten-grads`` on when stage 1 is used, and this class
  refuses a flat buffer with a one-line error.
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch


class UnsupportedOptimizer(RuntimeError):
    """The optimizer's layout cannot be restricted to a subset of parameters."""


def _innermost(optimizer):
    """(the torch optimizer that updates the parameters, map id(model param) -> its tensor)."""
    from fairseq.optim.bmuf import FairseqBMUF
    from fairseq.optim.fp16_optimizer import FP16Optimizer

    if isinstance(optimizer, FairseqBMUF):
        raise UnsupportedOptimizer("stage-1 sub-model training does not support --use-bmuf")
    if isinstance(optimizer, FP16Optimizer):
        if optimizer.has_flat_params:
            raise UnsupportedOptimizer(
                "stage-1 sub-model training needs per-parameter fp32 master copies with --fp16: "
                "pass --fp16-no-flatten-grads (or --memory-efficient-fp16)")
        mapping = {id(p16): p32 for p16, p32 in zip(optimizer.fp16_params, optimizer.fp32_params)}
        return optimizer.fp32_optimizer.optimizer, mapping
    inner = optimizer.optimizer  # FairseqOptimizer, MemoryEfficientFP16Optimizer, AMPOptimizer
    if not isinstance(inner, torch.optim.Optimizer):
        raise UnsupportedOptimizer(f"cannot restrict updates of {type(inner).__name__} to the active parameters")
    if type(inner).__name__ == "OSS":
        raise UnsupportedOptimizer("stage-1 sub-model training does not support --zero-sharding os")
    return inner, None


class RestrictedStep:
    """``step(active)``: one ``optimizer.step()`` that updates only ``active`` model parameters.

    Built once per fairseq optimizer object (the trainer rebuilds its optimizer when it loads a
    checkpoint; build a new one then).
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.inner, self._mapping = _innermost(optimizer)

    def _held(self, params: Iterable[torch.Tensor]) -> set:
        if self._mapping is None:
            return {id(p) for p in params}
        return {id(self._mapping[id(p)]) for p in params if id(p) in self._mapping}

    @contextlib.contextmanager
    def only(self, active: Iterable[torch.Tensor]):
        """Within the block the inner optimizer's param groups hold only ``active``."""
        keep = self._held(active)
        groups = self.inner.param_groups
        saved = [g["params"] for g in groups]
        try:
            for g in groups:
                g["params"] = [p for p in g["params"] if id(p) in keep]
            yield
        finally:
            for g, params in zip(groups, saved):
                g["params"] = params

    def step(self, active: Iterable[torch.Tensor]) -> None:
        with self.only(active):
            self.optimizer.step()


class OptimizerSurgery:
    """Weight copies and optimizer-state edits at a schedule boundary (StackBERT/MSLT stacking,
    share-then-unshare), consistent with what the optimizer holds:

    * ``assign(dst, src)`` writes a model parameter *and* its fp32 master copy (``--fp16``);
      otherwise the next step would copy the stale master back over the new weights;
    * ``reset(p)`` drops the parameter's state: torch/fairseq optimizers initialise it lazily at
      the parameter's next update (Adam: moments 0, step 0, so bias correction restarts);
    * ``copy_state(dst, src)`` gives ``dst`` a copy of ``src``'s state (moments, step).
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.inner, self._mapping = _innermost(optimizer)

    def held(self, p: torch.Tensor) -> torch.Tensor:
        """The tensor the inner optimizer updates for model parameter ``p``."""
        return p if self._mapping is None else self._mapping[id(p)]

    @torch.no_grad()
    def assign(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src)
        if self._mapping is not None:
            self.held(dst).copy_(self.held(src))

    def reset(self, p: torch.Tensor) -> None:
        self.inner.state.pop(self.held(p), None)

    def copy_state(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        state = self.inner.state.get(self.held(src))
        if not state:
            self.reset(dst)
            return
        self.inner.state[self.held(dst)] = {k: (v.detach().clone() if torch.is_tensor(v) else v)
                                            for k, v in state.items()}
