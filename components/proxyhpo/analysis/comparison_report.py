"""The automl comparison's report (the paper's section 5, AutoML: Table 2, Fig. 4C/D), built from MLflow alone.

The automl comparison (tag ``automl-comparison``: the RL search run on all data, proxy data, a proxy network,
both, and random data, each result trained in full; or the lever ladder) has no plan: its parent run holds
``study.json`` and each arm's data manifest (``manifests/<arm>.json``), its children are the searches' trials
and the final models. :func:`collect` reads them back into a frozen :class:`ComparisonRecord`: per arm
(:class:`ArmSearch`) how its trials ended, what its search cost (:class:`~proxyhpo.analysis.costs.SearchCost`,
the cost model every comparison report shares), the best trial it found and the final models' Dice; the
lever ladder's headline; the parent run's metrics. :func:`render` turns the record into Table 2, Fig. 4C/D
and the cost section.

Example:
    >>> record = collect(parent_run_id)  # doctest: +SKIP
    >>> record.arms["proxy-data-net"].cost.speedup, record.arms["proxy-data-net"].distance  # doctest: +SKIP
    (4.2, 0.08)
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxyhpo.analysis._markdown import (
    method_label,
    arm_metrics,
    format_dice,
    format_hours,
    format_times,
    heading,
    plots_section,
    speedup_note,
    unit_sentence,
)
from proxyhpo.analysis._report_io import (
    TrialCounts,
    children,
    class_dice_of,
    device_hours,
    dice_of,
    keep_run,
    number,
    outcome,
    parent_run,
    read_study,
    trial_cell,
)
from proxyhpo.analysis.costs import RunHours, SearchCost, search_cost, with_speedups
from proxyhpo.analysis.headline import DICE_TOLERANCE, PAPER_SPEEDUP, SPEEDUP_GOAL, Headline, PairedCandidates, headline, headline_metrics, paired_candidates
from proxyhpo.analysis.publish import Rendered
from proxyhpo.analysis.statistics import mean_std, relative_distance
from proxyhpo.analysis.study_plots import plot_hyperparameter_distance
from proxyhpo.config import Categorical, NetworkConfig, ProxyDataManifest, SearchSpace, StrictModel, StudyConfig, parse_config
from proxyhpo.config.studies import LEVER_ARMS, REFERENCE_ARMS, SEARCH_ARMS
from proxyhpo.errors import ConfigError
from proxyhpo.registry import STUDY_PIPELINES
from proxyhpo.tracking import names

__all__ = ["KIND", "ArmSearch", "ComparisonRecord", "collect", "collect_searches", "ladder_headline", "read_manifests", "render"]


#: The automl comparison's pipeline tag, its reference arm (the search on all data with the full network; without
#: it, the lever ladder's ``full-search``: see :data:`~proxyhpo.config.studies.REFERENCE_ARMS`) and its arms as the
#: paper's Table 2 heads them (the ladder's after them); the kind as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("automl-comparison")
COMPARISON = KIND
TITLE = "AutoML comparison"
SEARCH_REFERENCE = "all-data"
SEARCH_ARM_NAMES = {
    "all-data": "All Data", "proxy-data": "Proxy Data", "proxy-net": "Proxy Net", "proxy-data-net": "Proxy Data&Net", "random-data": "Random Data",
    "full-search": "Full search", "plus-proxy-data": "+ proxy data", "plus-proxy-net": "+ proxy net", "plus-packing": "+ packing",
    "plus-early-stopping": "+ early stopping (all levers)",
}
#: The arms whose numbers the parent run holds unprefixed, the first the comparison has.
SEARCH_HEADLINES = ("proxy-data-net", "plus-early-stopping")
#: Where the parent run holds each arm's data manifest.
MANIFESTS_FOLDER = "manifests"

HyperValue = float | str | None


class ArmSearch(StrictModel):
    """One arm of the automl comparison: its search, what it cost, what it found, and what that gave trained in full.

    Attributes:
        arm: the search (``all-data``, ``proxy-data``, ``proxy-net``, ``proxy-data-net``, ``random-data``, or a ladder arm).
        method, budget, train_cases, val_cases: the arm's search data from its manifest
            (``manifests/<arm>.json``: ``full`` or a selection method); None without a manifest.
        network: the network its search trials trained (their ``network`` param); None without trials.
        rounds: rounds it ran trials in.
        trials: how its search trials ended: a trial stopped early by the search is counted stopped, not
            failed; a FINISHED trial without ``final_val_dice`` counts as failed.
        cost: what its search cost (its trials, failed and stopped ones too, plus choosing its data once)
            and its speed-ups over the reference arm; see :class:`~proxyhpo.analysis.costs.SearchCost`.
        best_trial, best_round, best_val_dice: its best FINISHED search trial by ``final_val_dice`` (the
            search's reward; on ties the earliest started), its round and that Dice; stopped trials never count.
        hyperparameters: the best trial's value of each search-space name (a number for a range, the
            choice as text for a categorical); empty without a finished trial.
        distance: :func:`~proxyhpo.analysis.statistics.relative_distance` of ``hyperparameters`` to the
            reference search's (0 for the reference itself); None when either search found nothing.
        finals: how its final models (the best hyper-parameters trained in full) ended.
        internal_mean, internal_std: the final models' ``internal_test_dice`` (internal Dice: the held-out
            cases, which no search, selection or checkpoint choice read), mean and sample std over repeats; external_mean, external_std: their ``test_dice``
            (external Dice; None without an external set).
        internal_class_mean: a multi-class task's internal Dice per class (the mean above is their mean), averaged
            over the final models that logged it; empty for a binary task.
        final_hyperparameters: what the final models logged as params, when they all agree; None otherwise.
        final_matches_best: whether those equal ``hyperparameters``; None when either is missing.
    """

    arm: str
    method: str | None
    budget: int | None
    train_cases: int | None
    val_cases: int | None
    network: str | None
    rounds: int
    trials: TrialCounts
    cost: SearchCost
    best_trial: str | None
    best_round: int | None
    best_val_dice: float | None
    hyperparameters: dict[str, HyperValue]
    distance: float | None
    finals: TrialCounts
    internal_mean: float | None
    internal_std: float | None
    external_mean: float | None
    external_std: float | None
    internal_class_mean: dict[str, float] = {}
    final_hyperparameters: dict[str, HyperValue] | None
    final_matches_best: bool | None


class ComparisonRecord(StrictModel):
    """An automl comparison's numbers.

    Attributes:
        parent_run_id: the comparison's parent run.
        study: its ``study.json``.
        reference: the reference arm (``all-data``, or the ladder's ``full-search``).
        arms: arm -> its search, in ``studies.comparison.arms``' order, then any arm not configured.
        manifests: arm -> its data manifest.
        trials, finals: how the search trials and the final models ended, over every arm.
        hours: the device hours of every child run (final models included); where the search trials ran.
        headline: the arm whose numbers the parent run holds unprefixed.
        ladder: the lever ladder's headline; None without ``full-search`` and a later ladder arm.
        shared: in a paired comparison (``studies.comparison.paired``), per arm other than the reference, its
            rank correlation with and regret against the reference on the settings both trained; empty otherwise.
        metrics: the parent run's metrics.
    """

    parent_run_id: str
    study: StudyConfig
    reference: str
    arms: dict[str, ArmSearch]
    manifests: dict[str, ProxyDataManifest]
    trials: TrialCounts
    finals: TrialCounts
    hours: RunHours
    headline: str | None
    ladder: Headline | None
    shared: dict[str, PairedCandidates] = {}
    metrics: dict[str, float]


def read_manifests(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, ProxyDataManifest]:
    """The search data of each arm of an automl comparison: the parent run's ``manifests/<arm>.json``.

    Returns:
        Arm -> its :class:`~proxyhpo.config.ProxyDataManifest`, arms sorted by name; empty when no
        selection has run yet.

    Raises:
        ProxyHPOError: when the run does not exist.
        ConfigError: when a manifest is not JSON or does not validate, naming the artifact and the key.
    """
    mlflow_client, _ = parent_run(parent_run_id, tracking_uri)
    return _manifests(mlflow_client, parent_run_id)


def _manifests(mlflow_client: Any, run_id: str) -> dict[str, ProxyDataManifest]:
    entries = [entry.path for entry in mlflow_client.list_artifacts(run_id, MANIFESTS_FOLDER) if not entry.is_dir and entry.path.endswith(".json")]
    manifests: dict[str, ProxyDataManifest] = {}
    with tempfile.TemporaryDirectory(prefix="manifests-") as folder:
        for path in sorted(entries):
            source = f"runs:/{run_id}/{path}"
            try:
                document = json.loads(Path(mlflow_client.download_artifacts(run_id, path, folder)).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(source, f"is not valid JSON ({exc})", "rerun the study") from None
            manifests[Path(path).stem] = parse_config(ProxyDataManifest, document, source, fix="rerun the study")
    return manifests


def _hyper_value(distribution: Any, text: str | None) -> HyperValue:
    """A logged param back as the search space's value: the text of a choice, a finite number for a range."""
    if text is None:
        return None
    if isinstance(distribution, Categorical):
        return text
    return number(text)


def _hyperparameters(run: Any, space: SearchSpace) -> dict[str, HyperValue]:
    return {name: _hyper_value(distribution, run.data.params.get(name)) for name, distribution in space.items()}


def _same_setting(a: Mapping[str, HyperValue], b: Mapping[str, HyperValue]) -> bool:
    """Whether two settings agree on every name (numbers to 1e-9 relative, choices as text)."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0):
                return False
        elif x != y:
            return False
    return True


def _distance(found: Mapping[str, HyperValue], reference: Mapping[str, HyperValue], space: SearchSpace) -> float | None:
    """:func:`relative_distance` of two complete settings; None when either lacks a value."""
    if not found or not reference or any(v is None for v in (*found.values(), *reference.values())):
        return None
    try:
        return relative_distance(found, reference, space)
    except ValueError:
        return None


def _round(run: Any) -> int | None:
    """The run's search round (tag ``proxyhpo.round``), or None."""
    try:
        return int(run.data.tags[names.ROUND_TAG])
    except (KeyError, ValueError):
        return None


def _trial_id(run: Any) -> str:
    return run.data.tags.get(names.TRIAL_ID_TAG) or run.info.run_id


def _reference_arm(arms: Sequence[str]) -> str:
    """The comparison's reference: the first of :data:`~proxyhpo.config.studies.REFERENCE_ARMS` among its arms (``all-data`` by default)."""
    return next((arm for arm in REFERENCE_ARMS if arm in arms), SEARCH_REFERENCE)


def _comparison_arms(study: StudyConfig, found: Sequence[str]) -> list[str]:
    """The configured arms in their order, then any arm with runs or a manifest that is not configured."""
    order = list(study.studies.comparison.arms)
    return order + sorted(arm for arm in set(found) if arm not in order)


def collect(parent_run_id: str, tracking_uri: str | None = None) -> ComparisonRecord:
    """The automl comparison's numbers, read back from the parent run and its child runs alone.

    Search trials are the child runs tagged ``proxyhpo.role=trial`` with an arm; final models those
    tagged ``proxyhpo.role=final`` with an arm and a repeat; each arm's data and selection cost come
    from ``manifests/<arm>.json``, the search space from ``study.json``. Should a trial (same arm and
    ``proxyhpo.trial_id``) or a final model (same arm and repeat) have two runs (a retry), the finished
    one, else the newest, is kept. See :class:`ArmSearch` for what each number is.

    Raises:
        ProxyHPOError: when the run does not exist or has no ``study.json``.
        ConfigError: when ``study.json`` or a manifest does not validate.
    """
    mlflow_client, parent = parent_run(parent_run_id, tracking_uri)
    study = read_study(mlflow_client, parent_run_id)
    space = study.search.space
    manifests = _manifests(mlflow_client, parent_run_id)
    trials: dict[tuple[str, str], Any] = {}
    finals: dict[tuple[str, int], Any] = {}
    other: list[Any] = []  # children of neither role still cost device hours
    for run in children(mlflow_client, parent):
        tags = run.data.tags
        arm, role = tags.get(names.ARM_TAG), tags.get(names.ROLE_TAG, names.ROLE_TRIAL)
        if not arm or role not in (names.ROLE_TRIAL, names.ROLE_FINAL):
            other.append(run)
        elif role == names.ROLE_TRIAL:
            keep_run(trials, (arm, _trial_id(run)), run)
        else:
            try:
                keep_run(finals, (arm, int(tags.get(names.REPEAT_TAG, "0"))), run)
            except ValueError:
                other.append(run)
    arms = _comparison_arms(study, [*manifests, *(a for a, _ in trials), *(a for a, _ in finals)])
    reference_arm = _reference_arm(arms)

    fields: dict[str, dict[str, Any]] = {}
    costs: dict[str, SearchCost] = {}
    for arm in arms:
        mine = [run for (a, _), run in trials.items() if a == arm]  # oldest first
        scored = [(run, dice_of(run, names.FINAL_VAL_DICE)) for run in mine]
        done = [(run, dice) for run, dice in scored if dice is not None]
        best = None
        if done:  # the highest reward; on ties the earliest started (then the earlier round, the smaller trial id)
            best = min(done, key=lambda item: (-item[1], item[0].info.start_time or 0, _round(item[0]) or 0, item[0].data.tags.get(names.TRIAL_ID_TAG, "")))[0]
        manifest = manifests.get(arm)
        selection = {0: (manifest.selection_seconds, manifest.selection_device)} if manifest is not None else {}
        costs[arm] = search_cost(arm, {0: [trial_cell(run, arm, 0, _trial_id(run), dice, None) for run, dice in scored]}, selection)
        mine_finals = [run for (a, _), run in sorted(finals.items(), key=lambda item: item[0]) if a == arm]
        internal = [dice_of(run, names.INTERNAL_TEST_DICE) for run in mine_finals]
        external = [dice_of(run, names.TEST_DICE) for run in mine_finals]
        logged = [_hyperparameters(run, space) for run in mine_finals if any(name in run.data.params for name in space.names)]
        final_setting = logged[0] if logged and all(_same_setting(logged[0], s) for s in logged[1:]) else None
        setting = _hyperparameters(best, space) if best is not None else {}
        networks = sorted({run.data.params[names.NETWORK_PARAM] for run in mine if run.data.params.get(names.NETWORK_PARAM)})
        internal_mean, internal_std = mean_std(internal)
        external_mean, external_std = mean_std(external)
        per_class: dict[str, list[float]] = {}
        for run, internal_dice in zip(mine_finals, internal):
            if internal_dice is not None:  # a final model that failed or stopped counts nowhere
                for name, dice in class_dice_of(run.data.metrics).get(names.INTERNAL_TEST_DICE, {}).items():
                    per_class.setdefault(name, []).append(dice)
        fields[arm] = {
            "arm": arm,
            "method": manifest.method if manifest else None,
            "budget": manifest.budget if manifest else None,
            "train_cases": len(manifest.train_ids) if manifest else None,
            "val_cases": len(manifest.val_ids) if manifest else None,
            "network": ", ".join(networks) or None,
            "rounds": len({_round(run) for run in mine} - {None}),
            "trials": TrialCounts.of(outcome(run, names.FINAL_VAL_DICE) for run in mine),
            "best_trial": (best.data.tags.get(names.TRIAL_ID_TAG) or best.info.run_name or best.info.run_id) if best is not None else None,
            "best_round": _round(best) if best is not None else None,
            "best_val_dice": dice_of(best, names.FINAL_VAL_DICE) if best is not None else None,
            "hyperparameters": setting,
            "finals": TrialCounts.of(outcome(run, names.INTERNAL_TEST_DICE, names.TEST_DICE) for run in mine_finals),
            "internal_mean": internal_mean,
            "internal_std": internal_std,
            "external_mean": external_mean,
            "external_std": external_std,
            "internal_class_mean": {name: sum(values) / len(values) for name, values in per_class.items()},
            "final_hyperparameters": final_setting,
            "final_matches_best": _same_setting(final_setting, setting) if final_setting is not None and setting else None,
        }
    costs = with_speedups(costs, reference_arm)
    reference_setting = fields[reference_arm]["hyperparameters"] if reference_arm in fields else {}
    searches = {
        arm: ArmSearch(**values, cost=costs[arm], distance=_distance(values["hyperparameters"], reference_setting, space)) for arm, values in fields.items()
    }
    others = [arm for arm in arms if arm != reference_arm]
    headline_arm = next((arm for arm in SEARCH_HEADLINES if arm in arms), next(iter(others), None))
    ladder = ladder_headline(searches)
    trial_counts = sum((search.trials for search in searches.values()), TrialCounts())
    final_counts = sum((search.finals for search in searches.values()), TrialCounts())
    hours = RunHours.of(
        (device_hours(run.data.metrics) for run in (*trials.values(), *finals.values(), *other)),
        trials=(device_hours(run.data.metrics) for run in trials.values()),
    )
    metrics = _metrics(searches, reference_arm, headline_arm, ladder, trial_counts, final_counts, hours)
    shared = _shared(study, trials, reference_arm, arms) if study.studies.comparison.paired else {}
    if shared:  # the arms' final models share seeds: a Dice gap between them is no independent comparison
        metrics = {key: value for key, value in metrics.items() if key not in ("headline_dice_gap", "headline_dice_within_tolerance", "headline_goal_met")}
        for arm, result in shared.items():
            metrics |= {f"shared_{key}.{arm}": float(value) for key, value in result.model_dump().items() if value is not None}
    return ComparisonRecord(
        parent_run_id=parent_run_id,
        study=study,
        reference=reference_arm,
        arms=searches,
        manifests=manifests,
        trials=trial_counts,
        finals=final_counts,
        hours=hours,
        headline=headline_arm,
        ladder=ladder,
        shared=shared,
        metrics=metrics,
    )


def collect_searches(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, ArmSearch]:
    """The automl comparison's arms (:func:`collect`'s ``arms``), in ``studies.comparison.arms``' order, then any arm not configured.

    Raises:
        ProxyHPOError: when the run does not exist or has no ``study.json``.
        ConfigError: when ``study.json`` or a manifest does not validate.
    """
    return collect(parent_run_id, tracking_uri).arms


def _metrics(
    searches: Mapping[str, ArmSearch], reference: str, headline_arm: str | None, ladder: Headline | None, trials: TrialCounts, finals: TrialCounts, hours: RunHours
) -> dict[str, float]:
    """The parent run's metrics: the headline arm's unprefixed, every arm's under ``<name>.<arm>``, the lever ladder's
    headline (``headline_*``, ``lever_share_*``, ``lever_speedup_*``), then the totals."""

    def arm_values(search: ArmSearch) -> dict[str, float | None]:
        values: dict[str, float | None] = {
            names.INTERNAL_TEST_DICE: search.internal_mean,
            f"{names.INTERNAL_TEST_DICE}_std": search.internal_std,
            names.FINAL_TEST_DICE: search.external_mean,
            "final_test_dice_std": search.external_std,
            names.BEST_VAL_DICE: search.best_val_dice,
        }
        if search.trials.n_trials:  # costs of searches that ran
            values |= {"device_hours_per_search": search.cost.hours, "equal_pack_hours_per_search": search.cost.equal_pack_hours, "selection_hours": search.cost.selection_hours}
        if search.arm != reference:
            values |= {names.SPEEDUP_VS_FULL: search.cost.speedup, names.SPEEDUP_VS_FULL_EQUAL_PACK: search.cost.speedup_equal_pack, names.HP_DISTANCE: search.distance}
        return values

    per_arm = {arm: arm_values(search) for arm, search in searches.items()}
    unprefixed = (
        names.SPEEDUP_VS_FULL, names.SPEEDUP_VS_FULL_EQUAL_PACK, names.INTERNAL_TEST_DICE, names.FINAL_TEST_DICE, names.HP_DISTANCE, names.BEST_VAL_DICE,
    )
    headline_values = {name: value for name, value in per_arm[headline_arm].items() if name in unprefixed} if headline_arm in per_arm else {}
    totals = {
        names.TOTAL_GPU_HOURS: hours.gpu_hours,
        names.TOTAL_PROCESS_HOURS: hours.process_hours,
        names.N_TRIALS: float(trials.n_trials),
        names.N_FAILED_TRIALS: float(trials.n_failed),
        names.N_STOPPED_TRIALS: float(trials.n_stopped),
        names.N_FINAL_MODELS: float(finals.n_trials),
        names.N_FAILED_FINAL_MODELS: float(finals.n_failed),
    }
    if ladder is not None:
        headline_values |= headline_metrics(ladder)
    return arm_metrics(per_arm, headline_values, totals)


def _value(value: HyperValue) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _space_sentence(space: SearchSpace) -> str:
    parts = []
    for name, distribution in space.items():
        if isinstance(distribution, Categorical):
            parts.append(f"{name} ∈ {{{', '.join(str(c) for c in distribution.choices)}}}")
        else:
            scale = "log scale" if distribution.type == "log_uniform" else "linear scale"
            parts.append(f"{name} ∈ [{distribution.low:g}, {distribution.high:g}] ({scale})")
    return "; ".join(parts)


def _arm_label(arm: str) -> str:
    return SEARCH_ARM_NAMES.get(arm, arm)


def _data_label(manifest: ProxyDataManifest | None) -> str:
    if manifest is None:
        return "– (no manifest logged)"
    if manifest.method == "full":
        return "all data"
    return f"{method_label(manifest.method)}, B = {manifest.budget}"


def _shared(study: StudyConfig, trials: Mapping[tuple[str, str], Any], reference: str, arms: Sequence[str]) -> dict[str, PairedCandidates]:
    """Per arm other than the reference, :func:`~proxyhpo.analysis.headline.paired_candidates` against the reference's trials."""

    def settings(arm: str) -> list[tuple[dict[str, HyperValue], float | None]]:
        return [(_hyperparameters(run, study.search.space), dice_of(run, names.FINAL_VAL_DICE)) for (a, _), run in trials.items() if a == arm]

    return {arm: paired_candidates(settings(reference), settings(arm)) for arm in arms if arm != reference}


def _shared_section(shared: Mapping[str, PairedCandidates], reference: str) -> list[str]:
    """The paired comparison's section, in place of the headline's Dice gap."""
    lines = [
        "## Paired arms: the proxy's ranking of the shared candidates",
        "",
        "The arms share their controller and trial seeds (`studies.comparison.paired: true`), so they trained some settings in common "
        "and their final models are not independent: no Dice gap is reported. Instead, on the settings both trained (stopped and failed "
        f"trials left out): Spearman's rho of each arm's validation Dice with `{reference}`'s, and the regret (`{reference}`'s best Dice "
        "there minus its Dice on the setting the arm ranks first).",
        "",
        "| arm | shared settings | Spearman rho | regret |",
        "| --- | --- | --- | --- |",
    ]
    for arm, result in shared.items():
        rho = "–" if result.spearman_rho is None else f"{result.spearman_rho:.3f}"
        regret = "–" if result.regret is None else f"{result.regret:.4f}"
        lines.append(f"| `{arm}` | {result.n_shared} | {rho} | {regret} |")
    return lines + [""]


def ladder_headline(searches: Mapping[str, ArmSearch]) -> Headline | None:
    """The lever ladder's headline: ``full-search`` against the last ladder arm that ran; None without both.

    Arms of the ladder that ran no trial (or cost nothing) are left out: their lever merges with the next arm's.
    """
    ran = [(arm, searches[arm].cost.hours) for arm in LEVER_ARMS if arm in searches and searches[arm].trials.n_trials and searches[arm].cost.hours > 0]
    if len(ran) < 2 or ran[0][0] != "full-search":
        return None
    dice = {arm: (search.internal_mean, search.internal_std, search.finals.n_trials - search.finals.n_failed) for arm, search in searches.items()}
    return headline(ran, dice, {arm: search.trials for arm, search in searches.items()})


def _ladder_sentences(study: StudyConfig, arms: Sequence[str]) -> list[str]:
    """The "What was run" line of the lever ladder, when the comparison has any of its arms."""
    if not any(arm in LEVER_ARMS for arm in arms):
        return []
    levers = study.for_search_arm("plus-early-stopping")
    stopping = levers.search.early_stopping
    stops = (
        f"successive halving inside the packs, η = {stopping.reduction_factor}, rungs at epochs {', '.join(map(str, stopping.rungs(study.training.epochs)))}"
        + ("" if study.search.early_stopping is not None else " (the default: the study sets none)")
        + "; the controller then learns from ranks unless `search.controller.reward` says otherwise"
        if stopping is not None
        else "none possible (one epoch per trial)"
    )
    size = levers.training.pack_size
    packs = "packs sized by free device memory (`pack_size: auto`; 4 on a CPU)" if size == "auto" else f"packs of {size} trials per device"
    return [
        "- Lever ladder: `full-search` is the full search (all data, the full network, one trial per device, no early stopping); "
        "each next arm adds one lever to the one before: `plus-proxy-data` the proxy data, `plus-proxy-net` the "
        f"{NetworkConfig.proxy(study.training.proxy_levels, study.training.network_family).name} network, `plus-packing` {packs}, "
        f"`plus-early-stopping` early stopping ({stops})."
    ]


def _ladder_section(ladder: Headline, unit: str, repeats: int) -> list[str]:
    """The report's headline section: all levers against the full search, and each lever's share."""
    levers = " + ".join(ladder.levers) if ladder.levers else "none"
    goal = "met" if ladder.goal_met else ("not met" if ladder.goal_met is not None else "undecided (no final Dice)")
    if ladder.dice_within_tolerance is None:
        dice_verdict = "no verdict: a final model's Dice is missing"
    else:
        dice_verdict = (
            f"gap {ladder.dice_gap:+.2%} of the full search's ({'within' if ladder.dice_within_tolerance else 'outside'} the "
            f"{DICE_TOLERANCE:.0%} tolerance; one-sided, a better Dice passes)"
        )
        if ladder.dice_noisy:
            dice_verdict += f"; the final models' spread over their repeats exceeds {DICE_TOLERANCE:.0%}, so the verdict is within their noise"
    lines = [
        f"## Headline: all levers against the full search (goal {goal})",
        "",
        f"`{ladder.reference_arm}` (all data, full network, one trial per device, no early stopping) against `{ladder.levers_arm}` ({levers}), "
        f"on the same task. Goal: at most 1/{SPEEDUP_GOAL:g} of the full search's {unit} at a final Dice within {DICE_TOLERANCE:.0%} "
        f"(the paper reached 1/{PAPER_SPEEDUP:g} on spleen with proxy data and a proxy network; its text says 3.3× on prostate, its Table 2 gives 772/248 = 3.1×). Final Dice: internal, mean ± std over up to {repeats} final models.",
        "",
        f"| | `{ladder.reference_arm}` | `{ladder.levers_arm}` |",
        "| --- | --- | --- |",
        f"| {unit} per search | {format_hours(ladder.reference_hours)} | {format_hours(ladder.levers_hours)} |",
        f"| final Dice (internal) | {format_dice(ladder.dice_reference, ladder.dice_reference_std)} | {format_dice(ladder.dice_levers, ladder.dice_levers_std)} |",
        f"| search trials: failed / stopped early | {ladder.reference_trials.n_failed} / {ladder.reference_trials.n_stopped} "
        f"| {ladder.levers_trials.n_failed} / {ladder.levers_trials.n_stopped} |",
        "",
        f"- Speed-up: **{format_times(ladder.speedup)}** (goal ≥ {SPEEDUP_GOAL:g}×: {'met' if ladder.speedup_goal_met else 'not met'}).",
        f"- Final Dice: {dice_verdict}.",
        "",
        "| step | arm | lever added | hours before → after | factor | share of the speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for index, step in enumerate(ladder.steps, start=1):
        share = "–" if step.share is None else f"{step.share:.1%}"
        lines.append(
            f"| {index} | `{step.arm}` | {step.lever} | {format_hours(step.hours_before)} → {format_hours(step.hours_after)} | {format_times(step.factor)} | {share} |"
        )
    lines += [
        "",
        "Shares are the log-ratio decomposition along the ladder: a lever's share is log(hours before / hours after) over "
        "log(full search's hours / all levers'), so the shares sum to 100% and the factors multiply to the speed-up. The order "
        "matters: each factor is what its lever saves given the levers before it (another order gives other shares, the same total).",
    ]
    if unit != "GPU-hours":
        lines.append(
            "On a CPU packing saves little: a pack's step takes about as long as its models' steps one after another and each trial "
            "is charged its share, so the packing factor here says nothing of a GPU's, where small networks leave the device idle."
        )
    return lines + [""]


def render(record: ComparisonRecord) -> Rendered:
    """The report of an automl comparison: Markdown (what was run, Table 2, the lever ladder, the hyper-parameters
    found, the cost), the parent run's metrics and Fig. 4C/D."""
    study = record.study
    config = study.studies.comparison
    space = study.search.space
    searches = record.arms
    arms = list(searches)
    reference_arm = record.reference
    others = [arm for arm in arms if arm != reference_arm]
    headline, ladder = record.headline, record.ladder
    trials, finals = record.trials, record.finals
    unit = record.hours.unit
    stopped = trials.n_stopped > 0
    planned_trials = study.search.rounds * study.search.proposals_per_round
    reference = searches.get(reference_arm)

    def planned_network(arm: str) -> str:
        if arm not in SEARCH_ARMS:
            return "–"
        family = study.training.network_family
        return NetworkConfig.full(family).name if SEARCH_ARMS[arm][1] == "full" else NetworkConfig.proxy(study.training.proxy_levels, family).name

    lines = heading(
        TITLE,
        study,
        "Will proxy data and proxy networks lead the RL search to hyper-parameters close to those it finds on all data with the "
        "full network, and at what cost? (the paper's section 4.2 and section 5, AutoML: Table 2 and Fig. 4C/D)",
    )
    lines += [
        f"MLflow parent run `{record.parent_run_id}`: {trials.sentence('search trials')}; {finals.sentence('final models')}"
        + (
            " (failed, stopped and unfinished runs are left out of every Dice, best trial and mean below; the cost counts their device hours)."
            if trials.n_stopped
            else " (failed and unfinished runs are left out of every Dice, best trial and mean below; the cost counts their device hours)."
        ),
        "",
        "## What was run",
        "",
        f"- Searches: the RL controller (RNN + REINFORCE), {study.search.rounds} rounds × {study.search.proposals_per_round} proposals "
        f"= {planned_trials} trials per arm, over {_space_sentence(space)}; its reward is each trial's validation Dice (`final_val_dice`) "
        "on the arm's own validation cases.",
        f"- Arms: {', '.join(f'`{arm}` ({_arm_label(arm)})' for arm in arms)}; the reference is `{reference_arm}`, the search on all data "
        "with the full network. Proxy data is the study's selection, random data a random draw of the same budget.",
        *_ladder_sentences(study, arms),
        f"- Final models: each arm's best hyper-parameters train the {study.final.network} network on the search cases' search-train part for "
        f"{study.final.epochs} epochs, {config.repeats} times (same split, new initialisations), its checkpoint chosen on their search-validation part; "
        "internal Dice on the held-out cases (the untouched internal test set: no search, selection or checkpoint choice read them), "
        + ("external Dice on the external set." if study.data.external else "no external set configured (external Dice: –)."),
        "",
        "| arm | HP from | data | cases (train / val) | network | rounds | trials (planned) | failed |" + (" stopped |" if stopped else "")
        + " final models (planned) | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if stopped else "") + " --- | --- |",
    ]
    for arm in arms:
        search = searches[arm]
        manifest = record.manifests.get(arm)
        cases = f"{search.train_cases + search.val_cases} ({search.train_cases} / {search.val_cases})" if manifest is not None else "–"
        network = search.network or f"{planned_network(arm)} (planned)"
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | {_data_label(manifest)} | {cases} | {network} | {search.rounds} "
            f"| {search.trials.n_trials} ({planned_trials}) | {search.trials.n_failed} |" + (f" {search.trials.n_stopped} |" if stopped else "")
            + f" {search.finals.n_trials} ({config.repeats}) | {search.finals.n_failed} |"
        )
    lines.append("")

    header = "| HP from: | " + " | ".join(_arm_label(arm) for arm in arms) + " |"
    rule = "| --- | " + " | ".join("---" for _ in arms) + " |"
    lines += [
        "## Table 2: the hyper-parameters each search found, trained in full",
        "",
        f"Each arm's best hyper-parameters train the final model on the search cases; internal Dice on the untouched held-out cases, mean ± std over its {config.repeats} repeats "
        f"(failed final models left out). Hours are **{unit}** per search: the arm's search trials plus choosing its data; "
        "the final models are not counted.",
        "",
        header,
        rule,
        "| MSD Dice (internal) | " + " | ".join(format_dice(searches[a].internal_mean, searches[a].internal_std) for a in arms) + " |",
        *(
            f"| &nbsp;&nbsp;class {name} | " + " | ".join(format_dice(searches[a].internal_class_mean.get(name), None) for a in arms) + " |"
            for name in dict.fromkeys(name for a in arms for name in searches[a].internal_class_mean)
        ),
        "| External Dice | " + " | ".join(format_dice(searches[a].external_mean, searches[a].external_std) for a in arms) + " |",
        f"| {'device hours' if unit.startswith('device hours') else unit} per search | " + " | ".join(format_hours(searches[a].cost.hours) for a in arms) + " |",
        f"| speed-up vs `{reference_arm}` | " + " | ".join(format_times(searches[a].cost.speedup) for a in arms) + " |",
        "| speed-up at equal pack size | " + " | ".join(format_times(searches[a].cost.speedup_equal_pack) for a in arms) + " |",
        "",
    ]
    if headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{headline}`.", ""]
    if record.shared:
        lines += _shared_section(record.shared, reference_arm)
    elif ladder is not None:
        lines += _ladder_section(ladder, unit, config.repeats)

    hp_names = list(space.names)
    lines += [
        "## Hyper-parameters found (Fig. 4C/D)",
        "",
        "Each search's best trial: its highest validation Dice among FINISHED trials (the controller's reward; ties: the earliest "
        "started). The search Dice is each search's own validation, on its own cases and network, so it does not compare across arms. "
        f"Relative distance to `{reference_arm}`'s: each value mapped to [0, 1] on its range's scale (a choice: 0 when equal, 1 "
        "otherwise), the Euclidean distance over √(number of hyper-parameters); 0 = the same setting, 1 = opposite corners.",
        "",
        "| arm | HP from | best trial | round | search Dice | " + " | ".join(hp_names) + f" | distance to `{reference_arm}` | final models trained with |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in hp_names) + " | --- | --- |",
    ]
    for arm in arms:
        search = searches[arm]
        if search.best_trial is None:
            lines.append(f"| `{arm}` | {_arm_label(arm)} | no finished trial | | | " + " | ".join("" for _ in hp_names) + " | – | – |")
            continue
        if search.finals.n_trials == 0:
            trained = "–"
        elif search.final_matches_best is None:
            trained = "not logged alike by every final model"
        elif search.final_matches_best:
            trained = "the best trial's"
        else:
            trained = "other values: " + ", ".join(f"{n} = {_value(v)}" for n, v in (search.final_hyperparameters or {}).items())
        distance = "–" if search.distance is None else f"{search.distance:.3f}"
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | `{search.best_trial}` | {'–' if search.best_round is None else search.best_round} "
            f"| {format_dice(search.best_val_dice, None)} | " + " | ".join(_value(search.hyperparameters.get(n)) for n in hp_names) + f" | {distance} | {trained} |"
        )
    if reference is None or reference.best_trial is None:
        lines += ["", f"No `{reference_arm}` trial finished: there is no reference to measure distances from."]
    lines.append("")

    lines += [
        "## Cost",
        "",
        unit_sentence(unit)
        + " A search is one arm's rounds of trials (failed ones count: they used the device) plus choosing its data (`selection_seconds` "
        "of its manifest, once).",
        "",
        f"| arm | HP from | trials | selection (device) | total per search | speed-up vs `{reference_arm}` | at equal pack size: per search | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        cost = searches[arm].cost
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | {format_hours(cost.trial_hours)} | {format_hours(cost.selection_hours)} ({cost.selection_device or '–'}) "
            f"| {format_hours(cost.hours)} | {format_times(cost.speedup)} | {format_hours(cost.equal_pack_hours)} | {format_times(cost.speedup_equal_pack)} |"
        )
    lines += [
        "",
        speedup_note(reference_arm)
        + f" All child runs (searches and final models) used {format_hours(record.hours.gpu_hours)} GPU-hours and {format_hours(record.hours.process_hours)} process-hours.",
        "",
    ]

    figures = {}
    captions: dict[str, str] = {}
    distances: dict[str, list[float]] = {}
    for arm in others:
        distance = searches[arm].distance
        if distance is not None:
            distances[f"{_arm_label(arm)}\n({arm})"] = [distance]
    if distances:
        name = "fig4_hp_distance"
        figures[name] = plot_hyperparameter_distance(
            distances, title=f"best hyper-parameters found, distance to {reference_arm}'s\n({', '.join(hp_names)})"
        )
        captions[name] = (
            f"Fig. 4C/D: each search's relative distance to `{reference_arm}`'s hyper-parameters, one dot per search (the reference, at 0, left out)."
        )
    lines += plots_section(captions, f"No plot: no search other than `{reference_arm}` has a distance to it.")
    summary = {
        "kind": KIND,
        "study": study.name,
        "parent_run_id": record.parent_run_id,
        "n_trials": trials.n_trials,
        "n_failed": trials.n_failed,
        "n_stopped": trials.n_stopped,
        "n_running": trials.n_running,
        "total_gpu_hours": record.hours.gpu_hours,
        "total_process_hours": record.hours.process_hours,
        "metrics": dict(record.metrics),
        "verdict": None,
        "plots": sorted(f"{name}.png" for name in figures),
        "arms": {arm: search.model_dump(mode="json") for arm, search in searches.items()},
        "manifests": {arm: {"method": m.method, "budget": m.budget, "selection_seconds": m.selection_seconds, "selection_device": m.selection_device} for arm, m in record.manifests.items()},
        "reference_arm": reference_arm,
        "headline_arm": headline,
        "headline": ladder.model_dump(mode="json") if ladder is not None else None,
        "hours": unit,
        "n_final_models": finals.n_trials,
        "n_failed_final_models": finals.n_failed,
        "paired": config.paired,
        "shared_candidates": {arm: result.model_dump(mode="json") for arm, result in record.shared.items()},
    }
    markdown = "\n".join(lines) + "\n"
    return Rendered(kind=KIND, title=f"{TITLE} {study.name}", markdown=markdown, metrics=record.metrics, figures=figures, summary=summary)


