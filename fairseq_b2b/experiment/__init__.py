"""The main job: the paper's comparison in miniature (``b2b-experiment``).

A thin orchestrator: every run is a real ``fairseq-train`` invocation (``b2b-train``) whose
json log stays in ``DIR/runs/<name>/train.log``; growth reports for Table 1 come from
``b2b-grow``'s code; ``b2b-report`` turns the logs into the tables and plots.  A run that
finished (``DONE`` beside its log, same command) is reused on a rerun; an interrupted one resumes
from its ``checkpoint_last.pt``.  Independent runs go in parallel (``--jobs``).

One job per file: :mod:`.presets` (the sizes), :mod:`.updates` (updates per epoch, update-freq),
:mod:`.plan` (every run and its argv, ``--only``), :mod:`.manifest` (``experiment.json``),
:mod:`.data_bin` (the data), :mod:`.training_run` (one fairseq-train run),
:mod:`.growth_reports` (Table 1), :mod:`.runner` (how the runner schedules jobs).
"""
from .data_bin import prepare_data
from .manifest import attention_models, manifest, shape_label
from .plan import MIN_VALID_POINTS, Run, plan, select, shape_source_run
from .presets import (ALL_METHODS, EXACT_FPI, FAMILY_TASK, GROWTH_METHODS, PRESETS, SEEDED_METHODS, Ablation,
                      ExperimentError, Preset, ShapeAblation, for_family)
from .runner import dry_run_commands, run_experiment
from .training_run import command_line, run_training
from .updates import count_train_tokens, update_freq, updates_per_epoch, updates_per_epoch_from_tokens, world_size_of

__all__ = ["ALL_METHODS", "EXACT_FPI", "FAMILY_TASK", "GROWTH_METHODS", "MIN_VALID_POINTS", "PRESETS", "SEEDED_METHODS",
           "Ablation", "ExperimentError", "Preset", "Run", "ShapeAblation", "attention_models", "command_line",
           "count_train_tokens", "dry_run_commands", "for_family", "manifest", "plan", "prepare_data",
           "run_experiment", "run_training", "select", "shape_label", "shape_source_run", "update_freq",
           "updates_per_epoch", "updates_per_epoch_from_tokens", "world_size_of"]
