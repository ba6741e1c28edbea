"""Numbers as the reports write them, and the pieces of Markdown every comparison report shares.

Private to :mod:`proxyhpo.analysis`: the ``render`` functions of the report modules build on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from proxyhpo.config import StudyConfig
from proxyhpo.config.selection import RANDOM, method_crop, method_metric

#: What a grid cell's Dice was measured on, as the reports name it. A comparison study's ``internal`` Dice
#: (:attr:`~proxyhpo.analysis.statistics.GridCell.internal_dice`, the trial's ``final_val_dice``) is its own
#: validation cases' Dice; "internal" in a report means only the untouched internal test set.
DICE_NAMES = {"internal": "validation Dice", "external": "external Dice"}


def dice_name(metric: str) -> str:
    """``validation Dice`` for a cell's ``internal`` Dice, ``external Dice`` for its external one."""
    return DICE_NAMES.get(metric, f"{metric} Dice")


def method_label(method: str) -> str:
    """A proxy data method as the paper writes it: ``MI``, ``NCC+Labelcrop``, ``Random baseline`` (any registered metric likewise)."""
    if method == RANDOM:
        return "Random baseline"
    label = str(method_metric(method)).upper()
    return label + "+Labelcrop" if method_crop(method) == "label" else label


def metric_key(name: str) -> str:
    """``name`` as an MLflow metric key: characters other than alphanumerics, ``_ - . /`` and space become ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def file_stem(name: str) -> str:
    """``name`` as a file name's stem: characters other than alphanumerics, ``_ . -`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def arm_metrics(
    per_arm: Mapping[str, Mapping[str, float | None]], headline: Mapping[str, float | None], totals: Mapping[str, float]
) -> dict[str, float]:
    """The parent run's metrics: every arm's under ``<name>.<arm>``, the headline arm's unprefixed, then the totals.

    Args:
        per_arm: arm -> its metrics, by name.
        headline: the metrics the parent run holds unprefixed (the headline arm's, or a part of them).
        totals: the study's totals.

    Returns:
        MLflow key -> value, missing and non-finite values left out.
    """
    metrics: dict[str, float | None] = {
        f"{name}.{metric_key(arm)}": value for arm, values in per_arm.items() for name, value in values.items()
    }
    metrics.update(headline)
    metrics.update(totals)
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(float(value))}


def format_dice(mean: float | None, std: float | None) -> str:
    """A Dice as ``mean ± std`` (``mean`` alone without a std; ``–`` without a mean)."""
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def format_hours(value: float) -> str:
    """Hours to 4 significant digits."""
    return f"{value:.4g}"


def format_times(value: float | None) -> str:
    """A speed-up as ``2.50×`` (``–`` when undefined)."""
    return "–" if value is None else f"{value:.2f}×"


def percent(fraction: float | None) -> str:
    """A share as ``25%`` (``–`` when undefined)."""
    return "–" if fraction is None else f"{100 * fraction:.0f}%"


def heading(title: str, study: StudyConfig, question: str) -> list[str]:
    """The report's title, the study's description and the question it answers."""
    lines = [f"# {title} `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    return lines + [question, ""]


def unit_sentence(unit: str) -> str:
    """What the hours of the cost section are (:attr:`~proxyhpo.analysis.costs.RunHours.unit`), as the section's first sentence."""
    if unit == "GPU-hours":
        return f"Hours are **{unit}**: the trials ran on a GPU."
    if unit.startswith("device wall"):
        return f"Hours are **{unit}**: the trials ran on the CPU, so each trial is charged its share of the wall-clock hours."
    return f"Hours are **{unit}**."


def speedup_note(reference: str) -> str:
    """How the cost section's speed-ups over the ``reference`` arm are computed."""
    return (
        f"Speed-up as run: `{reference}`'s hours per search over the arm's (packing included). At equal pack size every trial is "
        "charged as if it had run alone, each of its steps costing what a step of its pack cost (an upper bound), so the speed-up "
        "credits only what smaller data and networks save."
    )


def plots_section(captions: Mapping[str, str], missing: str) -> list[str]:
    """The report's list of plots (``<name>.png`` and its caption, by plot name), or ``missing`` when there is none."""
    if not captions:
        return ["## Plots", "", missing]
    return ["## Plots", ""] + [f"- [{name}.png]({name}.png): {caption}" for name, caption in captions.items()]
