"""Study analysis: summaries, plots and reports.

The comparison studies' reports (:mod:`proxyhpo.analysis.study_report` for the grid studies and the reports'
entry points, :mod:`proxyhpo.analysis.comparison_report` for the automl comparison) are imported on first use
of their names, so importing this package (or the HPO report) does not load scipy and matplotlib.
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
    "write_study_report",
)
_COMPARISON_REPORT = ("ArmSearch", "collect_searches", "read_manifests")
#: Lazily imported name -> the module that defines it.
_LAZY = {name: "proxyhpo.analysis.study_report" for name in _STUDY_REPORT} | {name: "proxyhpo.analysis.comparison_report" for name in _COMPARISON_REPORT}

__all__ = ["StudySummary", "TrialRow", "build_report", "collect_trials", "summarize", "write_report", *_STUDY_REPORT, *_COMPARISON_REPORT]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'proxyhpo.analysis' has no attribute {name!r}")
