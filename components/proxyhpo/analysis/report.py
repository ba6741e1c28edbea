"""The study report: what was searched, what it found, what it cost, as Markdown, plots and metrics.

The trial rows are read back from MLflow (the child runs of the study's parent run), so the report shows
exactly what the tracking server holds, whichever pods logged it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from proxyhpo import storage, tracking

__all__ = ["TrialRow", "StudySummary", "collect_trials", "summarise", "plot_search", "build_report", "render_markdown"]


class TrialRow(BaseModel):
    """One trial as logged in MLflow."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    trial_id: str
    role: str
    round: int | None
    status: str
    lr: float | None
    optimizer: str | None
    intensity_shift_prob: float | None
    network: str | None
    data: str | None
    val_dice: float | None
    test_dice: float | None
    gpu_hours: float
    cpu_hours: float
    wall_seconds: float


class StudySummary(BaseModel):
    """The numbers a study ends with; logged as the parent run's metrics."""

    model_config = ConfigDict(frozen=True)

    n_trials: int
    n_failed: int
    best_trial: str | None
    best_values: dict[str, Any]
    best_val_dice: float | None
    final_val_dice: float | None
    final_test_dice: float | None
    total_gpu_hours: float
    total_cpu_hours: float
    search_gpu_hours: float
    search_cpu_hours: float

    def metrics(self) -> dict[str, float]:
        """The summary as MLflow metrics (numbers only, missing ones left out)."""
        values = {
            "best_val_dice": self.best_val_dice,
            "final_val_dice": self.final_val_dice,
            "final_test_dice": self.final_test_dice,
            "total_gpu_hours": self.total_gpu_hours,
            "total_cpu_hours": self.total_cpu_hours,
            "search_gpu_hours": self.search_gpu_hours,
            "search_cpu_hours": self.search_cpu_hours,
            "n_trials": self.n_trials,
            "n_failed_trials": self.n_failed,
        }
        return {key: float(value) for key, value in values.items() if value is not None and math.isfinite(float(value))}


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def collect_trials(parent_run_id: str, tracking_uri: str | None = None) -> list[TrialRow]:
    """Every child run of ``parent_run_id`` (trials and the final model), oldest first."""
    mlflow_client = tracking.client(tracking_uri)
    parent = mlflow_client.get_run(parent_run_id)
    runs = mlflow_client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'", max_results=10000, order_by=["attributes.start_time ASC"]
    )
    rows = []
    for run in runs:
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        rows.append(
            TrialRow(
                run_id=run.info.run_id,
                trial_id=tags.get("proxyhpo.trial_id", run.info.run_name or run.info.run_id),
                role=tags.get(tracking.ROLE_TAG, "trial"),
                round=int(tags[tracking.ROUND_TAG]) if tracking.ROUND_TAG in tags else None,
                status=run.info.status,
                lr=_float(params.get("lr")),
                optimizer=params.get("optimizer"),
                intensity_shift_prob=_float(params.get("intensity_shift_prob")),
                network=params.get("network"),
                data=params.get("data"),
                val_dice=_float(metrics.get("final_val_dice")) if run.info.status == "FINISHED" else None,
                test_dice=_float(metrics.get("test_dice")),
                gpu_hours=float(metrics.get("gpu_hours", 0.0)),
                cpu_hours=float(metrics.get("cpu_hours", 0.0)),
                wall_seconds=float(metrics.get("wall_seconds", 0.0)),
            )
        )
    return rows


def summarise(rows: list[TrialRow]) -> StudySummary:
    """Best search trial, final model's Dice, and GPU-/CPU-hours spent."""
    search = [row for row in rows if row.role == "trial"]
    final = next((row for row in rows if row.role == "final"), None)
    done = [row for row in search if row.val_dice is not None]
    best = max(done, key=lambda row: row.val_dice) if done else None  # type: ignore[arg-type, return-value]
    best_values = {}
    if best is not None:
        best_values = {"lr": best.lr, "optimizer": best.optimizer, "intensity_shift_prob": best.intensity_shift_prob}
    return StudySummary(
        n_trials=len(search),
        n_failed=len(search) - len(done),
        best_trial=best.trial_id if best else None,
        best_values=best_values,
        best_val_dice=best.val_dice if best else None,
        final_val_dice=final.val_dice if final else None,
        final_test_dice=final.test_dice if final else None,
        total_gpu_hours=sum(row.gpu_hours for row in rows),
        total_cpu_hours=sum(row.cpu_hours for row in rows),
        search_gpu_hours=sum(row.gpu_hours for row in search),
        search_cpu_hours=sum(row.cpu_hours for row in search),
    )


def plot_search(rows: list[TrialRow], out: str | os.PathLike[str]) -> Path:
    """Three panels: Dice per trial by round with the best so far, Dice against learning rate, and
    against the intensity-shift probability (colour = optimiser). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = [row for row in rows if row.role == "trial"]
    done = [row for row in search if row.val_dice is not None]
    optimisers = sorted({row.optimizer or "?" for row in search})
    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(optimisers)}
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)

    best_so_far, best = [], -math.inf
    for row in search:
        best = max(best, row.val_dice if row.val_dice is not None else -math.inf)
        best_so_far.append(best if math.isfinite(best) else None)
    axes[0].scatter(range(1, len(search) + 1), [row.val_dice if row.val_dice is not None else math.nan for row in search],
                    c=[colours[row.optimizer or "?"] for row in search], s=28)
    axes[0].step(range(1, len(search) + 1), [b if b is not None else math.nan for b in best_so_far], where="post", color="k", lw=1, label="best so far")
    failed = [i + 1 for i, row in enumerate(search) if row.val_dice is None]
    if failed:
        axes[0].scatter(failed, [0.0] * len(failed), marker="x", color="red", label="failed")
    axes[0].set(xlabel="trial (in order of proposal)", ylabel="validation Dice", title="search progress")
    axes[0].legend(loc="lower right", fontsize=8)

    for name in optimisers:
        mine = [row for row in done if (row.optimizer or "?") == name]
        axes[1].scatter([row.lr for row in mine], [row.val_dice for row in mine], color=colours[name], label=name, s=28)
        axes[2].scatter([row.intensity_shift_prob for row in mine], [row.val_dice for row in mine], color=colours[name], label=name, s=28)
    axes[1].set(xscale="log", xlabel="learning rate", ylabel="validation Dice", title="Dice vs learning rate")
    axes[2].set(xlabel="intensity-shift probability", ylabel="validation Dice", title="Dice vs augmentation")
    axes[1].legend(fontsize=8)
    with storage.atomic_output(out) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return Path(out)


def render_markdown(study: Any, summary: StudySummary, rows: list[TrialRow]) -> str:
    """The report as Markdown: setting, best hyper-parameters, final model, cost, and every trial."""

    def fmt(value: float | None, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    search = [row for row in rows if row.role == "trial"]
    lines = [
        f"# Study `{study.name}`",
        "",
        study.description or "",
        "",
        f"Search: {study.search.rounds} rounds × {study.search.proposals_per_round} proposals, "
        f"{study.training.data} data ({study.selection.method}, budget {study.selection.budget}) "
        f"and {study.training.network} network"
        + (f" ({study.training.proxy_levels} levels)" if study.training.network == "proxy" else "")
        + f", {study.training.epochs} epochs per trial.",
        "",
        "## Best hyper-parameters",
        "",
        "| hyper-parameter | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value:.3g} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in summary.best_values.items()]
    lines += [
        "",
        f"Best search trial: `{summary.best_trial}` with validation Dice {fmt(summary.best_val_dice)}.",
        "",
        "## Final model",
        "",
        "| set | Dice |",
        "| --- | --- |",
        f"| internal (held out) | {fmt(summary.final_val_dice)} |",
        f"| external | {fmt(summary.final_test_dice)} |",
        "",
        "## Cost",
        "",
        f"{summary.n_trials} trials ({summary.n_failed} failed); GPU-hours {summary.total_gpu_hours:.4f} "
        f"(search {summary.search_gpu_hours:.4f}); CPU-hours {summary.total_cpu_hours:.4f} (search {summary.search_cpu_hours:.4f}).",
        "",
        "## Trials",
        "",
        "| trial | round | optimizer | lr | shift p | val Dice | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row.trial_id} | {row.round} | {row.optimizer} | {fmt(row.lr, 5)} | {fmt(row.intensity_shift_prob, 2)} | {fmt(row.val_dice)} | {row.status} |"
        for row in search
    ]
    return "\n".join(lines) + "\n"


def build_report(
    study: Any,
    parent_run_id: str,
    out_dir: str | os.PathLike[str],
    *,
    controller_state: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> tuple[StudySummary, str]:
    """Collect the study's trials from MLflow, write ``report.md`` and ``search.png`` to ``out_dir``, log
    them and the summary metrics on the parent run, and mark it FINISHED.

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
    rows = collect_trials(parent_run_id, tracking_uri)
    summary = summarise(rows)
    markdown = render_markdown(study, summary, rows)
    out = Path(out_dir)
    report_path = storage.atomic_write_text(out / "report.md", markdown)
    plot_path = plot_search(rows, out / "search.png")
    storage.atomic_write_json(out / "summary.json", summary.model_dump(mode="json"))
    mlflow_client = tracking.client(tracking_uri)
    from mlflow.entities import Metric
    import time

    now = int(time.time() * 1000)
    mlflow_client.log_batch(parent_run_id, metrics=[Metric(key, value, now, 0) for key, value in summary.metrics().items()])
    for path in (report_path, plot_path, out / "summary.json"):
        mlflow_client.log_artifact(parent_run_id, str(path))
    if summary.best_values:
        mlflow_client.log_dict(parent_run_id, summary.best_values, "best_hyperparameters.json")
    if controller_state is not None:
        _log_controller(mlflow_client, parent_run_id, controller_state, now)
    tracking.finish_run(parent_run_id, tracking_uri=tracking_uri)
    return summary, markdown


def _log_controller(mlflow_client: Any, run_id: str, state_path: str | os.PathLike[str], now_ms: int) -> None:
    """The controller's proposals and rewards, and its per-round statistics, on the parent run."""
    from mlflow.entities import Metric

    from proxyhpo.controller.state import read_state

    state, _ = read_state(state_path)
    mlflow_client.log_dict(run_id, [record.model_dump(mode="json") for record in state.history], "controller_history.json")
    metrics = [
        Metric("round_mean_val_dice", float(update.mean_reward), now_ms, int(update.round))
        for update in state.updates
        if update.mean_reward is not None
    ]
    metrics += [Metric("controller_entropy", float(update.entropy), now_ms, int(update.round)) for update in state.updates if update.entropy is not None]
    if metrics:
        mlflow_client.log_batch(run_id, metrics=metrics)
