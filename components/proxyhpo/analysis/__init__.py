"""Study analysis: summaries, plots and reports."""

from proxyhpo.analysis.report import StudySummary, TrialRow, build_report, collect_trials, summarize, write_report

__all__ = ["StudySummary", "TrialRow", "build_report", "collect_trials", "summarize", "write_report"]
