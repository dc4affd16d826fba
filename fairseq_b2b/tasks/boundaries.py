"""Phase boundaries of the training schedules: which phase an update is in, and the weight copies and
optimizer-state resets (:class:`~.schedules.Boundary`) applied once when a phase starts; the last one
applied is kept in the checkpoint, so a resumed run neither repeats nor skips one.
"""
import logging
from typing import Optional

import torch

from ..flops import layer_stack_owner
from ..optim.restrict import OptimizerSurgery, UnsupportedOptimizer
from .schedules import Boundary, ShareThenUnshareSchedule, TrainingSchedule
from .submodel_sampling import Submodel

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks


class ScheduleBoundaries:
    """The schedule's phases and their boundaries, per epoch and update."""

    def in_stage1(self) -> bool:
        return self._sampler is not None and self._epoch <= self.submodel_epochs

    def submodel_for(self, update_num: int) -> Optional[Submodel]:
        """What update ``update_num`` runs (None: the full model, the parent task's step)."""
        return self._schedule.submodel(self._epoch, update_num)

    def begin_epoch(self, epoch, model):
        self._epoch = int(epoch)
        sched = self._schedule
        if not isinstance(sched, ShareThenUnshareSchedule) or sched.unit == "epoch":
            phase = sched.phase(self._epoch, 0)
            if type(sched) is not TrainingSchedule and phase != self._logged_phase:
                logger.info(f"epoch {epoch}: {sched.phase_description(phase)}")
            self._logged_phase = phase
        super().begin_epoch(epoch, model)

    def _enter_phase(self, model, optimizer, update_num: int) -> None:
        """Apply the boundaries between the last one applied and this update's phase, once."""
        target = self._schedule.phase(self._epoch, update_num)
        while self._applied < target:
            boundary = self._schedule.boundary(self._applied + 1)
            if boundary is not None:
                self._apply_boundary(model, optimizer, boundary)
                logger.info(f"epoch {self._epoch}, before update {update_num + 1}: {boundary.message}")
                if self._events[0] != update_num:
                    self._events = (update_num, [])
                self._events[1].append({"index": boundary.index, "copies": [list(c) for c in boundary.copies],
                                        "reset": list(boundary.reset), "untie": boundary.untie})
            self._applied += 1
            if isinstance(self._schedule, ShareThenUnshareSchedule) and self._schedule.unit != "epoch":
                logger.info(f"update {update_num + 1}: {self._schedule.phase_description(self._applied)}")

    def _surgery_for(self, optimizer) -> OptimizerSurgery:
        if self._surgery is None or self._surgery.optimizer is not optimizer:
            try:
                self._surgery = OptimizerSurgery(optimizer)
            except UnsupportedOptimizer as e:
                raise SystemExit(f"fairseq-b2b: error: {e}") from None
        return self._surgery

    def _apply_boundary(self, model, optimizer, boundary: Boundary) -> None:
        """Weight copies, then optimizer-state resets, then (untie) layer 0's state to every layer."""
        surgery = self._surgery_for(optimizer)
        layers = layer_stack_owner(model).layers
        for src, dst in boundary.copies:
            for p_dst, p_src in zip(layers[dst].parameters(), layers[src].parameters()):
                surgery.assign(p_dst, p_src)
            with torch.no_grad():
                for b_dst, b_src in zip(layers[dst].buffers(), layers[src].buffers()):
                    b_dst.copy_(b_src)
        for i in boundary.reset:
            for p in layers[i].parameters():
                surgery.reset(p)
        if boundary.untie:
            for layer in layers[1:]:
                for p_dst, p_src in zip(layer.parameters(), layers[0].parameters()):
                    surgery.copy_state(p_dst, p_src)

    def _mirror_shared(self, model, optimizer) -> None:
        """During sharing: layer 0's new weights into every other layer (checkpoints and
        validation see the shared function)."""
        surgery = self._surgery_for(optimizer)
        layers = layer_stack_owner(model).layers
        for layer in layers[1:]:
            for p_dst, p_src in zip(layer.parameters(), layers[0].parameters()):
                surgery.assign(p_dst, p_src)
