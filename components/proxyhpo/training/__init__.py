"""Training: one trial, packed trials (several small models on one device), GPU-hour accounting.

Entry points: :func:`run_trials` (a validated :class:`~proxyhpo.config.TrialPlan`) and :func:`run_trial_file`
(a plan YAML, writing the results JSON), both returning :class:`~proxyhpo.config.TrialResult` records;
:mod:`proxyhpo.training.study_trials` runs a study's packs and its final model with MLflow logging.
"""

from proxyhpo.training.pack import ModelPack, per_model_dice_ce
from proxyhpo.training.runner import auto_pack_size, run_trial_file, run_trials

__all__ = ["ModelPack", "auto_pack_size", "per_model_dice_ce", "run_trial_file", "run_trials"]
