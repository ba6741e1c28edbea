"""The data of every cell of a comparison study: proxy data sets chosen by each method, and all-data splits.

A cell is one arm in one repeat (:class:`~proxyhpo.config.StudyCell`). The selection stage plans them
all at once, so each (metric, crop) similarity matrix is computed once for every budget and repeat,
and its cost is measured and charged to the arms that use it (a proxy search pays for its selection).

- All data (the paper's ground truth and the proxy-network study): repeat ``r`` splits *all* cases
  anew (``data.holdout_fraction`` validate, the rest train; seed ``data.split_seed + r``). These studies
  compare rankings and report no final model, so each cell's Dice is a validation Dice.
- The trust check gates a search whose final model is tested on the held-out cases, so its cells draw
  from the search cases only: all data splits them ``data.search_val_fraction`` anew per repeat.
- A proxy data set: the ``B`` least similar search cases (or ``B`` random ones, drawn anew per
  repeat), split ``data.val_fraction`` anew per repeat (seed ``data.split_seed + r``).
"""

from __future__ import annotations

from collections.abc import Sequence


from proxyhpo.config import NetworkConfig, SelectionConfig, StudyCell, StudyConfig, StudyData, resolve_recipe
from proxyhpo.data.msd import MSDDataset, load_dataset
from proxyhpo.data.prepare import split_cases
from proxyhpo.errors import DataError
from proxyhpo.similarity.proxy_data import SimilarityResult, compute_similarity, offered_cases, study_channel
from proxyhpo.similarity.ranking import select_least_similar, select_random

__all__ = ["plan_cells", "full_network", "proxy_network", "study_network"]


def full_network(study: StudyConfig) -> NetworkConfig:
    """The reference network: the full network of the study's family (the paper's full U-Net)."""
    return _for_recipe(study, NetworkConfig.full(study.training.network_family))


def proxy_network(study: StudyConfig, levels: int) -> NetworkConfig:
    """The study's family's proxy of ``levels`` levels (the family declares how its widths and blocks shrink)."""
    return _for_recipe(study, NetworkConfig.proxy(levels, study.training.network_family))


def _for_recipe(study: StudyConfig, network: NetworkConfig) -> NetworkConfig:
    """``network`` planned for the study's patch and spacing (a family such as ``dynunet`` plans its layers from them)."""
    recipe = resolve_recipe(study.training.recipe)
    return network.for_data(recipe.patch_size, recipe.spacing)


def study_network(study: StudyConfig) -> NetworkConfig:
    """The network the study's search trains (``training.network``)."""
    return full_network(study) if study.training.network == "full" else proxy_network(study, study.training.proxy_levels)


def plan_cells(study: StudyConfig, data: StudyData, kind: str, *, progress: bool = False) -> list[StudyCell]:
    """Every cell of comparison study ``kind``, in arm order then repeat order.

    Args:
        study: the study config (its ``studies`` section and its data split settings).
        data: the prepare stage's output.
        kind: ``proxy-data-study``, ``proxy-net-study`` or ``trust``.
        progress: show progress bars while computing similarities.

    Raises:
        ValueError: for an unknown ``kind``.
        DataError: when a budget exceeds the search cases.
    """
    everything = [*data.search_ids, *data.holdout_ids]
    if kind == "proxy-data-study":
        config = study.studies.proxy_data
        network = full_network(study) if config.network == "full" else proxy_network(study, study.training.proxy_levels)
        cells = _all_data_cells(study, kind, "full", network, everything, config.repeats, study.data.holdout_fraction)
        dataset = load_dataset(data.dataset)
        similarities = _Similarities(study, dataset, data.search_ids, progress)
        for method in config.methods:
            for budget in config.budgets:
                selection = SelectionConfig(method=method, budget=budget, seed=study.selection.seed)
                cells += _proxy_cells(study, dataset, data, kind, selection, network, config.repeats, similarities)
        return cells
    if kind == "proxy-net-study":
        config = study.studies.proxy_net
        cells = _all_data_cells(study, kind, "full", full_network(study), everything, config.repeats, study.data.holdout_fraction)
        for levels in config.levels:
            network = proxy_network(study, levels)
            cells += _all_data_cells(study, kind, f"proxy-L{levels}", network, everything, config.repeats, study.data.holdout_fraction)
        return cells
    if kind == "trust":
        repeats = study.studies.trust.repeats
        # the verdict chooses the search's setting: it must not read the held-out test cases
        search, fraction = data.search_ids, study.data.search_val_fraction
        cells = _all_data_cells(study, kind, "full", full_network(study), search, repeats, fraction)
        if study.training.data == "full":
            return cells + _all_data_cells(study, kind, "proxy", study_network(study), search, repeats, fraction)
        dataset = load_dataset(data.dataset)
        similarities = _Similarities(study, dataset, data.search_ids, progress)
        return cells + _proxy_cells(study, dataset, data, kind, study.selection, study_network(study), repeats, similarities, arm="proxy")
    raise ValueError(f"kind must be one of proxy-data-study, proxy-net-study, trust, got {kind!r}")


def _all_data_cells(
    study: StudyConfig, kind: str, arm: str, network: NetworkConfig, case_ids: Sequence[str], repeats: int, val_fraction: float
) -> list[StudyCell]:
    cells = []
    for repeat in range(repeats):
        train_ids, val_ids = split_cases(case_ids, val_fraction, study.data.split_seed + repeat)
        cells.append(
            StudyCell(study=kind, arm=arm, repeat=repeat, network=network, train_ids=tuple(train_ids), val_ids=tuple(val_ids), data_fraction=1.0)  # type: ignore[arg-type]
        )
    return cells


def _proxy_cells(
    study: StudyConfig,
    dataset: MSDDataset,
    data: StudyData,
    kind: str,
    selection: SelectionConfig,
    network: NetworkConfig,
    repeats: int,
    similarities: _Similarities,
    *,
    arm: str | None = None,
) -> list[StudyCell]:
    """The cells of one selection method and budget; the similarity matrix is computed once per (metric, crop)."""
    search = list(data.search_ids)
    if selection.budget > len(search):
        raise DataError(dataset.dataset_json, f"offers {len(search)} search cases, fewer than the budget {selection.budget}", f"use budgets of at most {len(search)}")
    total = len(search) + len(data.holdout_ids)
    label = arm or f"{selection.method}-{selection.budget}"
    seconds, device, chosen_by_repeat = 0.0, "cpu", []
    if selection.method == "random":
        # a random draw is the baseline: a new one every repeat, at no selection cost
        chosen_by_repeat = [[search[i] for i in select_random(len(search), selection.budget, selection.seed + repeat)] for repeat in range(repeats)]
    else:
        result = similarities.get(selection.metric, selection.crop)  # type: ignore[arg-type]
        seconds, device = result.seconds, result.device
        chosen = [result.case_ids[i] for i in select_least_similar(result.matrix, selection.budget, include_self=result.include_self)]
        chosen_by_repeat = [chosen] * repeats
    cells = []
    for repeat, chosen in enumerate(chosen_by_repeat):
        train_ids, val_ids = split_cases(chosen, study.data.val_fraction, study.data.split_seed + repeat)
        cells.append(
            StudyCell(
                study=kind,  # type: ignore[arg-type]
                arm=label,
                repeat=repeat,
                network=network,
                train_ids=tuple(train_ids),
                val_ids=tuple(val_ids),
                data_fraction=selection.budget / total,
                selection_seconds=seconds,
                selection_device=device,
            )
        )
    return cells


class _Similarities:
    """The (metric, crop) similarity matrices of the search cases, each computed once per plan, with what each cost."""

    def __init__(self, study: StudyConfig, dataset: MSDDataset, search: Sequence[str], progress: bool) -> None:
        self.study, self.progress = study, progress
        self.offered = offered_cases(dataset, search)
        self.computed: dict[tuple[str, str], SimilarityResult] = {}

    def get(self, metric: str, crop: str) -> SimilarityResult:
        """The matrix of ``(metric, crop)``, with its case order and what computing it cost."""
        if (metric, crop) not in self.computed:
            self.computed[(metric, crop)] = compute_similarity(
                self.offered, self.study.similarity, metric=metric, crop=crop, progress=self.progress, channel=study_channel(self.study)  # type: ignore[arg-type]
            )
        return self.computed[(metric, crop)]
