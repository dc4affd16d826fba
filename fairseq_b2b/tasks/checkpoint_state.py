"""What the two-stage tasks keep in a checkpoint (fairseq's task checkpoint hooks): the cumulative
``train_flops``, the schedule and the last boundary applied, and whether the saved model's
LayerNorms are still weighted.
"""
import contextlib
import logging

from .schedules import TrainingSchedule
from .two_stage_options import root_config, fail

logger = logging.getLogger("fairseq_b2b.two_stage")  # one logger for the two-stage tasks


class CheckpointState:
    """``get_checkpoint_dict`` / ``set_checkpoint_dict``."""

    def get_checkpoint_dict(self):
        """Saved in the checkpoint's extra state (fairseq's task checkpoint hook).  A run with
        exact growth's weighted LayerNorms also records whether the saved model still has them
        (``layernorm_weighted_at_end``) and the blend ``anneal_progress`` (1: standard), there and
        in the saved model args."""
        state = {"train_flops": int(self.train_flops), "schedule": self._schedule.method,
                 "boundary": int(self._applied)}
        blend = self._weighted_blend()
        if blend is not None or self._anneal_checked:
            state["layernorm_weighted_at_end"] = blend is not None
            state["anneal_progress"] = 1.0 if blend is None else blend
            model_args = getattr(root_config(self.b2b_cfg), "model", None)
            with contextlib.suppress(Exception):  # a Namespace for the b2b_ archs; a struct config refuses
                for key in ("layernorm_weighted_at_end", "anneal_progress"):
                    setattr(model_args, key, state[key])
        return {type(self).__name__: state}

    def set_checkpoint_dict(self, state):
        self.train_flops = int(state.get("train_flops", 0))
        saved = state.get("schedule")
        if saved is not None and saved != self._schedule.method and int(state.get("boundary", -1)) > 0:
            fail(f"the checkpoint was trained with the {saved} schedule (boundary {state['boundary']} applied) but this "
                 f"run uses {self._schedule.method}: resume with the same options, or start from it with "
                 f"--reset-dataloader")
        self._applied = int(state.get("boundary", -1))
        logger.info(f"resumed train_flops = {self.train_flops:.6g}" +
                    (f", {self._schedule.method} boundary {self._applied} already applied"
                     if self._applied >= 0 and type(self._schedule) is not TrainingSchedule else ""))
