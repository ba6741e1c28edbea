"""Study analysis: summaries, plots and reports.

The comparison studies' report (:mod:`proxyhpo.analysis.study_report`) is imported on first use of
its names, so importing this package (or the HPO report) does not load scipy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

from proxyhpo.analysis.report import StudySummary, TrialRow, build_report, collect_trials, summarize, write_report

_STUDY_REPORT = (
    "ArmSearch",
    "StudyReport",
    "TrustVerdict",
    "build_study_report",
    "collect_cells",
    "collect_searches",
    "latest_study_run",
    "read_manifests",
    "read_plan",
    "render_report",
    "write_study_report",
)

__all__ = ["StudySummary", "TrialRow", "build_report", "collect_trials", "summarize", "write_report", *_STUDY_REPORT]


def __getattr__(name: str) -> Any:
    if name in _STUDY_REPORT:
        return getattr(importlib.import_module("proxyhpo.analysis.study_report"), name)
    raise AttributeError(f"module 'proxyhpo.analysis' has no attribute {name!r}")
