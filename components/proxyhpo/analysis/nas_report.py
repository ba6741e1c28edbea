"""The NAS pipeline's report: cross-validated Dice of the searched networks, what the search cost, and how the
controller converged (the paper's Fig. 3, right: entropy and reward per episode).

The cross-validated Dice is nested (:data:`~proxyhpo.config.nas.NAS_PROTOCOL`): each fold's final network is
measured on the fold's test part, which no search read; the report names the three sets of every fold
(search-train, search-validation that rewarded the controller, untouched test) with their sizes, and the
study's held-out cases (the internal test set) beside them.

With ``nas.search_data: both`` the search on the proxy data set and the search on all data stand side
by side: the device-hours the proxy saves and the Dice it costs. :func:`collect` turns the folds' results
(the :class:`~proxyhpo.config.nas.NasFoldResult` files the pipeline's export steps write) into a frozen
:class:`NasRecord`; :func:`render` turns it into Markdown, metrics and the controller's figure.

Example:
    >>> record = collect(study, plan, ["fold0.json", "fold1.json"])  # doctest: +SKIP
    >>> record.metrics["proxy_speedup"]  # doctest: +SKIP
    3.9
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from proxyhpo.analysis.publish import Rendered, publish
from proxyhpo.analysis.statistics import mean_std
from proxyhpo.analysis.study_plots import figure
from proxyhpo.config import StrictModel, StudyConfig
from proxyhpo.config.nas import NAS_PROTOCOL, NasFoldResult, NasPlan
from proxyhpo.registry import STUDY_PIPELINES
from proxyhpo.tracking import names

__all__ = ["KIND", "NasRecord", "collect", "render", "nas_sets", "nas_summary", "plot_controller", "render_nas_markdown", "write_nas_report"]

#: The study kind this module reports on, as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("nas")
TITLE = "NAS study"
#: The folds' results as one JSON artifact of the parent run.
FOLD_RESULTS_ARTIFACT = "fold_results.json"

ARM_LABELS = {"all": "search on all data (the paper)", "proxy": "search on the proxy data set"}


def _hours(result: NasFoldResult) -> float:
    return result.search_gpu_hours or result.search_process_hours


def nas_sets(plan: NasPlan) -> dict[str, Any]:
    """The sets the study's numbers come from, named and counted: per fold, search-train, search-validation
    (the controller's reward) and the untouched test part; the study's held-out cases (internal test).

    Returns:
        ``{"protocol": ..., "folds": [{"fold", "search_train", "search_validation", "test", "proxy"}], "internal_test": n}``.
    """
    return {
        "protocol": NAS_PROTOCOL,
        "folds": [
            {
                "fold": fold.fold, "search_train": len(fold.search_train_ids), "search_validation": len(fold.search_validation_ids),
                "test": len(fold.test_ids), "proxy": len(fold.proxy_ids),
            }
            for fold in plan.folds
        ],
        "internal_test": len(plan.internal_test_ids),
    }


def _class_dice(per_fold: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Each class's Dice over the folds that measured it: ``{class: {"mean", "std"}}`` (sample std over folds); empty for a binary task."""
    found = {}
    for name in dict.fromkeys(name for per_class in per_fold for name in per_class):
        mean, std = mean_std(per_class.get(name) for per_class in per_fold)
        found[name] = {"mean": mean, "std": std}
    return found


def nas_summary(results: Sequence[NasFoldResult]) -> dict[str, Any]:
    """Per arm: cross-validated Dice on the folds' test parts (mean, sd over folds), internal test Dice, the
    optimistic Dice on the cases that rewarded the controller, search device-hours; plus the proxy's saving.
    A multi-class task's cross-validated and internal test Dice also per class (``class_cv_dice``,
    ``class_internal_test_dice``: ``{class: {"mean", "std"}}`` over folds).

    Returns:
        ``{"arms": {arm: {...}}, "metrics": {name: value}}``; the metrics are what the parent run logs
        (``<arm>_cv_dice_mean``, ``<arm>_search_hours``, ``total_gpu_hours``, ``proxy_speedup``, ...; per class
        ``<arm>_cv_dice_mean_class_<name>`` and ``<arm>_internal_test_dice_mean_class_<name>``, see
        :func:`~proxyhpo.tracking.names.class_dice`).
    """
    arms: dict[str, dict[str, Any]] = {}
    metrics: dict[str, float] = {}
    for arm in dict.fromkeys(result.arm for result in results):
        mine = sorted((r for r in results if r.arm == arm), key=lambda r: r.fold)
        cv_mean, cv_std = mean_std(r.test_dice for r in mine)
        internal_mean, internal_std = mean_std(r.internal_test_dice for r in mine)
        rewarded_mean, _ = mean_std(r.search_validation_dice for r in mine)
        last = [r.episodes[-1] for r in mine if r.episodes]
        same = mean_std(e.same_as_most_likely for e in last)[0] if last else None
        arms[arm] = {
            "folds": [r.fold for r in mine],
            "test_dice": [r.test_dice for r in mine],
            "cv_dice_mean": cv_mean,
            "cv_dice_std": cv_std,
            "internal_test_dice_mean": internal_mean,
            "internal_test_dice_std": internal_std,
            "search_validation_dice_mean": rewarded_mean,
            "search_hours": sum(_hours(r) for r in mine),
            "train_cases": [r.train_cases for r in mine],
            "search_validation_cases": [r.search_validation_cases for r in mine],
            "test_cases": [r.test_cases for r in mine],
            "architectures": [r.architecture.name for r in mine],
            "final_same_as_most_likely": same,
            "class_cv_dice": _class_dice([r.test_class_dice for r in mine if r.test_dice is not None]),
            "class_internal_test_dice": _class_dice([r.internal_test_class_dice for r in mine if r.internal_test_dice is not None]),
        }
        for key in ("cv_dice_mean", "cv_dice_std", "internal_test_dice_mean", "search_validation_dice_mean", "search_hours", "final_same_as_most_likely"):
            if arms[arm][key] is not None:
                metrics[f"{arm}_{key}"] = float(arms[arm][key])
        for key, per_class in (("cv_dice_mean", arms[arm]["class_cv_dice"]), ("internal_test_dice_mean", arms[arm]["class_internal_test_dice"])):
            metrics |= {names.class_dice(f"{arm}_{key}", name): float(dice["mean"]) for name, dice in per_class.items() if dice["mean"] is not None}
    metrics[names.TOTAL_GPU_HOURS] = sum(r.search_gpu_hours for r in results)
    metrics[names.TOTAL_PROCESS_HOURS] = sum(r.search_process_hours for r in results)
    if "all" in arms and "proxy" in arms and arms["proxy"]["search_hours"] > 0:
        metrics[names.PROXY_SPEEDUP] = arms["all"]["search_hours"] / arms["proxy"]["search_hours"]
        if arms["all"]["cv_dice_mean"] is not None and arms["proxy"]["cv_dice_mean"] is not None:
            metrics[names.PROXY_CV_DICE_CHANGE] = arms["proxy"]["cv_dice_mean"] - arms["all"]["cv_dice_mean"]
    # the search's best validation Dice: on the cases that rewarded the controller, as an HPO study's is
    best = [value for arm in arms.values() if (value := arm["search_validation_dice_mean"]) is not None]
    if best:
        metrics[names.BEST_VAL_DICE] = max(best)
    return {"arms": arms, "metrics": metrics}


def plot_controller(results: Sequence[NasFoldResult]) -> Any:
    """Entropy and mean reward of the controller per episode, one line per fold and arm (the paper's Fig. 3, right),
    and how often it proposed its most likely network.

    Returns:
        The matplotlib Figure: three panels (entropy, reward, share of children equal to the most likely network).
    """
    drawn = figure(13, 3.8)
    entropy_axis, reward_axis, same_axis = drawn.subplots(1, 3)
    styles = {"all": "-", "proxy": "--"}
    for result in sorted(results, key=lambda r: (r.arm, r.fold)):
        episodes = [e.episode for e in result.episodes]
        label = f"{result.arm}, fold {result.fold}"
        entropy_axis.plot(episodes, [e.entropy for e in result.episodes], styles.get(result.arm, "-"), label=label)
        reward_axis.plot(episodes, [e.mean_reward if e.mean_reward is not None else float("nan") for e in result.episodes], styles.get(result.arm, "-"), label=label)
        same_axis.plot(episodes, [e.same_as_most_likely for e in result.episodes], styles.get(result.arm, "-"), label=label)
    entropy_axis.set(title="controller entropy", xlabel="episode", ylabel="entropy (nats)")
    reward_axis.set(title="reward (mean search-validation Dice of the children)", xlabel="episode", ylabel="Dice")
    same_axis.set(title="children equal to the most likely network", xlabel="episode", ylabel="fraction", ylim=(-0.02, 1.02))
    reward_axis.legend(fontsize="small")
    return drawn


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_nas_markdown(
    study: StudyConfig, plan: NasPlan, summary: Mapping[str, Any], results: Sequence[NasFoldResult], *, n_trials: int = 0, n_failed: int = 0, n_stopped: int = 0
) -> str:
    """The report's Markdown: the protocol and its sets, the table per arm, the proxy's saving, the architectures found."""
    nas = study.nas
    space = plan.space
    sets = nas_sets(plan)
    lines = [
        f"# NAS study `{study.name}`",
        "",
        f"Resource-optimised NAS (RONASMIS): {nas.episodes} episodes of {nas.children_per_episode} children, "
        f"{nas.child_epochs} epochs each on shared weights, {len(plan.folds)}-fold nested cross-validation; "
        f"the final network is the controller's most likely one, evaluated without retraining (one-shot inference).",
        "",
        f"Protocol: {NAS_PROTOCOL}. The paper instead rewards the controller on the fold it reports; this study does not.",
        "",
        "## Sets",
        "",
        "| fold | search-train (children train) | search-validation (reward) | untouched test (cross-validated Dice) |",
        "|---|---|---|---|",
    ]
    for fold in sets["folds"]:
        proxy = f" (proxy data set: {fold['proxy']})" if fold["proxy"] else ""
        lines.append(f"| {fold['fold']} | {fold['search_train']}{proxy} | {fold['search_validation']} | {fold['test']} |")
    lines += [
        "",
        f"Internal test: the study's {sets['internal_test']} held-out cases, read by no search, test every fold's final network. "
        "The search space's patch candidates come from the image shapes (no labels) of all search cases.",
        "",
        f"Children trained: {n_trials} ({n_failed} failed: out of memory or diverged, rewarded 0; {n_stopped} stopped early: the NAS search stops no child).",
        "",
        f"Search space: {len(space.decisions)} decisions; patch candidates from the median shape {tuple(space.median_shape)} (D, H, W).",
        "",
        "| search | cross-validated Dice (untouched test parts) | internal test Dice | search-validation Dice (rewarded, optimistic) "
        "| search device-hours | cases the children train on, per fold |",
        "|---|---|---|---|---|---|",
    ]
    for arm, values in summary["arms"].items():
        cv = f"{_number(values['cv_dice_mean'])} ± {_number(values['cv_dice_std'])}"
        internal = _number(values["internal_test_dice_mean"])
        rewarded = _number(values["search_validation_dice_mean"])
        cases = ", ".join(str(n) for n in values["train_cases"])
        lines.append(f"| {ARM_LABELS.get(arm, arm)} | {cv} | {internal} | {rewarded} | {values['search_hours']:.4f} | {cases} |")
        # a multi-class task: each class's Dice under the arm's (which averages them)
        by_class, internal_by_class = values.get("class_cv_dice", {}), values.get("class_internal_test_dice", {})
        for name in dict.fromkeys([*by_class, *internal_by_class]):
            cv_class, internal_class = by_class.get(name, {}), internal_by_class.get(name, {})
            lines.append(
                f"| &nbsp;&nbsp;class {name} | {_number(cv_class.get('mean'))} ± {_number(cv_class.get('std'))} | {_number(internal_class.get('mean'))} | | | |"
            )
    metrics = summary["metrics"]
    if "proxy_speedup" in metrics:
        change = metrics.get("proxy_cv_dice_change")
        lines += [
            "",
            f"The search on the proxy data set ({plan.proxy_method}, {study.selection.budget} cases per fold) took "
            f"{metrics['proxy_speedup']:.2f}× fewer device-hours than the search on all data"
            + (f", at a cross-validated Dice change of {change:+.4f}." if change is not None else "."),
        ]
    lines += [
        "", "## Final networks", "",
        "| search | fold | test-part Dice | search-validation Dice | internal test Dice | architecture | same as most likely (last episode) |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in sorted(results, key=lambda r: (r.arm, r.fold)):
        same = result.episodes[-1].same_as_most_likely if result.episodes else None
        lines.append(
            f"| {result.arm} | {result.fold} | {_number(result.test_dice)} | {_number(result.search_validation_dice)} | "
            f"{_number(result.internal_test_dice)} | `{result.architecture.name}` | {_number(same, 2)} |"
        )
    lines += ["", "![controller](controller.png)", ""]
    return "\n".join(lines)


class NasRecord(StrictModel):
    """A NAS study's numbers.

    Attributes:
        study, plan: the study config and the NAS plan (search space, folds, proxy method).
        results: every fold's result, by arm then fold.
        arms: arm -> its folds' Dice, search hours and architectures (:func:`nas_summary`'s ``arms``).
        metrics: the parent run's metrics (``<arm>_cv_dice_mean``, ``proxy_speedup``, ``total_gpu_hours``, ...).
        sets: the protocol and every fold's sets, counted (:func:`nas_sets`).
        n_trials, n_failed, n_stopped: the children the controllers trained (episodes × children per
            episode); those that failed (out of memory, diverged: rewarded 0, or without a reward); and those
            stopped early, counted apart (none: the NAS search has no early stopping).
    """

    study: StudyConfig
    plan: NasPlan
    results: tuple[NasFoldResult, ...]
    arms: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    sets: dict[str, Any]
    n_trials: int
    n_failed: int
    n_stopped: int = 0

    def summary(self) -> dict[str, Any]:
        """``summary.json``: the arms, the metrics, the counts and the totals."""
        return {
            "arms": self.arms,
            "metrics": dict(self.metrics),
            "sets": self.sets,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "n_stopped": self.n_stopped,
            "total_gpu_hours": self.metrics[names.TOTAL_GPU_HOURS],
            "total_process_hours": self.metrics[names.TOTAL_PROCESS_HOURS],
        }


def collect(study: StudyConfig, plan: NasPlan, result_files: Sequence[str | os.PathLike[str]]) -> NasRecord:
    """The NAS study's numbers, from the folds' result files (each a :class:`~proxyhpo.config.nas.NasFoldResult`)."""
    results = [NasFoldResult.read(path) for path in result_files]
    summary = nas_summary(results)
    return NasRecord(
        study=study,
        plan=plan,
        results=tuple(results),
        arms=summary["arms"],
        metrics=summary["metrics"],
        sets=nas_sets(plan),
        n_trials=sum(len(r.episodes) * study.nas.children_per_episode for r in results),
        # a failed child is rewarded 0 by the search (so the controller learns to avoid it) and counted by it;
        # one without a reward (None) is counted too
        n_failed=sum(r.failed_children + sum(reward is None for e in r.episodes for reward in e.rewards) for r in results),
        n_stopped=0,
    )


def render(record: NasRecord) -> Rendered:
    """The report of a NAS study: Markdown, the parent run's metrics, the controller's figure and the folds' results."""
    summary = record.summary()
    return Rendered(
        kind=KIND,
        title=f"{TITLE} {record.study.name}",
        markdown=render_nas_markdown(
            record.study, record.plan, summary, record.results, n_trials=record.n_trials, n_failed=record.n_failed, n_stopped=record.n_stopped
        ),
        metrics=record.metrics,
        figures={"controller": plot_controller(record.results)},
        summary=summary,
        documents={FOLD_RESULTS_ARTIFACT: [r.model_dump(mode="json") for r in record.results]},
    )


def write_nas_report(
    study: StudyConfig,
    plan: NasPlan,
    result_files: Sequence[str | os.PathLike[str]],
    parent_run_id: str,
    *,
    markdown: str | os.PathLike[str],
    html: str | os.PathLike[str],
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """The NAS pipeline's report step: :func:`collect`, :func:`render`, then
    :func:`~proxyhpo.analysis.publish.publish` (log it all on the parent run, close it, write the Markdown and HTML).

    Returns:
        The summary (:meth:`NasRecord.summary`), also logged as ``summary.json``.
    """
    rendered = render(collect(study, plan, result_files))
    publish(rendered, parent_run_id, markdown=markdown, html=html, tracking_uri=tracking_uri)
    return dict(rendered.summary)
