"""Training: one trial, packed trials (several small models on one device), GPU-hour accounting.

Entry points: :func:`run_trials` (a validated :class:`TrialPlan`) and :func:`run_trial_file` (a plan
YAML, writing the results JSON), both returning :class:`TrialResult` records.
"""

from proxyhpo.training.pack import ModelPack, per_model_dice_ce
from proxyhpo.training.plan import (
    PRESETS,
    DataItem,
    FaultInjection,
    HyperParameters,
    Recipe,
    TrialPlan,
    TrialSpec,
    load_preset,
)
from proxyhpo.training.result import TrialResult, TrialResults, TrialState, read_results, write_results
from proxyhpo.training.runner import auto_pack_size, run_trial_file, run_trials

__all__ = [
    "PRESETS",
    "DataItem",
    "FaultInjection",
    "HyperParameters",
    "ModelPack",
    "Recipe",
    "TrialPlan",
    "TrialResult",
    "TrialResults",
    "TrialSpec",
    "TrialState",
    "auto_pack_size",
    "load_preset",
    "per_model_dice_ce",
    "read_results",
    "run_trial_file",
    "run_trials",
    "write_results",
]
