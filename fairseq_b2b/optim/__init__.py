"""Optimizer helpers of fairseq-b2b (stage 1 of Algorithm 2 updates only the active parameters)."""
from .restrict import OptimizerSurgery, RestrictedStep, UnsupportedOptimizer  # noqa: F401
