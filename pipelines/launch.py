"""Run a study's pipeline: locally with ``kfp.local.SubprocessRunner`` or on a Kubeflow cluster with ``kfp.Client``.

Locally (the embedded default) everything lands under ``.proxyhpo/``: generated data, the pipeline root
``artifacts/`` and the MLflow store ``mlflow.db``. The runner's verbose task logs go to
``.proxyhpo/logs/``; the terminal shows a progress display of rounds and trials read from MLflow, and
the study's result table at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.config import StudyConfig, load_study
from proxyhpo.errors import ConfigError, ProxyHPOError

__all__ = ["run_study", "run_local", "submit", "upload_all", "absolute_data_paths"]


def absolute_data_paths(study: StudyConfig) -> StudyConfig:
    """Resolve relative local data paths against the current folder, so every task process agrees on them."""

    def resolve(location: str | None) -> str | None:
        if location is None or storage.is_s3_url(location):
            return location
        return str(Path(location).absolute())

    data = study.data.model_copy(update={"dataset": resolve(study.data.dataset), "external": resolve(study.data.external)})
    return study.model_copy(update={"data": data})


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[Any]:
    """Send this process's stdout/stderr (and its children's) to ``log_path``; yield a stream to the real terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_err), "w", buffering=1)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


class _StudyProgress(threading.Thread):
    """Polls MLflow for the study's trial runs and drives a rich progress display."""

    def __init__(self, study: StudyConfig, started_ms: int, console: Any) -> None:
        super().__init__(daemon=True)
        self.study = study
        self.started_ms = started_ms
        self.console = console
        self.stopped = threading.Event()

    def _counts(self) -> tuple[int, int, int, bool]:
        mlflow_client = tracking.client()
        experiment = mlflow_client.get_experiment_by_name(self.study.name)
        if experiment is None:
            return 0, 0, 0, False
        runs = mlflow_client.search_runs(
            [experiment.experiment_id], filter_string=f"attributes.start_time >= {self.started_ms}", max_results=5000
        )
        trials = [r for r in runs if r.data.tags.get(tracking.ROLE_TAG) == "trial"]
        done = sum(r.info.status != "RUNNING" for r in trials)
        failed = sum(r.info.status == "FAILED" for r in trials)
        final = any(r.data.tags.get(tracking.ROLE_TAG) == "final" for r in runs)
        return len(trials), done, failed, final

    def run(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        rounds, per_round = self.study.search.rounds, self.study.search.proposals_per_round
        total = rounds * per_round
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console) as bar:
            task = bar.add_task("preparing data and proxy selection", total=total)
            while not self.stopped.wait(2.0):
                try:
                    started, done, failed, final = self._counts()
                except Exception:  # the store may be busy migrating; try again on the next tick
                    continue
                if final:
                    description = "training the final model (full network, all data)"
                elif started:
                    current = min(rounds, done // per_round + 1)
                    description = f"round {current}/{rounds}: trials" + (f" ({failed} failed)" if failed else "")
                else:
                    description = "preparing data and proxy selection"
                bar.update(task, completed=done, description=description)
            bar.update(task, completed=self._counts()[1])


def _print_summary(study: StudyConfig, summary: dict[str, Any], log_path: Path, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"study {study.name}: best hyper-parameters")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in summary.get("best_values", {}).items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    for label, key in (("best search val Dice", "best_val_dice"), ("final model, internal Dice", "final_val_dice"), ("final model, external Dice", "final_test_dice")):
        value = summary.get(key)
        table.add_row(label, "–" if value is None else f"{value:.4f}")
    table.add_row("trials (failed)", f"{summary['n_trials']} ({summary['n_failed']})")
    table.add_row("GPU-hours", f"{summary['total_gpu_hours']:.4f}")
    table.add_row("CPU-hours", f"{summary['total_cpu_hours']:.4f}")
    console.print(table)
    console.print(f"MLflow: experiment '{study.name}' in {paths.tracking_uri()} — open it with [bold]make mlflow-ui[/bold]")
    console.print(f"artifacts: {paths.artifacts_dir()}   task logs: {log_path}")


def _fail_open_runs(experiment: str, since_ms: int) -> None:
    """Mark the runs this launch left RUNNING (the parent, a crashed pack's trials) as FAILED."""
    mlflow_client = tracking.client()
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return
    for run in mlflow_client.search_runs([found.experiment_id], filter_string=f"attributes.start_time >= {since_ms} and attributes.status = 'RUNNING'"):
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")


def run_local(study: StudyConfig) -> dict[str, Any]:
    """Run the HPO pipeline on this machine with ``kfp.local.SubprocessRunner``; return the study summary.

    The data are prepared (generated if configured, validated) before the pipeline starts, so bad input
    stops here with a one-line error rather than deep inside a task.
    """
    from kfp import local
    from rich.console import Console

    from pipelines.hpo import build_hpo_pipeline
    from proxyhpo.data.prepare import prepare_study_data

    study = absolute_data_paths(study)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store-migration notices are not the user's business
    os.environ["PROXYHPO_HOME"] = str(paths.proxyhpo_home())  # absolute, shared with every task process
    os.environ.setdefault("MLFLOW_TRACKING_URI", paths.default_tracking_uri())
    console = Console(stderr=True)
    console.print(f"[bold]proxyhpo[/bold] study {study.name}: preparing data under {paths.data_dir()}")
    prepare_study_data(study, progress=True)
    tracking.ensure_experiment(study.name)  # created once, before parallel writers race to migrate the store

    log_path = paths.proxyhpo_home() / "logs" / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    started_ms = int(time.time() * 1000) - 1000
    pipeline = build_hpo_pipeline(study)
    with _output_to(log_path) as terminal:
        live = Console(file=terminal, force_terminal=terminal.isatty())
        progress = _StudyProgress(study, started_ms, live)
        progress.start()
        try:
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(paths.artifacts_dir()), raise_on_error=True)
            pipeline(study_config=study.model_dump_json())
        except Exception as exc:
            progress.stopped.set()
            progress.join()
            _fail_open_runs(study.name, started_ms)
            raise ProxyHPOError(f"the pipeline failed ({exc}); the task logs are in {log_path}") from exc
        progress.stopped.set()
        progress.join()
    summary = _study_summary(study.name, started_ms)
    _print_summary(study, summary, log_path, console)
    return summary


def _study_summary(experiment: str, since_ms: int) -> dict[str, Any]:
    """The ``summary.json`` the report logged on this launch's study run."""
    import mlflow

    mlflow_client = tracking.client()
    found = mlflow_client.get_experiment_by_name(experiment)
    runs = mlflow_client.search_runs(
        [found.experiment_id],
        filter_string=f"attributes.start_time >= {since_ms} and tags.`{tracking.ROLE_TAG}` = 'study'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ProxyHPOError(f"the pipeline finished but no study run was found in experiment {experiment!r}")
    mlflow.set_tracking_uri(paths.tracking_uri())
    return mlflow.artifacts.load_dict(f"runs:/{runs[0].info.run_id}/summary.json")


def submit(study: StudyConfig, host: str, *, namespace: str | None = "kubeflow") -> str:
    """Submit the study's pipeline to a Kubeflow cluster (experiment = study name); return the run id.

    Raises:
        ConfigError: when the study's data are local paths, which the cluster's pods cannot read.
    """
    import kfp

    from pipelines.hpo import build_hpo_pipeline

    for key, location in (("data.dataset", study.data.dataset), ("data.external", study.data.external)):
        if location is not None and not storage.is_s3_url(location):
            raise ConfigError(
                key,
                f"is the local path {location!r}, which the cluster's pods cannot read",
                "upload the MSD folder to MinIO (e.g. `mc cp --recursive`) and give its s3://bucket/prefix",
            )

    client = kfp.Client(host=host, namespace=namespace)
    run = client.create_run_from_pipeline_func(
        build_hpo_pipeline(study),
        arguments={"study_config": study.model_dump_json()},
        experiment_name=study.name,
        run_name=f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    print(f"submitted run {run.run_id} to {host} (experiment {study.name})")
    return run.run_id


def run_study(config: str | os.PathLike[str], *, local: bool = True, host: str | None = None, namespace: str | None = "kubeflow") -> Any:
    """``proxyhpo run CONFIG [--local | --host URL [--namespace NS]]``."""
    study = load_study(config)
    if host:
        return submit(study, host, namespace=namespace)
    return run_local(study)


def upload_all(host: str, *, namespace: str | None = "kubeflow") -> list[str]:
    """Compile every example pipeline and upload it to the cluster at ``host``; return their names."""
    import kfp

    from pipelines.compile import compile_all

    from proxyhpo import __version__

    client = kfp.Client(host=host, namespace=namespace)
    names = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in compile_all(tmp):
            name = f"proxyhpo-{path.stem}"
            existing = client.get_pipeline_id(name)
            if existing is None:
                client.upload_pipeline(str(path), pipeline_name=name, description=f"proxyhpo {path.stem} (compiled from examples/)")
            else:  # a second deploy adds a version instead of failing on the name
                version = f"{name}-{__version__}-{time.strftime('%Y%m%d-%H%M%S')}"
                client.upload_pipeline_version(str(path), pipeline_version_name=version, pipeline_id=existing)
            names.append(name)
    return names
