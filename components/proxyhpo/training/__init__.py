"""Training: one trial, packed trials (several small models on one device), early stopping inside packs, GPU-hour accounting.

Entry points: :func:`run_trials` (a validated :class:`~proxyhpo.config.TrialPlan`) and :func:`run_trial_file`
(a plan YAML, writing the results JSON), both returning :class:`~proxyhpo.config.TrialResult` records;
:mod:`proxyhpo.training.study_trials` runs a study's packs and its final model with MLflow logging.
Early stopping: a plan's ``early_stopping`` (successive halving, :class:`SuccessiveHalving`), or any
:class:`EarlyStopper` given to :func:`run_trials`.
"""

from proxyhpo.training.early_stopping import EarlyStopper, EpochReport, SuccessiveHalving
from proxyhpo.training.pack import ModelPack, per_model_dice_ce
from proxyhpo.training.runner import auto_pack_size, run_trial_file, run_trials

__all__ = ["EarlyStopper", "EpochReport", "ModelPack", "SuccessiveHalving", "auto_pack_size", "per_model_dice_ce", "run_trial_file", "run_trials"]
