"""Run a study's pipeline: locally with ``kfp.local.SubprocessRunner``, or submitted to a Kubeflow cluster.

Both run the YAML the one compile path writes (:mod:`proxyhpo.compile`), never the Python it came from; the
kinds are :data:`proxyhpo.registry.STUDY_PIPELINES`. Uploading the shipped pipelines is :mod:`proxyhpo.upload`'s.

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

from proxyhpo import paths, tracking
from proxyhpo.compile import compile_study
from proxyhpo.config import StudyConfig, load_study
from proxyhpo.errors import ConfigError, ProxyHPOError
from proxyhpo.registry import STUDY_PIPELINES

__all__ = ["run_study", "run_local", "submit"]


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
    """Polls MLflow for the study's trial runs and drives a rich progress display.

    The search's trials and the HPO study's final model are two lines, each with its own elapsed time, so
    the time shown beside the final model is the final model's (not the whole run's). Set :attr:`succeeded`
    before :attr:`stopped` when the pipeline finished, so the final model's line ends complete.
    """

    def __init__(self, study: StudyConfig, parent_run_id: str, console: Any, kind: str = "hpo") -> None:
        super().__init__(daemon=True)
        self.study = study
        self.parent_run_id = parent_run_id
        self.console = console
        self.kind = kind
        self.stopped = threading.Event()
        self.succeeded = False

    def _describe(self, started: int, done: int, failed: int, final: bool) -> str:
        failures = f" ({failed} failed)" if failed else ""
        if not started:
            return "preparing data and selecting proxy data"
        if self.kind == "nas":
            return f"NAS: search tasks (episodes of {self.study.nas.children_per_episode} children){failures}"
        if self.kind != "hpo":
            return f"{self.kind}: trials{failures}"
        if final:
            return f"search: {done} trials{failures}"
        rounds, per_round = self.study.search.rounds, self.study.search.proposals_per_round
        return f"round {min(rounds, done // per_round + 1)}/{rounds}: trials{failures}"

    def run(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        try:
            total = self.study.planned_trials(self.kind)
        except ValueError:  # a study pipeline that does not say how many trials it trains: the bar only counts them
            total = None
        final_task = None
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console) as bar:
            task = bar.add_task(self._describe(0, 0, 0, False), total=total)
            while not self.stopped.wait(2.0):
                try:
                    started, done, failed, final = tracking.trial_progress(self.study.name, parent_run_id=self.parent_run_id)
                except Exception:  # the store may be busy migrating; try again on the next tick
                    continue
                bar.update(task, completed=done, description=self._describe(started, done, failed, final))
                if final and final_task is None and self.kind == "hpo":
                    bar.stop_task(task)  # the search's elapsed time stops where the final model starts
                    final_task = bar.add_task(f"training the final model ({self.study.final.network} network, search-train cases)", total=1)
            with contextlib.suppress(Exception):
                bar.update(task, completed=tracking.trial_progress(self.study.name, parent_run_id=self.parent_run_id)[1])
            if final_task is not None and self.succeeded:
                bar.update(final_task, completed=1)


def _print_summary(study: StudyConfig, summary: dict[str, Any], log_path: Path, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"study {study.name}: best hyper-parameters")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in summary.get("best_hyperparameters", {}).items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    for label, key in (("best search val Dice", "best_val_dice"), ("final model, internal test Dice", "final_internal_test_dice"), ("final model, external Dice", "final_test_dice")):
        value = summary.get(key)
        table.add_row(label, "–" if value is None else f"{value:.4f}")
    table.add_row("trials (failed)", f"{summary['n_trials']} ({summary['n_failed']})")
    if summary.get("n_stopped"):
        run, saved = summary.get("trial_epochs_run", 0), summary.get("trial_epochs_saved", 0)
        table.add_row("stopped early (trial-epochs saved)", f"{summary['n_stopped']} ({saved:.0f} of {run + saved:.0f})")
    table.add_row("GPU-hours", f"{summary['total_gpu_hours']:.4f}")
    table.add_row("process hours (CPU)", f"{summary['total_process_hours']:.4f}")
    console.print(table)
    console.print(f"MLflow: experiment '{study.name}' in {paths.tracking_uri()} — open it with [bold]make mlflow-ui[/bold]")
    console.print(f"artifacts: {paths.artifacts_dir()}   task logs: {log_path}")


def _print_study_report(study: StudyConfig, markdown: str, log_path: Path, console: Any) -> None:
    from rich.markdown import Markdown

    console.print(Markdown(markdown))
    console.print(f"MLflow: experiment '{study.name}' in {paths.tracking_uri()} — open it with [bold]make mlflow-ui[/bold]")
    console.print(f"artifacts: {paths.artifacts_dir()}   task logs: {log_path}")


def _as_run(study: StudyConfig) -> StudyConfig:
    """The study exactly as the pipeline's first task resolves it (its config and run parameters), whose hash identifies it."""
    from proxyhpo.config import study_from_json

    parameters = study.run_parameters()
    return study_from_json(study.model_dump_json(), dataset=parameters["dataset"], external=parameters["external"], name=parameters["study_name"])


def _end_tasks(grace_s: float = 20.0) -> None:
    """Stop this launcher's task processes: SIGTERM (they close their trials' runs), then SIGKILL after ``grace_s``."""
    import psutil

    tasks = psutil.Process().children(recursive=True)
    for task in tasks:
        with contextlib.suppress(psutil.Error):
            task.terminate()
    _, alive = psutil.wait_procs(tasks, timeout=grace_s)
    for task in alive:
        with contextlib.suppress(psutil.Error):
            task.kill()


def _stop_interrupted(study: StudyConfig, run_id: str, exc: BaseException, terminal: Any) -> None:
    """The launcher was interrupted (Ctrl-C, SIGTERM): end the tasks, close the study's runs, and exit at once.

    The runner's worker threads would otherwise retry the interrupted tasks (the retries meant for evicted
    pods) and keep the process alive: the launcher exits with ``os._exit`` once its runs are closed.
    """
    from proxyhpo.signals import EXIT_TERMINATED, Terminated, fail_reason_of

    _end_tasks()
    reason = fail_reason_of(exc)
    with contextlib.suppress(Exception):  # the runs are closed by the next start of the study when the store does not answer
        tracking.fail_open_runs(study.name, parent_run_id=run_id, reason=reason)
    print(
        f"proxyhpo run: {reason}: study {study.name} stopped and its MLflow runs were closed; "
        "run the same command again to resume it (--fresh to start over)",
        file=terminal,
        flush=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_TERMINATED if isinstance(exc, Terminated) else 130)


def run_local(study: StudyConfig, kind: str = "hpo", *, fresh: bool = False) -> dict[str, Any]:
    """Run pipeline ``kind`` on this machine with ``kfp.local.SubprocessRunner``; return the study summary.

    For the HPO search the summary is the report's ``summary.json``; for a comparison study, the
    report's metrics (and the trust check's verdict).

    The data are prepared (generated if configured, validated) before the pipeline starts, so bad input
    stops here with a one-line error rather than deep inside a task.

    A study that was stopped part-way (Ctrl-C, SIGTERM, SIGKILL) resumes: its MLflow parent run is
    reopened and the trials it finished are not trained again (:mod:`proxyhpo.resume`); ``fresh`` starts
    over with a new parent run instead. Interrupted by Ctrl-C or SIGTERM, the launcher stops its tasks,
    closes the study's runs and exits (130 or 143); killed outright, its tasks notice within a second
    (:data:`proxyhpo.signals.LAUNCHER_ENV`) and end their trials.
    """
    import mlflow  # noqa: F401 - mlflow sets its loggers' level when imported: quiet them after that, not before
    from kfp import components, local
    from rich.console import Console

    from proxyhpo import resume
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.signals import LAUNCHER_ENV, Terminated, launcher_identity, sigterm_ends_trials

    study = study.model_copy(update={"data": study.data.with_absolute_paths()})
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store-migration notices are not the user's business
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # nor is its bar for reading back a small summary
    os.environ["PROXYHPO_HOME"] = str(paths.proxyhpo_home())  # absolute, shared with every task process
    os.environ.setdefault("MLFLOW_TRACKING_URI", paths.default_tracking_uri())
    console = Console(stderr=True)
    prepare_study_data(study, progress=True)  # said once it is done: bad data ends in one line on stderr, naming the file
    console.print(f"[bold]proxyhpo[/bold] study {study.name}: data prepared under {paths.data_dir()}")
    tracking.ensure_experiment(study.name)  # created once, before parallel writers race to migrate the store

    run_id, resumed = resume.open_parent_run(_as_run(study), kind, fresh=fresh)
    if resumed:
        console.print(f"resuming study {study.name} (MLflow run {run_id}): trials it finished are not trained again; --fresh starts over")
    log_path = paths.proxyhpo_home() / "logs" / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    # what runs here is the compiled YAML a cluster is given, not the Python definition it came from
    compiled = compile_study(study, paths.proxyhpo_home() / "pipelines" / f"{kind}-{study.name}.yaml", kind)
    pipeline = components.load_component_from_file(str(compiled))
    os.environ[resume.PARENT_ENV] = run_id  # the pipeline's first task logs under this run
    os.environ[LAUNCHER_ENV] = launcher_identity()  # training tasks end their trials when this process is gone
    try:
        with _output_to(log_path) as terminal, sigterm_ends_trials():
            live = Console(file=terminal, force_terminal=terminal.isatty())
            progress = _StudyProgress(study, run_id, live, kind)
            progress.start()
            try:
                local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(paths.artifacts_dir()), raise_on_error=True)
                pipeline(study_config=study.model_dump_json(), **study.run_parameters())
            except (KeyboardInterrupt, Terminated) as exc:
                progress.stopped.set()
                _stop_interrupted(study, run_id, exc, terminal)
            except Exception as exc:
                progress.stopped.set()
                progress.join()
                tracking.fail_open_runs(study.name, parent_run_id=run_id)
                raise ProxyHPOError(f"the pipeline failed ({exc}); the task logs are in {log_path}") from exc
            progress.succeeded = True
            progress.stopped.set()
            progress.join()
    finally:
        for key in (resume.PARENT_ENV, LAUNCHER_ENV):
            os.environ.pop(key, None)
    summary = tracking.study_summary(study.name, run_id=run_id)
    if kind == "hpo":
        _print_summary(study, summary, log_path, console)
    else:
        markdown = tracking.study_artifact(study.name, "report.md", run_id=run_id)
        _print_study_report(study, markdown, log_path, console)
    return summary


def submit(study: StudyConfig, host: str, *, namespace: str | None = "kubeflow", kind: str = "hpo") -> str:
    """Submit the study's pipeline to a Kubeflow cluster (experiment = study name); return the run id.

    Raises:
        ConfigError: when the study's data are local paths, which the cluster's pods cannot read.
    """
    for key, location in study.data.local_locations().items():
        raise ConfigError(
            key,
            f"is the local path {location!r}, which the cluster's pods cannot read",
            "upload the MSD folder to MinIO (e.g. `mc cp --recursive`) and give its s3://bucket/prefix",
        )

    from proxyhpo import kfp_auth

    client = kfp_auth.client(host, namespace=namespace)  # KFP_TOKEN / KFP_COOKIES from the environment
    with tempfile.TemporaryDirectory() as folder:
        run = client.create_run_from_pipeline_package(
            str(compile_study(study, Path(folder) / f"{kind}-{study.name}.yaml", kind)),
            arguments={"study_config": study.model_dump_json(), **study.run_parameters()},
            experiment_name=study.name,
            run_name=f"{study.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}",
        )
    print(f"submitted run {run.run_id} to {host} (experiment {study.name})")
    return run.run_id


def run_study(
    config: str | os.PathLike[str],
    *,
    local: bool = True,
    host: str | None = None,
    namespace: str | None = "kubeflow",
    kind: str = "hpo",
    fresh: bool = False,
) -> Any:
    """``proxyhpo run CONFIG [--pipeline KIND] [--local [--fresh] | --host URL [--namespace NS]]``.

    A local run resumes the study where an earlier start of it stopped, unless ``fresh`` (see :func:`run_local`).
    """
    if kind not in STUDY_PIPELINES:
        raise ConfigError("--pipeline", f"is {kind!r}, not a pipeline proxyhpo has", f"use one of {', '.join(STUDY_PIPELINES)}")
    if fresh and host:
        raise ConfigError("--fresh", "applies to local runs only", "drop --fresh: a run submitted to a cluster always starts a new MLflow parent run")
    study = load_study(config)
    if host:
        return submit(study, host, namespace=namespace, kind=kind)
    return run_local(study, kind, fresh=fresh)

