"""The entry points of the reports built from MLflow alone: one per study kind, picked by the parent run's pipeline tag.

Each study kind's report lives in a module of its own with a ``collect(parent_run_id, tracking_uri)`` that
reads MLflow into a frozen record of numbers and a ``render(record)`` that turns it into Markdown, metrics
and figures (:class:`~proxyhpo.analysis.publish.Rendered`):

- ``proxy-data-study``: :mod:`~proxyhpo.analysis.proxy_data_report` (Table 1, Fig. 2, Fig. 4A/B);
- ``proxy-net-study``: :mod:`~proxyhpo.analysis.proxy_net_report` (Fig. 3);
- ``trust``: :mod:`~proxyhpo.analysis.trust_report` (the verdict and its scatter plot);
- ``automl-comparison``: :mod:`~proxyhpo.analysis.comparison_report` (Table 2, Fig. 4C/D, the lever ladder).

(``hpo`` and ``nas`` reports are built by their pipelines' report steps, :mod:`~proxyhpo.analysis.report` and
:mod:`~proxyhpo.analysis.nas_report`, and read back here as the ``report.md`` they logged.)

:func:`build_study_report` only reads MLflow and writes files; :func:`write_study_report` (the pipelines'
report step) publishes through :func:`~proxyhpo.analysis.publish.publish`, like every other kind;
:func:`render_report` serves ``proxyhpo report``. Study-kind names come from
:data:`proxyhpo.registry.STUDY_PIPELINES`.

Example:
    >>> report = build_study_report(parent_run_id, "out")  # doctest: +SKIP
    >>> report.metrics["spearman_rho"], report.plots["fig4_data_usage"]  # doctest: +SKIP
    (0.83, 'out/fig4_data_usage.png')
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from proxyhpo import paths, tracking
from proxyhpo.analysis import comparison_report, proxy_data_report, proxy_net_report, trust_report
from proxyhpo.analysis._grid import CONFIDENCE, REFERENCE, RESAMPLES, SEED, collect_cells, read_plan
from proxyhpo.analysis._report_io import artifact_text, parent_run
from proxyhpo.analysis.publish import Rendered, publish, save
from proxyhpo.analysis.trust_report import TRUST_PROXY, TrustVerdict, trust_verdict
from proxyhpo.config import StrictModel
from proxyhpo.errors import ProxyHPOError
from proxyhpo.tracking import names

__all__ = [
    "REPORTS",
    "StudyReport",
    "TrustVerdict",
    "collect_cells",
    "read_plan",
    "trust_verdict",
    "report_kinds",
    "build_study_report",
    "write_study_report",
    "latest_study_run",
    "render_report",
    "CONFIDENCE",
    "REFERENCE",
    "RESAMPLES",
    "SEED",
    "TRUST_PROXY",
]

#: The report module of each study kind whose report is built from MLflow alone.
REPORTS: dict[str, ModuleType] = {
    module.KIND: module for module in (proxy_data_report, proxy_net_report, trust_report, comparison_report)
}


class StudyReport(StrictModel):
    """A comparison study's report.

    Attributes:
        kind: the study (``proxy-data-study``, ``proxy-net-study``, ``trust``, ``automl-comparison``).
        markdown: the report as Markdown.
        metrics: the parent run's summary metrics, by MLflow key.
        plots: plot name -> the PNG's path (in the ``out_dir`` it was built in).
        verdict: the trust check's verdict; None for the other studies.
    """

    kind: str
    markdown: str
    metrics: dict[str, float]
    plots: dict[str, str]
    verdict: TrustVerdict | None = None


def report_kinds() -> tuple[str, ...]:
    """The study kinds built from MLflow alone, as :data:`proxyhpo.registry.STUDY_PIPELINES` names and orders them
    (this module's own order while the registry is empty)."""
    from proxyhpo.registry import STUDY_PIPELINES

    registered = tuple(kind for kind in STUDY_PIPELINES.names() if kind in REPORTS)
    return registered or tuple(REPORTS)


def _rendered(parent_run_id: str, tracking_uri: str | None) -> tuple[Rendered, Any]:
    """The report of the parent run's study, picked by its pipeline tag, and the record it renders."""
    _, parent = parent_run(parent_run_id, tracking_uri)
    kind = parent.data.tags.get(names.PIPELINE_TAG)
    kinds = report_kinds()
    if kind not in kinds:
        raise ProxyHPOError(
            f"MLflow run {parent_run_id} is a {kind or 'untagged'} run, not one of the comparison studies this report covers ({', '.join(kinds)})"
        )
    module = REPORTS[kind]
    record = module.collect(parent_run_id, tracking_uri)
    return module.render(record), record


def _report(rendered: Rendered, record: Any, plots: dict[str, Path]) -> StudyReport:
    return StudyReport(
        kind=rendered.kind,
        markdown=rendered.markdown,
        metrics=dict(rendered.metrics),
        plots={name: str(path) for name, path in plots.items()},
        verdict=getattr(record, "verdict", None),
    )


def build_study_report(parent_run_id: str, out_dir: str | os.PathLike[str], tracking_uri: str | None = None) -> StudyReport:
    """Build a comparison study's report from MLflow alone: ``report.md`` and the plots in ``out_dir``.

    Reads the parent run (its ``proxyhpo.pipeline`` tag picks the study's module in :data:`REPORTS`), its
    ``study.json`` and plan (``cells.json``; the automl comparison's ``manifests/<arm>.json``), and its
    child runs; logs nothing (see :func:`write_study_report`). What each report holds is documented by
    its module's record.

    Args:
        parent_run_id: the comparison study's parent run.
        out_dir: where ``report.md`` and the PNGs are written (created if needed).
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Raises:
        ProxyHPOError: when the run does not exist, is not a comparison study, or lacks its plan.
        ConfigError: when its ``study.json``, ``cells.json`` or a manifest does not validate.
    """
    rendered, record = _rendered(parent_run_id, tracking_uri)
    return _report(rendered, record, save(rendered, out_dir))


def write_study_report(
    parent_run_id: str, *, markdown: str | os.PathLike[str], html: str | os.PathLike[str], tracking_uri: str | None = None
) -> StudyReport:
    """The comparison pipelines' report step: build the report and :func:`~proxyhpo.analysis.publish.publish` it.

    The metrics go to the parent run, ``report.md``, the plots and ``summary.json`` as artifacts; then the
    parent is marked FINISHED. The Markdown and a self-contained HTML page (PNGs inlined, the Markdown in
    ``<pre>``) are written atomically to ``markdown`` and ``html``, for the Kubeflow UI.

    Returns:
        The report; its ``plots`` name files of a temporary folder that is gone by then (the PNGs are on
        the parent run as artifacts).
    """
    uri = tracking_uri or paths.tracking_uri()
    rendered, record = _rendered(parent_run_id, uri)
    plots = publish(rendered, parent_run_id, markdown=markdown, html=html, tracking_uri=uri)
    return _report(rendered, record, plots)


def latest_study_run(experiment: str, tracking_uri: str | None = None) -> str:
    """The id of the newest parent run (tag ``proxyhpo.role=study``, any pipeline) of ``experiment``.

    Raises:
        ProxyHPOError: when the experiment does not exist or holds no study run.
    """
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        raise ProxyHPOError(f"no MLflow experiment {experiment!r} in {uri}")
    runs = mlflow_client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{names.ROLE_TAG}` = '{names.ROLE_STUDY}'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise ProxyHPOError(f"MLflow experiment {experiment!r} in {uri} holds no study run (tag {names.ROLE_TAG}={names.ROLE_STUDY})")
    return runs[0].info.run_id


def render_report(experiment_or_run: str, tracking_uri: str | None = None) -> str:
    """The Markdown report of an experiment's newest study run, or of a given parent run, from MLflow alone.

    For ``proxyhpo report EXPERIMENT``: an experiment name picks its newest study run; anything else is
    taken as a run id. The report of a kind in :data:`REPORTS` is built afresh (in a temporary folder,
    nothing logged); any other pipeline's (``hpo``, ``nas``) is the ``report.md`` its report step logged.

    Raises:
        InputError: when there is no store (the embedded one is never created here).
        ProxyHPOError: when it names neither an experiment nor a run (the store's experiments are named, the
            nearest first), or the run has no report yet.
    """
    from mlflow.exceptions import MlflowException

    from proxyhpo.tracking.connection import study_experiments, unknown_experiment

    uri = tracking_uri or paths.existing_tracking_uri()  # a report never creates a store
    mlflow_client = tracking.client(uri)
    if mlflow_client.get_experiment_by_name(experiment_or_run) is not None:
        run_id = latest_study_run(experiment_or_run, uri)
    else:
        try:
            run_id = mlflow_client.get_run(experiment_or_run).info.run_id
        except MlflowException:
            raise ProxyHPOError(f"{experiment_or_run!r} is no run id, and " + unknown_experiment(experiment_or_run, study_experiments(mlflow_client), uri)) from None
    kind = mlflow_client.get_run(run_id).data.tags.get(names.PIPELINE_TAG)
    if kind in report_kinds():
        with tempfile.TemporaryDirectory(prefix="study-report-") as folder:
            return build_study_report(run_id, folder, uri).markdown
    text = artifact_text(mlflow_client, run_id, names.REPORT_ARTIFACT)
    if text is None:
        raise ProxyHPOError(f"MLflow run {run_id} ({kind or 'untagged'}) has no report.md yet: its pipeline has not reached its report step")
    return text
