"""From a data set to its proxy data set: preprocess every case, compare all pairs, rank, select.

This is the library entry point behind ``proxyhpo similarity`` and ``proxyhpo select`` and the KFP
similarity component. The engines themselves live in :mod:`proxyhpo.similarity.mutual_information`
and :mod:`proxyhpo.similarity.local_ncc`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from proxyhpo import storage
from proxyhpo.config import SelectionConfig, SimilarityConfig
from proxyhpo.data.msd import CaseVolumes, MSDDataset, validate_dataset
from proxyhpo.errors import ConfigError, DataError
from proxyhpo.similarity.local_ncc import local_ncc_matrix
from proxyhpo.similarity.mutual_information import mutual_information_matrix
from proxyhpo.similarity.preprocess import prepare_volume
from proxyhpo.similarity.ranking import mean_similarity, rank_least_similar, select_least_similar, select_random

__all__ = [
    "SimilarityResult",
    "ProxyDataManifest",
    "compute_similarity",
    "select_proxy_data",
    "select_for_study",
    "write_similarity",
    "read_manifest",
]

MANIFEST_SCHEMA_VERSION = 1


class SimilarityResult(BaseModel):
    """An all-pairs similarity matrix and the case ids in matrix order."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    metric: Literal["mi", "ncc"]
    crop: Literal["label", "none"]
    case_ids: tuple[str, ...]
    matrix: np.ndarray

    @property
    def mean_similarity(self) -> np.ndarray:
        """Each case's mean similarity to the other cases."""
        return mean_similarity(self.matrix)

    def importance_csv(self) -> str:
        """``case_id,mean_similarity,rank`` rows, rank 1 = least similar to the rest, in rank order."""
        order, ranks = rank_least_similar(self.matrix)
        means = self.mean_similarity
        lines = ["case_id,mean_similarity,rank"]
        lines += [f"{self.case_ids[i]},{means[i]:.10g},{int(ranks[i])}" for i in order]
        return "\n".join(lines) + "\n"


class ProxyDataManifest(BaseModel):
    """The proxy data set handed from selection to training.

    ``cases`` are the chosen ``{"image", "label"}`` entries as written in ``dataset.json`` (relative to it),
    least similar first; ``scores`` their mean similarity (None for ``random``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = MANIFEST_SCHEMA_VERSION
    method: str
    budget: int
    seed: int
    dataset: str = Field(description="the data set's location as given (folder, dataset.json or s3:// URL)")
    dataset_sha256: str
    case_ids: list[str]
    cases: list[dict[str, str]]
    scores: list[float | None]


def _prepare(dataset: MSDDataset, config: SimilarityConfig, crop: Literal["label", "none"], progress: bool) -> tuple[list[str], np.ndarray]:
    modality = "CT" if dataset.is_ct else "MR"
    case_ids: list[str] = []
    volumes: list[np.ndarray] = []

    def keep(case: CaseVolumes) -> None:
        try:
            volume = prepare_volume(
                case.image, case.label, spacing=case.spacing, modality=modality, crop=crop, patch=config.patch, margin=config.margin
            )
        except ValueError as exc:
            raise DataError(case.case_id, f"cannot be preprocessed for similarity ({exc})", "check the case's image and label") from exc
        case_ids.append(case.case_id)
        volumes.append(volume)

    validate_dataset(dataset, on_case=keep, progress=progress)
    return case_ids, np.stack(volumes)


def compute_similarity(dataset: MSDDataset, config: SimilarityConfig, *, progress: bool = False) -> SimilarityResult:
    """Preprocess every case (crop to the label or not, resample, normalise) and compute the all-pairs matrix.

    Args:
        dataset: a loaded data set; every case is validated while it is read.
        config: metric, crop, patch size and engine settings.
        progress: show progress bars.

    Raises:
        DataError: for the first case that fails validation.
    """
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("similarity.device", "is 'cuda' but no CUDA device is available here", "use --device auto or cpu")
    case_ids, volumes = _prepare(dataset, config, config.crop, progress)
    if config.metric == "mi":
        matrix = mutual_information_matrix(volumes, bins=config.bins, device=config.device, progress=progress)
    else:
        matrix = local_ncc_matrix(volumes, window=config.window, device=config.device, progress=progress)
    return SimilarityResult(metric=config.metric, crop=config.crop, case_ids=tuple(case_ids), matrix=matrix)


def write_similarity(result: SimilarityResult, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``similarity.npy``, ``cases.json`` and ``importance.csv`` to ``out_dir``, each atomically."""
    out = Path(out_dir)
    return [
        storage.atomic_save_npy(out / "similarity.npy", result.matrix),
        storage.atomic_write_json(out / "cases.json", list(result.case_ids)),
        storage.atomic_write_text(out / "importance.csv", result.importance_csv()),
    ]


def select_proxy_data(
    dataset: MSDDataset,
    selection: SelectionConfig,
    similarity: SimilarityConfig | None = None,
    *,
    progress: bool = False,
) -> ProxyDataManifest:
    """Choose the proxy data set: the ``budget`` least similar cases by the method's metric, or a seeded random draw.

    Args:
        dataset: the full data set.
        selection: method, budget and seed.
        similarity: engine settings (patch, bins, window, device); the metric and crop come from ``selection.method``.
        progress: show progress bars.

    Raises:
        DataError: when the budget exceeds the number of cases, or a case fails validation.
    """
    n = len(dataset.cases)
    if selection.budget > n:
        raise DataError(dataset.dataset_json, f"has {n} cases, fewer than the budget {selection.budget}", f"choose a budget of at most {n}")
    by_id = {case.case_id: case for case in dataset.cases}
    if selection.method == "random":
        validate_dataset(dataset, progress=progress)
        chosen_ids = [dataset.cases[i].case_id for i in select_random(n, selection.budget, selection.seed)]
        scores: list[float | None] = [None] * len(chosen_ids)
    else:
        base = similarity or SimilarityConfig()
        config = base.model_copy(update={"metric": selection.metric, "crop": selection.crop})
        result = compute_similarity(dataset, config, progress=progress)
        chosen = select_least_similar(result.matrix, selection.budget)
        means = result.mean_similarity
        chosen_ids = [result.case_ids[i] for i in chosen]
        scores = [float(means[i]) for i in chosen]
    return ProxyDataManifest(
        method=selection.method,
        budget=selection.budget,
        seed=selection.seed,
        dataset=dataset.location,
        dataset_sha256=dataset.sha256(),
        case_ids=chosen_ids,
        cases=[by_id[case_id].as_entry() for case_id in chosen_ids],
        scores=scores,
    )


def read_manifest(location: str | os.PathLike[str]) -> ProxyDataManifest:
    """Read a proxy data manifest from a local file or ``s3://`` URL.

    Raises:
        DataError: when it is not a valid manifest.
    """
    raw = storage.read_bytes(location)
    try:
        return ProxyDataManifest.model_validate(json.load(io.BytesIO(raw)))
    except Exception as exc:
        raise DataError(location, f"is not a proxy data manifest ({exc.__class__.__name__})", "write it with `proxyhpo select`") from exc


def select_for_study(study, data, *, progress: bool = False) -> ProxyDataManifest:
    """The search data of a study: its proxy data set, drawn from the search cases only, or all search cases.

    Args:
        study: the :class:`proxyhpo.config.StudyConfig`.
        data: the :class:`proxyhpo.data.prepare.StudyData` of the prepare stage; held-out cases are
            never offered to the selection, so the internal test set stays unseen.
        progress: show progress bars.
    """
    from proxyhpo.data.msd import load_dataset

    dataset = load_dataset(data.dataset)
    search = set(data.search_ids)
    search_set = dataset.model_copy(update={"cases": tuple(case for case in dataset.cases if case.case_id in search)})
    if study.training.data == "proxy":
        return select_proxy_data(search_set, study.selection, study.similarity, progress=progress)
    return ProxyDataManifest(
        method="full",
        budget=len(search_set.cases),
        seed=study.selection.seed,
        dataset=dataset.location,
        dataset_sha256=data.dataset_sha256,
        case_ids=[case.case_id for case in search_set.cases],
        cases=[case.as_entry() for case in search_set.cases],
        scores=[None] * len(search_set.cases),
    )
