"""One publish path for every study kind's report: files, the parent run's metrics and artifacts, the KFP outputs.

Each report module's ``render(record)`` returns a :class:`Rendered` (Markdown, metrics, matplotlib figures,
``summary.json`` and any other JSON documents); :func:`save` writes its files into a folder and
:func:`publish` is the pipelines' report step: it writes the files, logs the metrics and the files on the
study's parent run, closes the run, and writes the Markdown and a self-contained HTML page
(:func:`~proxyhpo.analysis.page.html_page`) where the Kubeflow UI reads them.

Example:
    >>> rendered = proxy_data_report.render(proxy_data_report.collect(parent_run_id))  # doctest: +SKIP
    >>> publish(rendered, parent_run_id, markdown="report.md", html="report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.analysis.page import html_page
from proxyhpo.tracking import names

__all__ = ["Rendered", "save", "publish"]

#: Resolution of every report's PNGs.
DPI = 110
_BATCH = 1000  # MLflow's limit of metrics per log_batch


@dataclass(frozen=True)
class Rendered:
    """A report as its ``render`` makes it, before anything is written.

    Attributes:
        kind: the study kind (``hpo``, ``proxy-data-study``, ...).
        title: the HTML page's title.
        markdown: the report as Markdown.
        metrics: the parent run's summary metrics, by MLflow key.
        figures: plot name -> its matplotlib Figure, written as ``<name>.png``, in the report's order.
        summary: ``summary.json``.
        documents: further JSON artifacts, by file name (``best_hyperparameters.json``, ...).
    """

    kind: str
    title: str
    markdown: str
    metrics: Mapping[str, float]
    figures: Mapping[str, Any]
    summary: Mapping[str, Any]
    documents: Mapping[str, Any] = field(default_factory=dict)


def _png(figure: Any, out: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)  # the Agg canvas whatever backend pyplot was given
    with storage.atomic_output(out) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)  # the temporary name has no .png suffix
    return out


def save(rendered: Rendered, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.md`` and every figure as ``<name>.png`` into ``out_dir`` (created if needed), atomically.

    Returns:
        Plot name -> the PNG's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage.atomic_write_text(out / names.REPORT_ARTIFACT, rendered.markdown)
    return {name: _png(figure, out / f"{name}.png") for name, figure in rendered.figures.items()}


def publish(
    rendered: Rendered,
    parent_run_id: str,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    markdown: str | os.PathLike[str] | None = None,
    html: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
    before_finish: Callable[[Any], None] | None = None,
) -> dict[str, Path]:
    """The report step of every pipeline: log the report on the study's parent run, close the run, write the KFP outputs.

    Writes ``report.md``, the PNGs, ``summary.json`` and the documents into ``out_dir`` (a temporary folder
    when None); logs the metrics on the parent run (in batches of MLflow's 1000) and the files as its
    artifacts, calls ``before_finish(client)`` (more the report's kind logs itself), marks the run FINISHED,
    then writes the Markdown and the self-contained HTML page to ``markdown`` and ``html`` when given.

    Returns:
        Plot name -> the PNG's path (under ``out_dir``; gone after the call when ``out_dir`` is None).
    """
    from mlflow.entities import Metric

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    with tempfile.TemporaryDirectory(prefix=f"{rendered.kind}-report-") as folder:
        out = Path(out_dir) if out_dir is not None else Path(folder)
        plots = save(rendered, out)
        files = [out / names.REPORT_ARTIFACT, *plots.values(), storage.atomic_write_json(out / names.SUMMARY_ARTIFACT, dict(rendered.summary))]
        files += [storage.atomic_write_json(out / name, document) for name, document in rendered.documents.items()]
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, 0) for key, value in rendered.metrics.items()]
        for start in range(0, len(batch), _BATCH):
            mlflow_client.log_batch(parent_run_id, metrics=batch[start : start + _BATCH])
        for path in files:
            mlflow_client.log_artifact(parent_run_id, str(path))
        if before_finish is not None:
            before_finish(mlflow_client)
        tracking.finish_run(parent_run_id, tracking_uri=uri)
        page = html_page(rendered.title, rendered.markdown, {name: path.read_bytes() for name, path in plots.items()}) if html is not None else None
    if markdown is not None:
        storage.atomic_write_text(markdown, rendered.markdown)
    if html is not None and page is not None:
        storage.atomic_write_text(html, page)
    return plots
