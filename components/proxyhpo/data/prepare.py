"""The first stage of every study: make the data set exist, validate it, and split it.

:class:`~proxyhpo.config.StudyData` is what the stage hands on: which data sets, their fingerprints, and which cases are
held out as the internal test set (never seen by the search) and which the search may use. It names
cases by id, not by local path, so any pod can re-stage the data set and resolve them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from proxyhpo import storage
from proxyhpo.config import DataConfig, StudyConfig, StudyData
from proxyhpo.data.msd import MSDDataset, load_dataset, validate_dataset
from proxyhpo.errors import ConfigError, DataError

__all__ = ["prepare_study_data", "ensure_synthetic", "split_cases", "entries_for", "classes_after_merge", "study_merge"]

logger = logging.getLogger(__name__)


def ensure_synthetic(config: DataConfig, *, progress: bool = False) -> None:
    """Generate the configured synthetic data sets where they do not exist yet (local paths only)."""
    if config.synthetic is None:
        return
    from proxyhpo.data.synthetic import write_synthetic_dataset

    synthetic = config.synthetic
    targets = [(config.dataset, synthetic.cases, False)]
    if config.external and synthetic.external_cases:
        targets.append((config.external, synthetic.external_cases, True))
    for location, cases, external in targets:
        if storage.is_s3_url(location):
            raise DataError(location, "is an s3:// URL but 'synthetic' is set", "generate phantoms to a local folder, or drop 'synthetic'")
        folder = Path(location)
        if folder.name == "dataset.json":
            folder = folder.parent
        if (folder / "dataset.json").exists():
            continue
        logger.info("generating %d synthetic %s cases in %s", cases, synthetic.task, folder)
        write_synthetic_dataset(
            synthetic.task, folder, cases=cases, size=synthetic.size, seed=synthetic.seed + (1000 if external else 0), external=external, progress=progress
        )


def split_cases(case_ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ids into ``(rest, held)`` where ``held`` is ``round(fraction * n)`` ids (at least 1, at most n - 1), seeded.

    Both lists keep the input order, so the split does not depend on anything but the ids and the seed.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(case_ids)
    if n < 2:
        raise ValueError(f"case_ids must hold at least 2 cases to split, got {n}")
    n_held = min(n - 1, max(1, round(fraction * n)))
    held_index = set(np.random.default_rng(seed).permutation(n)[:n_held].tolist())
    held = [case for i, case in enumerate(case_ids) if i in held_index]
    rest = [case for i, case in enumerate(case_ids) if i not in held_index]
    return rest, held


def entries_for(dataset: MSDDataset, case_ids: Sequence[str]) -> list[dict[str, str]]:
    """Absolute local ``{"image", "label"}`` paths of ``case_ids``, in that order.

    Raises:
        DataError: when an id is not in the data set (the data set changed since it was prepared).
    """
    by_id = {case.case_id: case for case in dataset.cases}
    missing = [case_id for case_id in case_ids if case_id not in by_id]
    if missing:
        raise DataError(dataset.dataset_json, f"has no cases {missing[:5]}", "the data set changed since the study was prepared: re-run the study")
    return [by_id[case_id].as_dict() for case_id in case_ids]


def study_merge(study: StudyConfig) -> dict[int, int]:
    """The label merge a study trains with: ``data.merge_labels`` when set, else its recipe's ``label_merge``
    (the prostate preset merges 2 into 1, as the paper does)."""
    from proxyhpo.config import resolve_recipe

    return dict(study.data.merge_labels) or dict(resolve_recipe(study.training.recipe).label_merge)


def classes_after_merge(labels: Mapping[int, str], merge: Mapping[int, int], *, source: str = "dataset.json", strict: bool = True) -> dict[int, str]:
    """The classes a network segments: dataset.json's ``labels`` after ``data.merge_labels``, value -> name.

    A merged class is named by the names it joins (``{1: "PZ", 2: "TZ"}`` with ``{2: 1}`` gives
    ``{1: "PZ+TZ"}``). The values must then be ``0..K`` (one network output per value, 0 the background).

    Args:
        labels: dataset.json's ``labels`` (value -> name).
        merge: ``data.merge_labels`` (value -> the value it becomes).
        source: the data set, for messages.
        strict: refuse merging a value dataset.json does not declare (a recipe preset's merge, checked
            with ``strict=False``, may name values a data set lacks: they are ignored).

    Raises:
        ConfigError: when ``strict`` and ``merge`` names a value dataset.json does not declare.
        DataError: when the classes after the merge are not ``0..K`` with ``K >= 1``.

    Example:
        >>> classes_after_merge({0: "background", 1: "PZ", 2: "TZ"}, {2: 1})
        {0: 'background', 1: 'PZ+TZ'}
    """
    undeclared = sorted(set(merge) - set(labels))
    if undeclared and strict:
        raise ConfigError("data.merge_labels", f"merges label values {undeclared} that {source} does not declare (it declares {sorted(labels)})", "merge only values listed in dataset.json 'labels'")
    joined: dict[int, list[str]] = {}
    for value in sorted(labels):
        joined.setdefault(merge.get(value, value), []).append(labels[value])
    values = sorted(joined)
    if values != list(range(len(values))) or len(values) < 2:
        raise DataError(
            source,
            f"has classes {values} after data.merge_labels, but training needs the values 0..K (0 the background, K >= 1)",
            "map the values onto 0..K with data.merge_labels, e.g. {4: 3}",
        )
    return {value: "+".join(joined[value]) for value in values}


def prepare_study_data(study: StudyConfig, *, progress: bool = False) -> StudyData:
    """Generate (if configured), stage, validate and split the study's data.

    Raises:
        DataError: for the first bad file, naming it and the fix.
    """
    ensure_synthetic(study.data, progress=progress)
    dataset = load_dataset(study.data.dataset)
    validate_dataset(dataset, progress=progress)
    # one output per class, 0..K; a value of data.merge_labels that dataset.json lacks is a typo, a preset's is not
    classes_after_merge(dataset.labels, study_merge(study), source=str(dataset.dataset_json), strict=bool(study.data.merge_labels))
    case_ids = [case.case_id for case in dataset.cases]
    needed = study.selection.budget if study.training.data == "proxy" else 2
    if len(case_ids) < needed + 1:  # at least one held-out case, and the search's cases
        raise DataError(
            dataset.dataset_json,
            f"has {len(case_ids)} case{'s' if len(case_ids) != 1 else ''}, too few to hold out a test set and search on {needed}",
            f"add cases (at least {needed + 1}), or lower selection.budget",
        )
    search_ids, holdout_ids = split_cases(case_ids, study.data.holdout_fraction, study.data.split_seed)
    if len(search_ids) < needed:
        raise DataError(
            dataset.dataset_json,
            f"leaves {len(search_ids)} cases for the search after holding out {len(holdout_ids)}, fewer than the budget {needed}",
            "add cases, lower data.holdout_fraction or lower selection.budget",
        )
    search_train_ids, search_val_ids = split_cases(search_ids, study.data.search_val_fraction, study.data.split_seed + 1)
    external = None
    if study.data.external:
        external = load_dataset(study.data.external)
        validate_dataset(external, progress=progress)
        if external.channels != dataset.channels:  # the networks take the study's channels
            raise DataError(
                external.dataset_json,
                f"lists {external.channels} image channels in 'modality', the study's data set {dataset.channels} ({dataset.dataset_json})",
                "test on an external data set with the same channels, in the same order",
            )
        undeclared = sorted(set(external.labels) - set(dataset.labels))
        if undeclared:
            raise DataError(external.dataset_json, f"declares label values {undeclared} that the study's data set does not", "test on an external data set with the study's classes")
    return StudyData(
        dataset=study.data.dataset,
        dataset_sha256=dataset.sha256(),
        external=study.data.external,
        external_sha256=external.sha256() if external else None,
        modality="CT" if dataset.is_ct else "MR",
        labels=dataset.labels,
        holdout_ids=holdout_ids,
        search_ids=search_ids,
        search_train_ids=search_train_ids,
        search_val_ids=search_val_ids,
        external_ids=[case.case_id for case in external.cases] if external else [],
    )
