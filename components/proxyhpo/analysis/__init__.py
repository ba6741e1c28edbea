"""Study analysis: statistics, plots and reports, one report module per study kind.

Each kind's module computes apart from render: ``collect`` turns MLflow runs into a frozen record of
numbers, ``render`` turns the record into Markdown, metrics and matplotlib figures, and
:func:`proxyhpo.analysis.publish.publish` is the one path that logs any of them on the study's parent run
and writes the Kubeflow UI's Markdown and HTML page.

============================  ============================================  =====================
study kind                    module                                        record
============================  ============================================  =====================
``hpo``                       :mod:`~proxyhpo.analysis.report`              ``HpoRecord``
``proxy-data-study``          :mod:`~proxyhpo.analysis.proxy_data_report`   ``ProxyDataRecord``
``proxy-net-study``           :mod:`~proxyhpo.analysis.proxy_net_report`    ``ProxyNetRecord``
``trust``                     :mod:`~proxyhpo.analysis.trust_report`        ``TrustRecord``
``automl-comparison``         :mod:`~proxyhpo.analysis.comparison_report`   ``ComparisonRecord``
``nas``                       :mod:`~proxyhpo.analysis.nas_report`          ``NasRecord``
============================  ============================================  =====================

Shared pieces: :mod:`~proxyhpo.analysis.costs` (the one cost model), :mod:`~proxyhpo.analysis.statistics`,
:mod:`~proxyhpo.analysis.study_plots`, :mod:`~proxyhpo.analysis.page` (the HTML page),
:mod:`~proxyhpo.analysis.publish`; :mod:`~proxyhpo.analysis.study_report` holds the entry points of the
reports built from MLflow alone. Those are imported on first use of their names, so importing this package
(or the HPO report) does not load scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

from proxyhpo.analysis.report import StudySummary, TrialRow, build_report, collect_trials, summarize, write_report

_STUDY_REPORT = (
    "StudyReport",
    "TrustVerdict",
    "build_study_report",
    "collect_cells",
    "latest_study_run",
    "read_plan",
    "render_report",
    "report_kinds",
    "write_study_report",
)
_COMPARISON_REPORT = ("ArmSearch", "ComparisonRecord", "collect_searches", "read_manifests")
#: Lazily imported name -> the module that defines it.
_LAZY = {name: "proxyhpo.analysis.study_report" for name in _STUDY_REPORT} | {name: "proxyhpo.analysis.comparison_report" for name in _COMPARISON_REPORT}

__all__ = ["StudySummary", "TrialRow", "build_report", "collect_trials", "summarize", "write_report", *_STUDY_REPORT, *_COMPARISON_REPORT]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'proxyhpo.analysis' has no attribute {name!r}")
