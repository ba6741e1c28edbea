"""The HPO study's report (tag ``hpo``): what was searched, what it found, what it cost, as Markdown, plots and metrics.

The trial rows are read back from MLflow (the child runs of the study's parent run), so the report shows
exactly what the tracking server holds, whichever pods logged it. :func:`collect` turns them into a frozen
:class:`HpoRecord` (the rows and their :class:`StudySummary`); :func:`render` turns the record into
Markdown, metrics and the search plot; :func:`write_report` (the pipeline's report step) publishes it
through :func:`~proxyhpo.analysis.publish.publish`. Importing this module loads neither matplotlib nor scipy.

Example:
    >>> record = collect(study, parent_run_id)  # doctest: +SKIP
    >>> record.summary.best_trial, record.summary.n_stopped  # doctest: +SKIP
    ('r2-p1', 3)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from proxyhpo import tracking
from proxyhpo.analysis._report_io import children, class_dice_of, is_running, is_stopped, stopped_at_epoch
from proxyhpo.analysis.publish import Rendered, publish
from proxyhpo.config import Categorical, SearchSpace, StrictModel, StudyConfig
from proxyhpo.registry import STUDY_PIPELINES
from proxyhpo.tracking import names

__all__ = [
    "KIND", "TrialRow", "StudySummary", "HpoRecord", "collect", "render", "collect_trials", "summarize", "plot_search", "build_report",
    "write_report", "render_markdown",
]

#: The study kind this module reports on, as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("hpo")
#: The best trial's hyper-parameters, and the controller's proposals and rewards, as artifacts of the parent run.
BEST_HYPERPARAMETERS_ARTIFACT = "best_hyperparameters.json"
CONTROLLER_HISTORY_ARTIFACT = "controller_history.json"


class TrialRow(StrictModel):
    """One trial as logged in MLflow.

    Attributes:
        hyperparameters: the searched hyper-parameters, by the search space's names, parsed back from
            the run's params (numbers as floats, choices as strings; None when a param is missing).
        val_dice: the final validation Dice of a trial that trained to the end (FINISHED); None otherwise.
            A search trial's validation cases are the search's; the final model's are the search-validation
            part of the search cases, which chose its checkpoint.
        internal_test_dice: Dice on the untouched internal test set (the study's held-out cases, which no
            search, early stopping or checkpoint choice read), with the best-validation weights; the final
            model's, None for a search trial.
        test_dice: Dice on the external set with the best-validation weights.
        stopped: whether early stopping ended the trial (tag ``proxyhpo.state`` = ``STOPPED`` or
            ``proxyhpo.stopped_at_epoch``): not a failure, and its Dice is an early epoch's.
        stopped_at_epoch: the epoch at which early stopping stopped the trial, else None.
        stopped_dice: a stopped trial's Dice at that epoch.
        epochs_run: the epochs it trained.
        running: whether the run has not ended yet (neither failed nor stopped).
        class_dice: a multi-class task's Dice per class: ``{metric: {class: Dice}}`` for ``val_dice`` (the
            last validation), ``internal_test_dice`` and ``test_dice``, classes by their metric names.
    """

    run_id: str
    trial_id: str
    role: str
    round: int | None
    status: str
    hyperparameters: dict[str, float | str | None]
    network: str | None
    data: str | None
    val_dice: float | None
    internal_test_dice: float | None = None
    test_dice: float | None
    gpu_hours: float
    process_hours: float
    wall_seconds: float
    stopped: bool = False
    stopped_at_epoch: int | None = None
    stopped_dice: float | None = None
    epochs_run: int = 0
    running: bool = False
    class_dice: dict[str, dict[str, float]] = {}  # pydantic copies the default per row


class StudySummary(StrictModel):
    """The numbers a study ends with; logged as the parent run's metrics.

    Attributes:
        n_trials: search trials, however they ended: ``n_finished + n_stopped + n_failed + n_running``.
        n_finished: search trials that trained to the end and logged their validation Dice.
        n_failed: search trials that ended without a Dice (failed, killed, or finished without one); not
            those stopped early, nor those still running.
        n_stopped: search trials stopped early (successive halving): not failures, but their Dice is an
            early epoch's.
        n_running: search trials not ended yet.
        trial_epochs_run: epochs the search trials trained, all together.
        trial_epochs_saved: epochs early stopping saved: each stopped trial's epochs not trained
            (``training.epochs - stopped_at_epoch``), all together.
        best_val_dice: the best search trial's validation Dice (the search's validation cases).
        final_val_dice: the final model's validation Dice (the search cases' validation part, which chose
            its checkpoint): not a test result.
        final_internal_test_dice: the final model's Dice on the untouched internal test set (the held-out
            cases); final_test_dice: on the external set.
    """

    n_trials: int
    n_failed: int
    n_finished: int = 0
    n_stopped: int = 0
    n_running: int = 0
    trial_epochs_run: int = 0
    trial_epochs_saved: int = 0
    best_trial: str | None
    best_hyperparameters: dict[str, Any]
    best_val_dice: float | None
    final_val_dice: float | None
    final_internal_test_dice: float | None = None
    final_test_dice: float | None
    total_gpu_hours: float
    total_process_hours: float
    search_gpu_hours: float
    search_process_hours: float

    def metrics(self) -> dict[str, float]:
        """The summary as MLflow metrics (numbers only, missing ones left out)."""
        values = {
            names.BEST_VAL_DICE: self.best_val_dice,
            names.FINAL_VAL_DICE: self.final_val_dice,
            names.FINAL_INTERNAL_TEST_DICE: self.final_internal_test_dice,
            names.FINAL_TEST_DICE: self.final_test_dice,
            names.TOTAL_GPU_HOURS: self.total_gpu_hours,
            names.TOTAL_PROCESS_HOURS: self.total_process_hours,
            names.SEARCH_GPU_HOURS: self.search_gpu_hours,
            names.SEARCH_PROCESS_HOURS: self.search_process_hours,
            names.N_TRIALS: self.n_trials,
            names.N_FAILED_TRIALS: self.n_failed,
            names.N_STOPPED_TRIALS: self.n_stopped,
            names.TRIAL_EPOCHS_RUN: self.trial_epochs_run,
            names.TRIAL_EPOCHS_SAVED: self.trial_epochs_saved,
        }
        return {key: float(value) for key, value in values.items() if value is not None and math.isfinite(float(value))}


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _param(distribution: object, value: str | None) -> float | str | None:
    if value is None:
        return None
    if isinstance(distribution, Categorical):
        return value
    return _float(value)


def collect_trials(parent_run_id: str, space: SearchSpace, tracking_uri: str | None = None) -> list[TrialRow]:
    """Every child run of ``parent_run_id`` (trials and the final model), oldest first.

    Args:
        parent_run_id: the study's MLflow parent run.
        space: the study's search space; its names are the hyper-parameters read back from params.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).
    """
    mlflow_client = tracking.client(tracking_uri)
    rows = []
    for run in children(mlflow_client, mlflow_client.get_run(parent_run_id)):  # pack runs, metrics of no trial, left out
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        stopped = is_stopped(run)
        rows.append(
            TrialRow(
                run_id=run.info.run_id,
                trial_id=tags.get(names.TRIAL_ID_TAG, run.info.run_name or run.info.run_id),
                role=tags.get(names.ROLE_TAG, names.ROLE_TRIAL),
                round=int(tags[names.ROUND_TAG]) if names.ROUND_TAG in tags else None,
                status=run.info.status,
                hyperparameters={name: _param(distribution, params.get(name)) for name, distribution in space.items()},
                network=params.get(names.NETWORK_PARAM),
                data=params.get(names.DATA_PARAM),
                val_dice=_float(metrics.get(names.FINAL_VAL_DICE)) if run.info.status == "FINISHED" and not stopped else None,
                test_dice=_float(metrics.get(names.TEST_DICE)),
                gpu_hours=float(metrics.get(names.GPU_HOURS, 0.0)),
                process_hours=float(metrics.get(names.PROCESS_HOURS, 0.0)),
                wall_seconds=float(metrics.get(names.WALL_SECONDS, 0.0)),
                internal_test_dice=_float(metrics.get(names.INTERNAL_TEST_DICE)),
                stopped=stopped,
                stopped_at_epoch=stopped_at_epoch(run),
                stopped_dice=_float(metrics.get(names.DICE_AT_STOP, metrics.get(names.FINAL_VAL_DICE))) if stopped else None,  # runs before issue 22 logged it as final
                epochs_run=int(_float(metrics.get(names.EPOCHS_RUN)) or 0),
                running=is_running(run),
                class_dice=class_dice_of(metrics),
            )
        )
    return rows


def summarize(rows: Sequence[TrialRow], epochs: int | None = None) -> StudySummary:
    """Best search trial, final model's Dice, GPU-/CPU-hours spent, and the trial-epochs early stopping saved.

    Args:
        rows: the study's trial rows.
        epochs: the epochs a search trial is planned for (``training.epochs``), to count what stopping saved.
    """
    search = [row for row in rows if row.role == "trial"]
    final = next((row for row in rows if row.role == "final"), None)
    done = [row for row in search if row.val_dice is not None]
    stopped = [row for row in search if row.stopped]
    running = [row for row in search if row.running and not row.stopped]
    best = max(done, key=lambda row: row.val_dice) if done else None  # type: ignore[arg-type, return-value]
    best_hyperparameters = dict(best.hyperparameters) if best is not None else {}
    return StudySummary(
        n_trials=len(search),
        n_failed=len(search) - len(done) - len(stopped) - len(running),
        n_finished=len(done),
        n_stopped=len(stopped),
        n_running=len(running),
        trial_epochs_run=sum(row.epochs_run for row in search),
        trial_epochs_saved=sum(max(0, epochs - row.stopped_at_epoch) for row in stopped if row.stopped_at_epoch is not None) if epochs else 0,
        best_trial=best.trial_id if best else None,
        best_hyperparameters=best_hyperparameters,
        best_val_dice=best.val_dice if best else None,
        final_val_dice=final.val_dice if final else None,
        final_internal_test_dice=final.internal_test_dice if final else None,
        final_test_dice=final.test_dice if final else None,
        total_gpu_hours=sum(row.gpu_hours for row in rows),
        total_process_hours=sum(row.process_hours for row in rows),
        search_gpu_hours=sum(row.gpu_hours for row in search),
        search_process_hours=sum(row.process_hours for row in search),
    )


def plot_search(rows: Sequence[TrialRow], space: SearchSpace) -> Any:
    """The search plot (``search.png``): Optuna's optimisation history, slice, parallel coordinates and importances
    of the trials, 2 x 2 (:func:`proxyhpo.analysis.study_plots.plot_search`)."""
    from proxyhpo.analysis import study_plots

    return study_plots.plot_search(rows, space)


def _format(value: float | str | None, digits: int = 4) -> str:
    """A hyper-parameter value in a table cell: floats with ``digits`` significant digits (lr 0.001234, p 0.3255)."""
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _status(row: TrialRow) -> str:
    """A trial's status cell: the run's status, with the epoch and Dice of an early stop."""
    if not row.stopped:
        return row.status
    dice = f", Dice {row.stopped_dice:.4f}" if row.stopped_dice is not None else ""
    return f"stopped at epoch {row.stopped_at_epoch if row.stopped_at_epoch is not None else '?'}{dice}"


def render_markdown(study: StudyConfig, summary: StudySummary, rows: Sequence[TrialRow]) -> str:
    """The report as Markdown: setting, best hyper-parameters, final model, cost, and every trial.

    The trial table has one column per hyper-parameter of the study's search space.
    """

    def fmt(value: float | None, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    hp_names = study.search.space.names
    search = [row for row in rows if row.role == names.ROLE_TRIAL]
    lines = [
        f"# Study `{study.name}`",
        "",
        study.description or "",
        "",
        f"Search: `{study.search.strategy}`, {study.search.rounds} rounds × {study.search.proposals_per_round} proposals, "
        f"{study.training.data} data ({study.selection.method}, budget {study.selection.budget}) "
        f"and {study.training.network} network"
        + (f" ({study.training.proxy_levels} levels)" if study.training.network == "proxy" else "")
        + f", {study.training.epochs} epochs per trial"
        + (
            f", stopped early by successive halving (η = {study.search.early_stopping.reduction_factor}, rungs at epochs "
            f"{', '.join(map(str, study.search.early_stopping.rungs(study.training.epochs)))})."
            if study.search.early_stopping is not None
            else "."
        ),
        "",
        "## Best hyper-parameters",
        "",
        "| hyper-parameter | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value:.3g} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in summary.best_hyperparameters.items()]
    lines += [
        "",
        f"Best search trial: `{summary.best_trial}` with validation Dice {fmt(summary.best_val_dice)}.",
        "",
        "## Final model",
        "",
        "| set | Dice |",
        "| --- | --- |",
        f"| validation (the search cases' validation part; chose the checkpoint) | {fmt(summary.final_val_dice)} |",
        f"| internal test (the held-out cases; read by no search, stopping or checkpoint choice) | {fmt(summary.final_internal_test_dice)} |",
        f"| external | {fmt(summary.final_test_dice)} |",
        "",
    ]
    final = next((row for row in rows if row.role == names.ROLE_FINAL and row.class_dice), None)
    if final is not None:  # a multi-class task: the final model's Dice per class (the table above holds their mean)
        sets = [(names.VAL_DICE, "validation"), (names.INTERNAL_TEST_DICE, "internal test"), (names.TEST_DICE, "external")]
        classes = list(dict.fromkeys(name for per_class in final.class_dice.values() for name in per_class))
        lines += ["| class | " + " | ".join(label for _, label in sets) + " |", "| --- | " + " | ".join("---" for _ in sets) + " |"]
        lines += [f"| {name} | " + " | ".join(fmt(final.class_dice.get(metric, {}).get(name)) for metric, _ in sets) + " |" for name in classes]
        lines += [""]
    lines += [
        "## Cost",
        "",
        f"{summary.n_trials} search trials: {summary.n_finished} finished, {summary.n_stopped} stopped early, {summary.n_failed} failed"
        + (f", {summary.n_running} still running" if summary.n_running else "")
        + f". GPU-hours {summary.total_gpu_hours:.4f} "
        f"(search {summary.search_gpu_hours:.4f}); process hours on the CPU {summary.total_process_hours:.4f} "
        f"(search {summary.search_process_hours:.4f}).",
        "",
    ]
    if study.search.early_stopping is not None:
        planned = summary.trial_epochs_run + summary.trial_epochs_saved
        share = f" ({100 * summary.trial_epochs_saved / planned:.0f} %)" if planned else ""
        lines += [
            f"Early stopping stopped {summary.n_stopped} of {summary.n_trials} trials and saved {summary.trial_epochs_saved} "
            f"of {planned} planned trial-epochs{share}.",
            "",
        ]
    lines += [
        "## Trials",
        "",
        "| trial | round | " + " | ".join(hp_names) + " | val Dice | status |",
        "| --- | --- | " + " | ".join("---" for _ in hp_names) + " | --- | --- |",
    ]
    lines += [
        f"| {row.trial_id} | {row.round} | " + " | ".join(_format(row.hyperparameters.get(name)) for name in hp_names) + f" | {fmt(row.val_dice)} | {_status(row)} |"
        for row in search
    ]
    return "\n".join(lines) + "\n"


class HpoRecord(StrictModel):
    """An HPO study's numbers.

    Attributes:
        study: the study config.
        parent_run_id: its parent run.
        rows: every child run (search trials and the final model), oldest first.
        summary: what they amount to (the parent run's metrics).
    """

    study: StudyConfig
    parent_run_id: str
    rows: tuple[TrialRow, ...]
    summary: StudySummary


def collect(study: StudyConfig, parent_run_id: str, tracking_uri: str | None = None) -> HpoRecord:
    """The HPO study's numbers: its child runs read back (:func:`collect_trials`) and summarised (:func:`summarize`)."""
    rows = collect_trials(parent_run_id, study.search.space, tracking_uri)
    return HpoRecord(study=study, parent_run_id=parent_run_id, rows=tuple(rows), summary=summarize(rows, study.training.epochs))


def render(record: HpoRecord) -> Rendered:
    """The report of an HPO study: Markdown, the parent run's metrics, the search plot, ``summary.json`` and the
    best hyper-parameters."""
    summary = record.summary
    documents = {BEST_HYPERPARAMETERS_ARTIFACT: dict(summary.best_hyperparameters)} if summary.best_hyperparameters else {}
    return Rendered(
        kind=KIND,
        title=record.study.name,
        markdown=render_markdown(record.study, summary, record.rows),
        metrics=summary.metrics(),
        figures={"search": plot_search(record.rows, record.study.search.space)},
        summary=summary.model_dump(mode="json"),
        documents=documents,
    )


def build_report(
    study: StudyConfig,
    parent_run_id: str,
    out_dir: str | os.PathLike[str],
    *,
    controller_state: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> tuple[StudySummary, str]:
    """Collect the study's trials from MLflow, write ``report.md``, ``search.png`` and ``summary.json`` to
    ``out_dir``, log them and the summary metrics on the parent run, and mark it FINISHED.

    Args:
        study: the study config.
        parent_run_id: the study's MLflow parent run.
        out_dir: where the report files are written.
        controller_state: the controller's final state; its proposals with their rewards are logged on
            the parent as ``controller_history.json`` and each round's mean reward as ``round_mean_val_dice``.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Returns:
        The summary and the Markdown text.
    """
    record = collect(study, parent_run_id, tracking_uri)
    rendered = render(record)
    publish(rendered, parent_run_id, out_dir=out_dir, tracking_uri=tracking_uri, before_finish=_controller_logger(study, parent_run_id, controller_state))
    return record.summary, rendered.markdown


def write_report(
    study: StudyConfig,
    parent_run_id: str,
    controller_state: str | os.PathLike[str],
    *,
    markdown: str | os.PathLike[str],
    html: str | os.PathLike[str],
    tracking_uri: str | None = None,
) -> StudySummary:
    """The pipeline's report step: :func:`collect` and :func:`render`, then :func:`~proxyhpo.analysis.publish.publish`
    (log it on the parent run with the controller's history, close the run, write the Markdown and a
    self-contained HTML page at the given paths, for the Kubeflow UI's visualisations).

    Returns:
        The study summary.
    """
    record = collect(study, parent_run_id, tracking_uri)
    publish(
        render(record), parent_run_id, markdown=markdown, html=html, tracking_uri=tracking_uri,
        before_finish=_controller_logger(study, parent_run_id, controller_state),
    )
    return record.summary


def _controller_logger(study: StudyConfig, run_id: str, state_path: str | os.PathLike[str] | None) -> Any:
    """What :func:`publish` calls before closing the run: :func:`_log_controller` when there is a search state."""
    if state_path is None:
        return None
    return lambda mlflow_client: _log_controller(mlflow_client, study, run_id, state_path)


def _log_controller(mlflow_client: Any, study: StudyConfig, run_id: str, state_path: str | os.PathLike[str]) -> None:
    """The search strategy's proposals with their Dice, and what it learned per round, on the parent run."""
    import time

    from mlflow.entities import Metric

    from proxyhpo.search import strategy_class

    now_ms = int(time.time() * 1000)
    strategy = strategy_class(study).restore(study, state_path)
    history = strategy.history()
    mlflow_client.log_dict(run_id, [record.model_dump(mode="json") for record in history], CONTROLLER_HISTORY_ARTIFACT)
    # a round's mean Dice over its trials that trained to the end (a stopped trial's is an early epoch's); the
    # REINFORCE reward is the Dice itself without early stopping, a rank with it (then logged apart)
    dice_by_round: dict[int, list[float]] = {}
    for record in history:
        if record.score is not None and record.stopped_at_epoch is None:
            dice_by_round.setdefault(record.proposal.round, []).append(record.score)
    metrics = [Metric(names.ROUND_MEAN_VAL_DICE, sum(values) / len(values), now_ms, round_index) for round_index, values in sorted(dice_by_round.items())]
    metrics += [Metric(name, value, now_ms, round_index) for name, points in strategy.round_metrics().items() for round_index, value in points]
    if metrics:
        mlflow_client.log_batch(run_id, metrics=metrics)
