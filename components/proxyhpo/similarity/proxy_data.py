"""From a data set to its proxy data set: preprocess every case, compare all pairs, rank, select.

This is the library entry point behind ``proxyhpo similarity`` and ``proxyhpo select`` and the KFP
similarity component. The engines themselves live in :mod:`proxyhpo.similarity.mutual_information`
and :mod:`proxyhpo.similarity.local_ncc`.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, ConfigDict

from proxyhpo import storage
from proxyhpo.config import ProxyDataManifest, StrictModel, SelectionConfig, SimilarityConfig, StudyConfig, StudyData
from proxyhpo.data.msd import CaseVolumes, MSDDataset, load_dataset, validate_dataset
from proxyhpo.data.prepare import split_cases
from proxyhpo.errors import DataError
from proxyhpo.registry import SIMILARITY_METRICS
from proxyhpo.similarity.ranking import mean_similarity, rank_least_similar, select_least_similar, select_random

__all__ = ["SimilarityResult", "compute_similarity", "select_proxy_data", "select_for_study", "study_channel", "all_data_manifest", "write_similarity"]


class SimilarityResult(StrictModel):
    """An all-pairs similarity matrix, the case ids in matrix order, and what computing it cost.

    ``seconds`` and ``device`` (``cpu`` or ``cuda``) are the preprocessing and the engine's time: a proxy
    search's cost includes them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)  # the numpy matrix; the rest as StrictModel

    metric: Annotated[str, AfterValidator(SIMILARITY_METRICS.check)]
    crop: Literal["label", "none"]
    case_ids: tuple[str, ...]
    matrix: np.ndarray
    include_self: bool = True
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def mean_similarity(self) -> np.ndarray:
        """Each case's importance: its mean similarity over all pairs, the self-pair included unless ``include_self`` is False."""
        return mean_similarity(self.matrix, include_self=self.include_self)

    def importance_csv(self) -> str:
        """``case_id,mean_similarity,rank`` rows, rank 1 = least similar to the rest, in rank order."""
        order, ranks = rank_least_similar(self.matrix, include_self=self.include_self)
        means = self.mean_similarity
        text = io.StringIO()
        rows = csv.writer(text, lineterminator="\n")  # a case id with a comma, quote or newline stays one field
        rows.writerow(["case_id", "mean_similarity", "rank"])
        rows.writerows([self.case_ids[i], f"{means[i]:.10g}", int(ranks[i])] for i in order)
        return text.getvalue()


def _prepare(dataset: MSDDataset, config: SimilarityConfig, crop: Literal["label", "none"], progress: bool, channel: int | None = None) -> tuple[list[str], np.ndarray]:
    from proxyhpo.similarity.preprocess import prepare_volume  # MONAI's transforms: loaded only where similarity is computed

    modality = "CT" if dataset.is_ct else "MR"
    case_ids: list[str] = []
    volumes: list[np.ndarray] = []

    def keep(case: CaseVolumes) -> None:
        # the channel the network is trained on, when the recipe keeps one (prostate: T2 of T2 and ADC)
        image = case.image[..., channel] if channel is not None and case.image.ndim == 4 else case.image
        try:
            volume = prepare_volume(
                image, case.label, spacing=case.spacing, modality=modality, crop=crop, patch=config.patch, margin=config.margin
            )
        except ValueError as exc:
            raise DataError(case.case_id, f"cannot be preprocessed for similarity ({exc})", "check the case's image and label") from exc
        case_ids.append(case.case_id)
        volumes.append(volume)

    validate_dataset(dataset, on_case=keep, progress=progress)
    return case_ids, np.stack(volumes)


def compute_similarity(
    dataset: MSDDataset,
    config: SimilarityConfig,
    *,
    metric: str,
    crop: Literal["label", "none"],
    progress: bool = False,
    channel: int | None = None,
) -> SimilarityResult:
    """Preprocess every case (crop to the label or not, resample, normalise) and compute the all-pairs matrix.

    A multi-channel data set (``len(modality) > 1``) is compared channel by channel, and its matrix is the
    mean over the channels of the per-channel matrices: MI and NCC are defined between two scalar
    images, and a joint histogram over C channels would need ``bins**(2C)`` cells for the same number of
    voxels; the mean keeps the single-channel scale (so rankings and thresholds mean the same thing),
    weighs every sequence alike (none is known to matter more for every task), and because importance is
    itself a mean over pairs, ranking by it is ranking by the mean of the per-channel importances.
    Labelcrop crops every channel to the union of the foreground classes (``label > 0``).

    Args:
        dataset: a loaded data set; every case is validated while it is read.
        config: patch size and engine settings.
        metric: a registered similarity metric (:data:`~proxyhpo.registry.SIMILARITY_METRICS`: ``mi``, ``ncc``).
        crop: ``label`` to crop each volume to its label's bounding box first (Labelcrop), or ``none``.
        progress: show progress bars.
        channel: compare only this channel of multi-channel images (a study passes its recipe's
            ``channel``: the proxy data are chosen on what the network sees); None: every channel.

    Raises:
        DataError: for the first case that fails validation.
        ConfigError: when ``config.device`` is ``cuda`` and no GPU is available.
    """
    from proxyhpo.devices import resolve_device

    if len(dataset.cases) < 2:
        raise DataError(
            dataset.dataset_json, f"has {len(dataset.cases)} case, and similarity compares pairs of cases", "add cases: similarity needs at least 2"
        )
    device = resolve_device(config.device, source="similarity.device")
    started = time.perf_counter()
    case_ids, volumes = _prepare(dataset, config, crop, progress, channel)
    engine = SIMILARITY_METRICS[metric](config)
    if volumes.ndim == 5:  # (n, C, P, P, P): the mean over channels of each channel's matrix (see the docstring)
        matrix = np.mean([engine.matrix(np.ascontiguousarray(volumes[:, c]), device=device, progress=progress) for c in range(volumes.shape[1])], axis=0)
    else:
        matrix = engine.matrix(volumes, device=device, progress=progress)
    return SimilarityResult(
        metric=metric,
        crop=crop,
        case_ids=tuple(case_ids),
        matrix=matrix,
        include_self=config.include_self,
        seconds=time.perf_counter() - started,
        device=device.type,
    )


def write_similarity(result: SimilarityResult, out_dir: str | os.PathLike[str]) -> list[Path | str]:
    """Write ``similarity.npy``, ``cases.json`` and ``importance.csv`` to ``out_dir`` as a set.

    A local folder's three files are written into a temporary folder beside it and then moved into
    place, so a failure part-way leaves nothing (and never an incomplete set). An ``s3://`` prefix gets
    the three objects through :mod:`proxyhpo.storage`, ``similarity.npy`` last.

    Returns:
        The three paths (or object URLs) written.
    """
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(result.matrix), allow_pickle=False)
    files = {
        "cases.json": (json.dumps(list(result.case_ids), indent=2) + "\n").encode("utf-8"),
        "importance.csv": result.importance_csv().encode("utf-8"),
        "similarity.npy": buffer.getvalue(),
    }
    order = ("similarity.npy", "cases.json", "importance.csv")
    if storage.is_s3_url(out_dir):
        prefix = str(out_dir).rstrip("/")
        for name in ("cases.json", "importance.csv", "similarity.npy"):
            storage.write_bytes(f"{prefix}/{name}", files[name])
        return [f"{prefix}/{name}" for name in order]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(errno.EEXIST, "is a file, not a folder", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for name, data in files.items():
            storage.atomic_write_bytes(staging / name, data)
        if not out.exists():
            try:
                os.rename(staging, out)  # the whole set appears at once
                return [out / name for name in order]
            except OSError:
                if not out.is_dir():
                    raise
        for name in order:  # the folder exists: every file is complete before the first is moved
            os.replace(staging / name, out / name)
        return [out / name for name in order]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def select_proxy_data(
    dataset: MSDDataset,
    selection: SelectionConfig,
    similarity: SimilarityConfig | None = None,
    *,
    candidates: Sequence[str] | None = None,
    fingerprint: str | None = None,
    val_fraction: float = 0.5,
    split_seed: int = 0,
    progress: bool = False,
    channel: int | None = None,
) -> ProxyDataManifest:
    """Choose the proxy data set and split it into the search's training and validation cases.

    The ``budget`` least similar cases by the method's metric (Labelcrop or not), or a seeded random
    draw; then ``round(val_fraction * budget)`` of them validate and the rest train (the paper: 50/50).

    Args:
        dataset: the full data set.
        selection: method, budget and seed.
        similarity: engine settings (patch, bins, window, device); the metric and crop come from ``selection.method``.
        candidates: the case ids offered to the selection (a study offers its search cases only); all by default.
        fingerprint: the whole data set's SHA-256 when already known (a study's prepare step computed it).
        val_fraction, split_seed: the train/validation split of the chosen cases.
        progress: show progress bars.
        channel: the one channel compared, as :func:`compute_similarity` takes it.

    Raises:
        DataError: when the budget exceeds the number of candidates, or a case fails validation.
    """
    offered = offered_cases(dataset, candidates)
    n = len(offered.cases)
    if selection.budget > n:
        raise DataError(dataset.dataset_json, f"offers {n} cases, fewer than the budget {selection.budget}", f"choose a budget of at most {n}")
    if selection.method == "random":
        validate_dataset(offered, progress=progress)
        chosen_ids = [offered.cases[i].case_id for i in select_random(n, selection.budget, selection.seed)]
        scores: list[float | None] = [None] * len(chosen_ids)
        seconds, device = 0.0, "cpu"
    else:
        result = compute_similarity(offered, similarity or SimilarityConfig(), metric=selection.metric, crop=selection.crop, progress=progress, channel=channel)  # type: ignore[arg-type]
        chosen = select_least_similar(result.matrix, selection.budget, include_self=result.include_self)
        seconds, device = result.seconds, result.device
        means = result.mean_similarity
        chosen_ids = [result.case_ids[i] for i in chosen]
        scores = [float(means[i]) for i in chosen]
    manifest = _manifest(dataset, selection.method, selection.seed, chosen_ids, scores, fingerprint, val_fraction, split_seed)
    return manifest.model_copy(update={"selection_seconds": seconds, "selection_device": device})


def study_channel(study: StudyConfig) -> int | None:
    """The image channel a study's networks see when its recipe keeps one, else None (every channel)."""
    from proxyhpo.config import resolve_recipe

    return resolve_recipe(study.training.recipe).channel


def select_for_study(study: StudyConfig, data: StudyData, *, progress: bool = False) -> ProxyDataManifest:
    """The search data of a study and its split: its proxy data set, drawn from the search cases only, or all search cases.

    Args:
        study: the study config.
        data: the prepare stage's output; held-out cases are never offered to the selection, so the
            internal test set stays unseen.
        progress: show progress bars.
    """
    dataset = load_dataset(data.dataset)
    split = {"val_fraction": study.data.val_fraction, "split_seed": study.data.split_seed}
    if study.training.data == "proxy":
        return select_proxy_data(
            dataset, study.selection, study.similarity, candidates=data.search_ids, fingerprint=data.dataset_sha256, progress=progress, channel=study_channel(study), **split
        )
    return all_data_manifest(dataset, data, seed=study.selection.seed)


def all_data_manifest(dataset: MSDDataset, data: StudyData, *, seed: int = 0) -> ProxyDataManifest:
    """The "all data" setting: train on the study's search-train cases, validate on its search-validation cases.

    The paper's ground truth trains and validates on splits of all MSD cases (spleen 32/9, prostate 26/6);
    here the held-out cases stay out of it, so the final model's internal test Dice is read from a set
    that neither the search nor the final model's checkpoint choice saw.
    """
    case_ids = [*data.search_train_ids, *data.search_val_ids]
    return ProxyDataManifest(
        method="full",
        budget=len(case_ids),
        seed=seed,
        dataset=dataset.location,
        dataset_sha256=data.dataset_sha256,
        case_ids=tuple(case_ids),
        cases=tuple(entries_as_written(dataset, case_ids)),
        scores=(None,) * len(case_ids),
        train_ids=tuple(data.search_train_ids),
        val_ids=tuple(data.search_val_ids),
    )


def offered_cases(dataset: MSDDataset, candidates: Sequence[str] | None) -> MSDDataset:
    if candidates is None:
        return dataset
    wanted = set(candidates)
    unknown = sorted(wanted - {case.case_id for case in dataset.cases})
    if unknown:
        raise DataError(dataset.dataset_json, f"has no cases {unknown[:5]}", "the data set changed since the study was prepared: run the study again")
    return dataset.model_copy(update={"cases": tuple(case for case in dataset.cases if case.case_id in wanted)})


def entries_as_written(dataset: MSDDataset, case_ids: Sequence[str]) -> list[dict[str, str]]:
    """The ``{"image", "label"}`` entries of ``case_ids`` as written in ``dataset.json``."""
    by_id = {case.case_id: case for case in dataset.cases}
    return [by_id[case_id].as_entry() for case_id in case_ids]


def _manifest(
    dataset: MSDDataset,
    method: str,
    seed: int,
    chosen_ids: list[str],
    scores: list[float | None],
    fingerprint: str | None,
    val_fraction: float,
    split_seed: int,
) -> ProxyDataManifest:
    train_ids, val_ids = split_cases(chosen_ids, val_fraction, split_seed)
    return ProxyDataManifest(
        method=method,
        budget=len(chosen_ids),
        seed=seed,
        dataset=dataset.location,
        dataset_sha256=fingerprint or dataset.sha256(),
        case_ids=tuple(chosen_ids),
        cases=tuple(entries_as_written(dataset, chosen_ids)),
        scores=tuple(scores),
        train_ids=tuple(train_ids),
        val_ids=tuple(val_ids),
    )
