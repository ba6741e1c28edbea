"""TPE with Optuna's Hyperband pruner, which decides from the live study in the process that trains the trials."""

from __future__ import annotations

from typing import Any

from proxyhpo.config import StudyConfig
from proxyhpo.search._base import study_with
from proxyhpo.search._optuna import OptunaPruning
from proxyhpo.search._tpe import TPESearch

__all__ = ["TPEHyperbandSearch"]


class TPEHyperbandSearch(TPESearch):
    """Optuna's TPE sampler with its Hyperband pruner.

    Each trial reports its validation Dice at every validation to the pruner (``trial.report``) and a trial
    the pruner prunes (``trial.should_prune``) leaves its pack at once, its slot taking the next queued
    trial, exactly as successive halving's stopped trials do. The Hyperband pruner's minimum resource and
    reduction factor are ``search.early_stopping``'s, its maximum resource ``training.epochs``.

    The pruner reads the live study while the trials train, so the trials must train in the search's own
    process: it runs in ``proxyhpo bench search``, not in the pipeline, whose packs train apart from the
    search (:attr:`persistent` is False; ``tpe+asha`` is the pipeline's TPE with early stopping).
    """

    name = "tpe+hyperband"
    requires_early_stopping = True
    persistent = False
    bench_only_reason = "prunes its trials from its live Optuna study inside the process that trains them"

    def __init__(self, study: StudyConfig, seed: int, **options: Any) -> None:
        early_stopping = study.search.early_stopping
        if early_stopping is not None:
            self.rungs = early_stopping.rungs(study.training.epochs)
        self._hyperband = early_stopping, study.training.epochs
        super().__init__(study, seed, **options)
        # the pruner stops the trials: the plan's own successive halving stays off
        self.study = study_with(study, "search", early_stopping=None)

    def make_pruner(self) -> Any:
        early_stopping, epochs = self._hyperband
        return self._optuna.pruners.HyperbandPruner(min_resource=early_stopping.min_epochs, max_resource=epochs, reduction_factor=early_stopping.reduction_factor)

    def stopper(self) -> OptunaPruning:
        return OptunaPruning(dict(self._asked), self.rungs)

    @property
    def stops_early(self) -> bool:
        return True  # the pruner stops trials: they queue for the pack's slots like successive halving's
