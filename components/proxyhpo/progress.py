"""proxyhpo's progress displays: a rich bar around an iterable (:func:`track`), and a study's (:class:`StudyDisplay`).

Long work (validating a data set, writing phantoms, all-pairs similarity) shows a bar on the terminal;
library calls made by pipeline components pass ``enabled=False`` and stay quiet. A local study run shows
its rounds, trial-epochs, ETA and best result, read from MLflow, live on a terminal or as a line per
event elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO, TypeVar

__all__ = ["track", "StudyDisplay", "EpochRate", "format_duration", "format_hyperparameters"]

T = TypeVar("T")


def track(items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True, transient: bool = True) -> Iterator[T]:
    """Yield ``items``, advancing a rich progress bar (elapsed and remaining time) when ``enabled``.

    Args:
        items: what to iterate.
        description: the bar's label.
        total: number of items, when ``items`` has no ``len``.
        enabled: show the bar; otherwise the items pass straight through.
        transient: remove the bar when done (keep it for long computations worth a record).

    Example:
        >>> list(track(range(3), "counting", enabled=False))
        [0, 1, 2]
    """
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if total is None:
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=transient) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (``–`` when unknown).

    Example:
        >>> format_duration(3725.2), format_duration(None)
        ('1:02:05', '–')
    """
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_hyperparameters(values: Mapping[str, str], names: Sequence[str]) -> str:
    """``lr 3.1e-04, optimizer adam``: the named hyper-parameters of a trial's MLflow params, numbers to 2 significant digits.

    Example:
        >>> format_hyperparameters({"lr": "0.000312", "optimizer": "adam", "seed": "3"}, ["lr", "optimizer"])
        'lr 3.1e-04, optimizer adam'
    """
    shown = []
    for name in names:
        if name not in values:
            continue
        value = values[name]
        try:
            number = float(value)
        except ValueError:
            shown.append(f"{name} {value}")
            continue
        shown.append(f"{name} {number:.1e}" if number and abs(number) < 1e-2 else f"{name} {number:.2g}")
    return ", ".join(shown)


class EpochRate:
    """The rate of trial-epochs measured since this launch first saw one trained, and the ETA it gives.

    A resumed study's earlier epochs do not count towards the rate: only what this process watched.
    """

    def __init__(self) -> None:
        self._start: tuple[float, int] | None = None
        self.per_second: float | None = None

    def update(self, epochs_done: int, now: float) -> None:
        """Record that ``epochs_done`` trial-epochs were done at monotonic time ``now``."""
        if self._start is None:
            self._start = (now, epochs_done)
            return
        started, first = self._start
        if epochs_done > first and now > started:
            self.per_second = (epochs_done - first) / (now - started)

    def eta(self, remaining: int) -> float | None:
        """Seconds until ``remaining`` more trial-epochs are done at the measured rate (None before one is measured)."""
        if remaining <= 0:
            return 0.0
        return remaining / self.per_second if self.per_second else None


class StudyDisplay(threading.Thread):
    """What ``proxyhpo run --local`` shows while a study runs, read from MLflow every ``poll_s`` seconds.

    On a terminal, a live display: the round, trials done (stopped early, failed), a bar of trial-epochs
    done of those planned (less what early stopping removed), elapsed time and an ETA from the measured
    rate, and the best validation Dice so far with its hyper-parameters; the final model gets its own line.
    Elsewhere (CI, ``nohup``, a pipe), a plain line per event: a round started, a trial ended, the final
    model started. Set :attr:`succeeded` before :attr:`stopped` when the pipeline finished.

    Args:
        study: the study config (rounds, proposals, epochs, the search space's names).
        parent_run_id: its MLflow parent run.
        stream: where the display goes (the terminal).
        kind: the pipeline kind.
        live: a live display (True) or plain lines (False); None: live when ``stream`` is a terminal.
        poll_s: seconds between reads of MLflow.
        tracking_uri: the MLflow store (default: the environment's).
    """

    def __init__(
        self, study: Any, parent_run_id: str, stream: TextIO, kind: str = "hpo", *, live: bool | None = None, poll_s: float = 2.0, tracking_uri: str | None = None
    ) -> None:
        super().__init__(daemon=True, name="proxyhpo-study-display")
        self.study, self.parent_run_id, self.stream, self.kind = study, parent_run_id, stream, kind
        self.live = bool(stream.isatty() and os.environ.get("TERM") != "dumb") if live is None else live
        self.poll_s, self.tracking_uri = poll_s, tracking_uri
        self.stopped = threading.Event()
        self.succeeded = False
        try:
            self.planned = int(study.planned_trials(kind))
        except ValueError:  # a study pipeline that does not say how many trials it trains: counted as they come
            self.planned = 0
        # the epochs of a search trial; other kinds' trials differ (grids, NAS tasks): they count trials instead
        self.epochs_per_trial = int(study.training.epochs) if kind in ("hpo", "automl-comparison") else 0
        self.hyperparameters = tuple(study.search.space.names)
        self.rate = EpochRate()
        self._seen: dict[str, str] = {}
        self._round: int | None = None
        self._final_shown = False
        self._best: float | None = None

    # --- what is shown ------------------------------------------------------------------------------------------

    def _units(self, snapshot: Any) -> tuple[int, int, str]:
        """``(done, planned, unit)``: trial-epochs when a trial's epochs are known, else trials."""
        if self.epochs_per_trial:
            planned = max(self.planned, len(snapshot.trials)) * self.epochs_per_trial - snapshot.epochs_removed
            return snapshot.epochs_done, max(planned, snapshot.epochs_done), "trial-epochs"
        return snapshot.done, max(self.planned, len(snapshot.trials)), "trials"

    def _eta(self, snapshot: Any) -> float | None:
        done, planned, _ = self._units(snapshot)
        return self.rate.eta(planned - done)

    def describe(self, snapshot: Any) -> str:
        """The first line: which round, how many trials ended and how."""
        if not snapshot.trials:
            return "preparing data and selecting proxy data" if self.kind in ("hpo", "automl-comparison") else f"{self.kind}: preparing"
        outcomes = [f"{snapshot.stopped} stopped early"] if snapshot.stopped else []
        outcomes += [f"{snapshot.failed} failed"] if snapshot.failed else []
        ended = f"trials {snapshot.done}/{self.planned or len(snapshot.trials)}" + (f" ({', '.join(outcomes)})" if outcomes else "")
        if self.kind == "hpo" and snapshot.round is not None:
            return f"round {snapshot.round + 1}/{self.study.search.rounds} · {ended}"
        if self.kind == "nas":
            return f"NAS search tasks · {ended}"
        return f"{self.kind} · {ended}"

    def count(self, snapshot: Any) -> str:
        """``14/48 trial-epochs (−12 stopped early)``."""
        done, planned, unit = self._units(snapshot)
        saved = snapshot.epochs_stopped_early if self.epochs_per_trial else 0
        return f"{done}/{planned} {unit}" + (f" (−{saved} stopped early)" if saved else "")

    def best_line(self, snapshot: Any) -> str:
        """``best val Dice 0.412 (r0-t001): lr 3.1e-04, optimizer adam``, or an empty string before the first validation."""
        best = snapshot.best
        if best is None:
            return ""
        shown = format_hyperparameters(best.hyperparameters, self.hyperparameters)
        return f"best val Dice so far {best.dice:.3f} ({best.trial_id}{', running' if best.running else ''})" + (f": {shown}" if shown else "")

    def events(self, snapshot: Any) -> list[str]:
        """The plain mode's lines for what changed since the last call: a round started, trials ended, the final model started."""
        lines = []
        if self.kind == "hpo" and snapshot.round is not None and snapshot.round != self._round:
            self._round = snapshot.round
            lines.append(f"round {snapshot.round + 1}/{self.study.search.rounds} started")
        for trial in snapshot.trials:
            ended = "" if trial.running or trial.pending else ("failed" if trial.failed else "stopped" if trial.stopped else "finished")
            if not ended or self._seen.get(trial.trial_id) == ended:
                continue
            self._seen[trial.trial_id] = ended
            if trial.failed:
                what = f"failed after {trial.epochs} epochs"
            elif trial.stopped:
                what = f"stopped early at epoch {trial.stopped_at}, val Dice {trial.dice:.3f}" if trial.dice is not None else f"stopped early at epoch {trial.stopped_at}"
            else:
                what = f"finished, val Dice {trial.dice:.3f}" if trial.dice is not None else "finished"
            if trial.dice is not None and not trial.failed and (self._best is None or trial.dice > self._best):
                self._best = trial.dice
                what += " (best so far)"
            shown = format_hyperparameters(trial.hyperparameters, self.hyperparameters)
            lines.append(f"trial {trial.trial_id} {what}" + (f" [{shown}]" if shown else "") + f"; {self.count(snapshot)}, ETA {format_duration(self._eta(snapshot))}")
        if snapshot.final_started and not self._final_shown and self.kind == "hpo":
            self._final_shown = True
            lines.append(f"search done ({self.describe(snapshot)}); training the final model ({self.study.final.network} network, search-train cases)")
        return lines

    # --- the loop -----------------------------------------------------------------------------------------------

    def snapshot(self) -> Any:
        from proxyhpo.tracking.progress import study_snapshot

        return study_snapshot(self.study.name, parent_run_id=self.parent_run_id, epochs_per_trial=self.epochs_per_trial, tracking_uri=self.tracking_uri)

    def _read(self) -> Any | None:
        try:
            snapshot = self.snapshot()
        except Exception:  # the store may be busy (a task migrating it, a write lock): the next tick reads again
            return None
        if any(trial.running for trial in snapshot.trials):  # the rate is the training's, not the data preparation's
            self.rate.update(self._units(snapshot)[0], time.monotonic())
        return snapshot

    def _print(self, line: str) -> None:
        self.stream.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        self.stream.flush()

    def run(self) -> None:
        if not self.live:
            while True:
                finished = self.stopped.wait(self.poll_s)
                snapshot = self._read()
                for line in self.events(snapshot) if snapshot is not None else ():
                    self._print(line)
                if finished:
                    return
        self._run_live()

    def _run_live(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True)
        columns = (TextColumn("{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"))
        # the executors' output goes to the task log, not through rich: nothing to redirect
        with _bars_with_a_line_below(*columns, console=console, redirect_stdout=False, redirect_stderr=False) as bars:
            search = bars.add_task(self.describe(StudyDisplay._empty()), total=None, count="", eta="")
            final = None
            while True:
                finished = self.stopped.wait(self.poll_s)
                snapshot = self._read()
                if snapshot is not None:
                    done, planned, _ = self._units(snapshot)
                    eta = self._eta(snapshot)
                    bars.update(
                        search, description=self.describe(snapshot), completed=done, total=planned or None, count=self.count(snapshot),
                        eta="" if final is not None else f"ETA {format_duration(eta)}",
                    )
                    bars.extra = self.best_line(snapshot)
                    if snapshot.final_started and final is None and self.kind == "hpo":
                        bars.stop_task(search)  # the search's elapsed time stops where the final model starts
                        bars.update(search, eta="")
                        final = bars.add_task(f"final model ({self.study.final.network} network, search-train cases)", total=1, count="", eta="")
                if finished:
                    if final is not None and self.succeeded:
                        bars.update(final, completed=1)
                    return

    @staticmethod
    def _empty() -> Any:
        from proxyhpo.tracking.progress import StudySnapshot

        return StudySnapshot(trials=(), final_started=False)


def _bars_with_a_line_below(*columns: Any, **options: Any) -> Any:
    """rich's Progress with one more line under its bars, its ``extra`` text (the best result so far); rich loads here, when shown."""
    from rich.progress import Progress

    class Bars(Progress):
        extra = ""

        def get_renderables(self):  # type: ignore[no-untyped-def]
            yield self.make_tasks_table(self.tasks)
            if self.extra:
                yield self.extra

    return Bars(*columns, **options)
