"""Optuna's samplers as search strategies: one Optuna study per search, kept in Optuna's journal storage.

A search's whole state is its Optuna study in a journal file (:class:`optuna.storages.JournalStorage` on a
:class:`optuna.storages.journal.JournalFileBackend`), and that file is the state artifact the HPO pipeline
hands from task to task:

- no server: a pipeline task needs no database (the chart's PostgreSQL would tie every local run and every
  retried task to a live server, and a failed round could leave rows a retry sees half-written);
- one file: a KFP artifact, copied into and out of a task like the REINFORCE controller's zip, so a retried
  or resumed task starts from exactly the file the previous task wrote;
- exact replay: the journal is Optuna's own append-only log of every operation on the study (each trial's
  parameters, intermediate values, state, value, and the pruner's and sampler's attributes); reading it
  back replays those operations, so a restored study is the study that was saved, not an approximation.

Optuna does not keep a sampler's random state in its storage. Each :meth:`OptunaStrategy.ask` therefore
seeds a fresh sampler from the search's seed and the number of trials the study holds, so the proposals of
a round depend only on the journal and the seed: a search restored between rounds proposes what the search
that saved it would have proposed (and a sampler's caches, such as the GP sampler's fitted kernel, cannot
carry over from one round to the next in one process but not across two).

A trial's proposal id is its Optuna trial number; its round, final Dice and stop epoch are user attributes
of the trial (``proxyhpo.round``, ``proxyhpo.dice``, ``proxyhpo.stopped_at_epoch``); the rounds told so far
are a user attribute of the study (``proxyhpo.batches``), with the search's seed and settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from proxyhpo.config import Categorical, LogUniform, Proposal, StudyConfig, TrialResult, TrialState
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.errors import InputError
from proxyhpo.search._base import Strategy, outcome_of

__all__ = ["OptunaStrategy"]

#: the Optuna study's name inside every journal (one study per file)
STUDY_NAME = "proxyhpo-search"
_ROUND, _DICE, _STOPPED = "proxyhpo.round", "proxyhpo.dice", "proxyhpo.stopped_at_epoch"
_STRATEGY, _SEED, _STARTUP, _BATCHES = "proxyhpo.strategy", "proxyhpo.seed", "proxyhpo.startup_trials", "proxyhpo.batches"
_FIX_STATE = "pass the state file the search's previous round wrote"


class OptunaStrategy(Strategy):
    """An Optuna sampler (and pruner) behind the ask/tell protocol, its study in a journal file.

    A round asks ``n`` trials at once and trains them; when they end, each is told: its final validation
    Dice when it trained all epochs, ``PRUNED`` when early stopping stopped it (its validation curve
    reported first, so TPE ranks it by the epoch it reached and its Dice there), ``FAIL`` when it failed
    or returned no result. The pack's own early stopping (``search.early_stopping``: asynchronous successive
    halving, or Hyperband's brackets of it) is the study's pruner: it runs where the trials train, in
    another task than the study's, so the study itself never prunes (Optuna's ``NopPruner``).

    Subclasses give :meth:`make_sampler`.

    Args:
        study: the study searched.
        seed: seeds every sampler the search makes.
        startup_trials: random trials before the sampler models the results (default: one round,
            ``search.proposals_per_round``; Optuna's default of 10 would leave a study of 3 rounds of 4
            trials nearly random: ours).
    """

    requires_packages = ("optuna",)

    def __init__(self, study: StudyConfig, seed: int, *, startup_trials: int | None = None, _journal: str | os.PathLike[str] | None = None) -> None:
        super().__init__(study, seed)
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # constant_liar (TPE) and the journal's file backend are experimental in Optuna 4.9; both are pinned
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self._optuna = optuna
        self.startup_trials = study.search.proposals_per_round if startup_trials is None else startup_trials
        # the journal is worked on in a folder of our own: a task's input artifact is never written to
        self._folder = tempfile.TemporaryDirectory(prefix="proxyhpo-optuna-")
        self.journal = Path(self._folder.name) / "journal.log"
        if _journal is not None:
            shutil.copyfile(_journal, self.journal)
        self.optuna_study = optuna.create_study(
            storage=JournalStorage(JournalFileBackend(str(self.journal))),
            study_name=STUDY_NAME,
            direction="maximize",
            sampler=self.make_sampler(self._round_seed(0)),
            pruner=optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        if _journal is None:
            for key, value in ((_STRATEGY, self.name), (_SEED, seed), (_STARTUP, self.startup_trials), (_BATCHES, 0)):
                self.optuna_study.set_user_attr(key, value)
        self.distributions = {name: self._distribution(dist) for name, dist in study.search.space.items()}
        self._asked: dict[str, Any] = {}  # the open trials this process asked, by trial id

    # --- what a subclass chooses ----------------------------------------------------------------------------------

    def make_sampler(self, seed: int) -> Any:
        """The Optuna sampler of one round, seeded with ``seed``."""
        raise NotImplementedError

    # --- the protocol -------------------------------------------------------------------------------------------

    @property
    def batches(self) -> int:
        """Rounds told so far (= the round of the next proposals)."""
        return int(self.optuna_study.user_attrs.get(_BATCHES, 0))

    def _round_seed(self, trials: int) -> int:
        """The seed of the sampler that proposes the next trials when the study holds ``trials``."""
        return int(np.random.SeedSequence([self.seed, trials]).generate_state(1)[0])

    def _distribution(self, dist: Any) -> Any:
        distributions = self._optuna.distributions
        if isinstance(dist, Categorical):
            return distributions.CategoricalDistribution(list(dist.choices))
        return distributions.FloatDistribution(dist.low, dist.high, log=isinstance(dist, LogUniform))

    def ask(self, n: int) -> list[Proposal]:
        self._check_n(n)
        # a fresh sampler per round, seeded by the study's size: the round depends on the journal alone
        self.optuna_study.sampler = self.make_sampler(self._round_seed(len(self.optuna_study.get_trials(deepcopy=False))))
        round_index = self.batches
        proposals = []
        for _ in range(n):
            trial = self.optuna_study.ask(self.distributions)
            trial.set_user_attr(_ROUND, round_index)
            proposal = Proposal(proposal_id=trial.number, round=round_index, hyperparameters=dict(trial.params), log_prob=0.0)
            self._asked[proposal.trial_id] = trial
            proposals.append(proposal)
        return proposals

    def _open_trials(self) -> list[Any]:
        running = self._optuna.trial.TrialState.RUNNING
        return sorted(self.optuna_study.get_trials(deepcopy=False, states=(running,)), key=lambda frozen: frozen.number)

    @staticmethod
    def _proposal(frozen: Any) -> Proposal:
        return Proposal(proposal_id=frozen.number, round=int(frozen.user_attrs[_ROUND]), hyperparameters=dict(frozen.params), log_prob=0.0)

    def tell(self, results: Sequence[TrialResult]) -> None:
        states = self._optuna.trial.TrialState
        by_id = {int(result.tags["proposal_id"]): result for result in results if "proposal_id" in result.tags}
        for frozen in self._open_trials():
            result = by_id.get(frozen.number)
            dice, stopped = outcome_of(result) if result is not None else (None, None)
            # a trial asked in another process (a restored search) is reached by its storage id
            trial = self._asked.get(self._proposal(frozen).trial_id) or self._optuna.trial.Trial(self.optuna_study, frozen._trial_id)
            trial.set_user_attr(_DICE, dice)
            trial.set_user_attr(_STOPPED, stopped)
            if result is not None and dice is not None:
                self._report_curve(trial, frozen, result)
            if result is not None and result.state == TrialState.COMPLETE and dice is not None:
                self.optuna_study.tell(frozen.number, dice)
            elif result is not None and result.state == TrialState.STOPPED and dice is not None:
                self.optuna_study.tell(frozen.number, state=states.PRUNED)
            else:
                self.optuna_study.tell(frozen.number, state=states.FAIL)
        self._asked.clear()
        self.optuna_study.set_user_attr(_BATCHES, self.batches + 1)

    @staticmethod
    def _report_curve(trial: Any, frozen: Any, result: TrialResult) -> None:
        """Report the trial's validation curve (an epoch already reported is kept)."""
        reported = set(frozen.intermediate_values)
        curve = dict(zip(result.val_epochs, result.val_dice, strict=False))
        if result.state == TrialState.STOPPED and result.stopped_at_epoch is not None and result.final_val_dice is not None:
            curve[result.stopped_at_epoch] = result.final_val_dice  # where it stopped, with the Dice it stopped with
        for epoch, value in sorted(curve.items()):
            if epoch not in reported and np.isfinite(value):
                trial.report(float(value), int(epoch))

    def history(self) -> list[HistoryRecord]:
        records = []
        for frozen in sorted(self.optuna_study.get_trials(deepcopy=False), key=lambda frozen: frozen.number):
            if frozen.state == self._optuna.trial.TrialState.RUNNING:
                continue
            dice = frozen.user_attrs.get(_DICE)
            records.append(
                HistoryRecord(proposal=self._proposal(frozen), reward=dice, failed=dice is None, dice=dice, stopped_at_epoch=frozen.user_attrs.get(_STOPPED))
            )
        return records

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Copy the study's journal to ``path``, atomically: the file is the whole state."""
        from proxyhpo import storage

        return storage.atomic_write_bytes(path, self.journal.read_bytes())

    @classmethod
    def restore(cls, study: StudyConfig, path: str | os.PathLike[str]) -> OptunaStrategy:
        """The search whose journal :meth:`save` wrote to ``path``, with its seed and settings.

        Raises:
            InputError: when ``path`` is missing, is not a journal of a search, or is another strategy's.
        """
        if not Path(path).is_file():
            raise InputError(path, "the search's state file does not exist", _FIX_STATE)
        attributes = _journal_attributes(path)
        if attributes.get(_STRATEGY) != cls.name:
            found = f"the {attributes[_STRATEGY]} strategy's" if _STRATEGY in attributes else "no Optuna search's"
            raise InputError(path, f"is {found} state, not the {cls.name} strategy's", f"{_FIX_STATE}, with the same search.strategy")
        return cls(study, int(attributes[_SEED]), startup_trials=int(attributes[_STARTUP]), _journal=path)


def _journal_attributes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The search's user attributes in the journal at ``path`` (empty when it holds no search), read from a copy."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory(prefix="proxyhpo-optuna-") as folder:
        copy = Path(folder) / "journal.log"
        shutil.copyfile(path, copy)
        try:
            storage = JournalStorage(JournalFileBackend(str(copy)))
            summaries = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
        except Exception as exc:  # noqa: BLE001 -- whatever the journal's reader fails with, the file is no journal
            raise InputError(path, f"is not an Optuna journal ({type(exc).__name__}: {exc})", _FIX_STATE) from exc
        summary = summaries.get(STUDY_NAME)
        return dict(summary.user_attrs) if summary is not None else {}
