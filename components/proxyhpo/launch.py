"""Run a study's pipeline: locally with ``kfp.local.SubprocessRunner``, or submitted to a Kubeflow cluster.

Both run the YAML the one compile path writes (:mod:`proxyhpo.compile`), never the Python it came from; the
kinds are :data:`proxyhpo.registry.STUDY_PIPELINES`. Uploading the shipped pipelines is :mod:`proxyhpo.upload`'s.

Locally (the embedded default) the pipeline root ``artifacts/``, the MLflow store ``mlflow.db`` and the
task logs ``logs/`` land in the home folder (:func:`proxyhpo.paths.proxyhpo_home`); the data where the
config's ``data.dataset`` says. The tasks' output (kfp.local's executors, their tracebacks) goes to the
task log only; the terminal shows the study's progress read from MLflow (:class:`proxyhpo.progress.StudyDisplay`:
live on a terminal, a line per event elsewhere) and its result table at the end. Ctrl-C or SIGTERM stops
it cleanly (:class:`_Stop`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxyhpo import paths, tracking
from proxyhpo.tracking import names
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
    # line by line into the file: kfp.local prints its tasks' output through this process's sys.stdout, which
    # Python block-buffers when it is not a terminal; a SIGKILLed launcher lost its last lines, and a user
    # following the log with `tail -f` saw them late
    line_buffered = sys.stdout.line_buffering if hasattr(sys.stdout, "reconfigure") else None  # None: a caller's capture
    if line_buffered is not None:
        sys.stdout.reconfigure(line_buffering=True)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            if line_buffered is not None:
                sys.stdout.reconfigure(line_buffering=line_buffered)
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            terminal.close()


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
    if summary.get("total_gpu_hours"):  # GPU-hours only where a GPU ran
        table.add_row("GPU-hours", f"{summary['total_gpu_hours']:.4f}")
        if summary.get("total_process_hours"):
            table.add_row("CPU-hours (trials without a GPU)", f"{summary['total_process_hours']:.4f}")
    else:
        table.add_row("CPU-hours (no GPU ran)", f"{summary['total_process_hours']:.4f}")
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


def _end_tasks(grace_s: float = 20.0, *, settle_s: float = 0.0) -> None:
    """Stop this launcher's task processes: after ``settle_s`` for them to end by themselves (Ctrl-C reached them
    too), SIGTERM (they close their trials' runs), then SIGKILL after ``grace_s``."""
    import psutil

    tasks = psutil.Process().children(recursive=True)
    _, tasks = psutil.wait_procs(tasks, timeout=settle_s) if settle_s else ([], tasks)
    for task in tasks:
        with contextlib.suppress(psutil.Error):
            task.terminate()
    _, alive = psutil.wait_procs(tasks, timeout=grace_s)
    for task in alive:
        with contextlib.suppress(psutil.Error):
            task.kill()


def _wait_while(stopping: threading.Event) -> None:
    """Once a stop began, the pipeline's end (a task failed by the signal) is not the outcome: wait for the stop to exit."""
    if stopping.is_set():
        threading.Event().wait()  # interruptible: a second Ctrl-C still exits at once


class _Stop:
    """The launcher's stop on Ctrl-C or SIGTERM (:func:`proxyhpo.signals.stop_on_signals` calls it on a thread).

    It ends the display, the task processes (without a retry: the process exits before the runner's back-off
    ends) and the study's open MLflow runs, with the reason, then exits 130 (SIGINT) or 143 (SIGTERM).
    """

    def __init__(self, study: StudyConfig, run_id: str, terminal: Any) -> None:
        self.study, self.run_id, self.terminal = study, run_id, terminal
        self.display: Any = None

    def say(self, line: str) -> None:
        self.terminal.write(f"proxyhpo run: {line}\n")  # not print(): kfp's runner swaps builtins.print while a task runs
        self.terminal.flush()

    def __call__(self, signum: int) -> None:
        from proxyhpo.signals import exit_code_of, reason_of_signal

        reason = reason_of_signal(signum)
        try:  # whatever happens here, the process ends: the main thread waits for it (_wait_while)
            if self.display is not None:
                self.display.stopped.set()
                self.display.join(timeout=5)
            self.say(f"{reason}: stopping study {self.study.name}'s tasks and closing its MLflow runs (press Ctrl-C again to exit at once)")
            _end_tasks(settle_s=10.0 if signum == signal.SIGINT else 0.0)
            with contextlib.suppress(Exception):  # the runs are closed by the next start of the study when the store does not answer
                tracking.fail_open_runs(self.study.name, parent_run_id=self.run_id, reason=reason)
            self.say(f"{reason}: study {self.study.name} stopped and its MLflow runs were closed; run the same command again to resume it (--fresh to start over)")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_code_of(signum))


def run_local(study: StudyConfig, kind: str = "hpo", *, fresh: bool = False, command: str | None = None) -> dict[str, Any]:
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

    ``command``, the shell command that resumes the study, is tagged on its run for ``proxyhpo status``.
    """
    import mlflow  # noqa: F401 - mlflow sets its loggers' level when imported: quiet them after that, not before
    from kfp import components, local
    from rich.console import Console

    from proxyhpo import resume
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.progress import StudyDisplay
    from proxyhpo.signals import LAUNCHER_ENV, launcher_identity, stop_on_signals

    study = study.model_copy(update={"data": study.data.with_absolute_paths()})
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store-migration notices are not the user's business
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # nor is its bar for reading back a small summary
    os.environ["PROXYHPO_HOME"] = str(paths.proxyhpo_home())  # absolute, shared with every task process
    os.environ.setdefault("MLFLOW_TRACKING_URI", paths.default_tracking_uri())
    console = Console(stderr=True)
    prepare_study_data(study, progress=True)  # said once it is done: bad data ends in one line on stderr, naming the file
    # where the data are, as the config resolves them (a generated data set is written where data.dataset says)
    where = f"{study.data.dataset}" + (f", external set {study.data.external}" if study.data.external else "")
    console.print(f"[bold]proxyhpo[/bold] study {study.name}: data ready ({where}); MLflow store, artifacts and task logs under {paths.proxyhpo_home()}")
    tracking.ensure_experiment(study.name)  # created once, before parallel writers race to migrate the store

    run_id, resumed = resume.open_parent_run(_as_run(study), kind, fresh=fresh)
    if command:
        tracking.client().set_tag(run_id, names.COMMAND_TAG, command)
    if resumed:
        console.print(f"resuming study {study.name} (MLflow run {run_id}): trials it finished are not trained again; --fresh starts over")
    log_path = paths.proxyhpo_home() / "logs" / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    # what runs here is the compiled YAML a cluster is given, not the Python definition it came from
    compiled = compile_study(study, paths.proxyhpo_home() / "pipelines" / f"{kind}-{study.name}.yaml", kind)
    pipeline = components.load_component_from_file(str(compiled))
    os.environ[resume.PARENT_ENV] = run_id  # the pipeline's first task logs under this run
    os.environ[LAUNCHER_ENV] = launcher_identity()  # training tasks end their trials when this process is gone
    try:
        with _output_to(log_path) as terminal:
            stop = _Stop(study, run_id, terminal)
            with stop_on_signals(stop, say=stop.say) as stopping:
                display = stop.display = StudyDisplay(study, run_id, terminal, kind)
                display.start()
                try:
                    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(paths.artifacts_dir()), raise_on_error=True)
                    pipeline(study_config=study.model_dump_json(), **study.run_parameters())
                except Exception as exc:
                    _wait_while(stopping)
                    display.stopped.set()
                    display.join()
                    tracking.fail_open_runs(study.name, parent_run_id=run_id)
                    raise ProxyHPOError(f"the pipeline failed ({exc}); the task logs are in {log_path}") from exc
                _wait_while(stopping)
                display.succeeded = True
                display.stopped.set()
                display.join()
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


def submit(study: StudyConfig, host: str, *, namespace: str | None = "kubeflow", kind: str = "hpo", resume_run: str = "") -> str:
    """Submit the study's pipeline to a Kubeflow cluster (experiment = study name); return the run id.

    ``resume_run``: the MLflow parent run of a stopped cluster run it continues (:mod:`proxyhpo.cluster_resume`).

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
            arguments={"study_config": study.model_dump_json(), **study.run_parameters(), **({"resume_run": resume_run} if resume_run else {})},
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
    resume: str | None = None,
) -> Any:
    """``proxyhpo run CONFIG [--pipeline KIND] [--local [--fresh] | --host URL [--namespace NS] [--resume RUN]]``.

    A local run resumes the study where an earlier start of it stopped, unless ``fresh`` (see :func:`run_local`);
    a cluster run continues a stopped one when given ``resume`` (:func:`proxyhpo.cluster_resume.resolve_parent`).
    """
    if kind not in STUDY_PIPELINES:
        raise ConfigError("--pipeline", f"is {kind!r}, not a pipeline proxyhpo has", f"use one of {', '.join(STUDY_PIPELINES)}")
    if fresh and host:
        raise ConfigError("--fresh", "applies to local runs only", "drop --fresh: a run submitted to a cluster always starts a new MLflow parent run")
    if resume and not host:
        raise ConfigError("--resume", "applies to cluster runs (--host)", "drop --resume: a local run resumes by itself when the same command runs again")
    study = load_study(config)
    if host:
        resume_run = ""
        if resume:
            from proxyhpo.cluster_resume import resolve_parent

            resume_run, kept = resolve_parent(study, kind, resume)
            print(f"resuming study {study.name} under MLflow run {resume_run}: {kept} finished trials kept, not trained again")
        return submit(study, host, namespace=namespace, kind=kind, resume_run=resume_run)
    # the command that resumes it, from any shell: the config's folder and path as given, and the same home
    home = f"PROXYHPO_HOME={shlex.quote(str(paths.proxyhpo_home()))} " if os.environ.get("PROXYHPO_HOME", "").strip() else ""
    pipeline = f" --pipeline {kind}" if kind != "hpo" else ""
    command = f"cd {shlex.quote(os.getcwd())} && {home}proxyhpo run {shlex.quote(os.fspath(config))}{pipeline}"
    return run_local(study, kind, fresh=fresh, command=command)

