"""Training: one trial, packed trials (several small models on one device), early stopping inside packs, GPU-hour accounting.

Entry points: :func:`run_trials` (a validated :class:`~proxyhpo.config.TrialPlan`) and :func:`run_trial_file`
(a plan YAML, writing the results JSON), both returning :class:`~proxyhpo.config.TrialResult` records;
:mod:`proxyhpo.training.study_trials` runs a study's packs and its final model with MLflow logging.
Early stopping: a plan's ``early_stopping`` (successive halving, :class:`SuccessiveHalving`), or any
:class:`EarlyStopper` given to :func:`run_trials`.

Modules, one per concept:

- :mod:`~proxyhpo.training.runner`: a plan's trials grouped by network, sized into packs
  (:func:`~proxyhpo.config.resolve_pack_size`) and trained; the results file.
- :mod:`~proxyhpo.training.pack_run`: one pack's training loop (epochs, validation, stopping, finishing,
  refilling slots, checkpoints).
- :mod:`~proxyhpo.training.pack`: :class:`ModelPack`, K trials' networks trained as one batched model.
- :mod:`~proxyhpo.training.progress`: one trial's progress and charged time inside a pack, and its result.
- :mod:`~proxyhpo.training.evaluation`: sliding-window Dice of a pack's models.
- :mod:`~proxyhpo.training.capacity`: how many models of a network a device holds (``pack_size: auto``).
- :mod:`~proxyhpo.training.checkpoint`: a pack's checkpoint file (its record and tensors), random streams.
- :mod:`~proxyhpo.training.data`: cached volumes and each trial's patch stream.
- :mod:`~proxyhpo.training.early_stopping`: the stopping protocol and successive halving.
- :mod:`~proxyhpo.training.study_trials`: trials as a study runs them, with MLflow logging.
- :mod:`~proxyhpo.training.nas_search`, :mod:`~proxyhpo.training.nas_export`: the NAS search and its export.
"""

from proxyhpo.lazy import lazy_exports

__all__ = ["EarlyStopper", "EpochReport", "ModelPack", "SuccessiveHalving", "pack_capacity", "per_model_dice_ce", "run_trial_file", "run_trials"]
# names load on first use: a task that reuses kept results, or only reads a module of this package, loads no torch
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "pack_capacity": "capacity",
        "EarlyStopper": "early_stopping",
        "EpochReport": "early_stopping",
        "SuccessiveHalving": "early_stopping",
        "ModelPack": "pack",
        "per_model_dice_ce": "pack",
        "run_trial_file": "runner",
        "run_trials": "runner",
    },
)
