"""What the data stages hand on: the study's validated data and split, and the proxy data manifest.

Both name cases by id, not by local path, so any pod can re-stage the data set and resolve them. Both
carry the same fingerprint, ``dataset_sha256``: the SHA-256 of the whole data set (``dataset.json`` and
every file it lists, in order), so a manifest can be checked against the data it was chosen from.
"""

from __future__ import annotations

import os

from pydantic import Field, model_validator

from proxyhpo.config.base import Record
from proxyhpo.errors import ConfigError

__all__ = ["StudyData", "ProxyDataManifest"]


class StudyData(Record):
    """The validated data of a study and its three disjoint sets: search-train, search-validation, internal test.

    Attributes:
        dataset, external: data set locations as configured (folder, dataset.json or s3://).
        dataset_sha256, external_sha256: fingerprints of the whole data sets that were validated.
        modality: ``CT`` or ``MR`` (the intensity handling of the recipe follows it).
        labels: label values and their names, from ``dataset.json``.
        holdout_ids: the untouched internal test set: no search, selection, early stopping or checkpoint
            choice reads them; the final model is tested on them once.
        search_ids: every other case; the search draws its proxy or full data from these.
        search_train_ids, search_val_ids: the split of ``search_ids`` that the "all data" search and the
            final model train and validate on (``data.search_val_fraction``).
        external_ids: the external set's cases (testing only).
    """

    WRITTEN_BY = "the study's prepare step (proxyhpo run)"

    dataset: str
    dataset_sha256: str
    external: str | None = None
    external_sha256: str | None = None
    modality: str
    labels: dict[int, str]
    holdout_ids: tuple[str, ...]
    search_ids: tuple[str, ...]
    search_train_ids: tuple[str, ...]
    search_val_ids: tuple[str, ...]
    external_ids: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _three_disjoint_sets(self) -> StudyData:
        if sorted((*self.search_train_ids, *self.search_val_ids)) != sorted(self.search_ids):
            raise ValueError("search_train_ids and search_val_ids must split search_ids exactly")
        if set(self.search_ids) & set(self.holdout_ids):
            raise ValueError("search_ids and holdout_ids must be disjoint: the held-out cases are the untouched test set")
        return self


class ProxyDataManifest(Record):
    """The search data chosen by the selection stage, with its train/validation split.

    The selection owns both the choice and the split: training reads ``train_ids`` and ``val_ids`` and
    never splits again.

    Attributes:
        method: the selection method (``mi``, ``ncc``, ``mi+labelcrop``, ``ncc+labelcrop``, ``random``),
            or ``full``: the "all data" setting, training and validating on the study's search-train and
            search-validation cases (:class:`StudyData`); never on the held-out test cases.
        budget: number of cases chosen.
        seed: seed of a random selection.
        dataset: the data set's location as given (folder, dataset.json or s3:// URL).
        dataset_sha256: fingerprint of the whole data set the cases were chosen from.
        case_ids: the chosen cases, least similar first.
        cases: their ``{"image", "label"}`` entries as written in ``dataset.json`` (relative to it).
        scores: their mean similarity (None for ``random`` and ``full``).
        train_ids, val_ids: the search's split of ``case_ids``, in the order of ``case_ids``.
        selection_seconds: device time the selection took (similarities and ranking): a proxy search's
            cost includes it; 0 for a random draw or all data.
        selection_device: where the selection ran (``cpu`` or ``cuda``).
    """

    WRITTEN_BY = "proxyhpo select, or the study's select step"

    method: str
    budget: int = Field(ge=1)
    seed: int
    dataset: str
    dataset_sha256: str
    case_ids: tuple[str, ...]
    cases: tuple[dict[str, str], ...]
    scores: tuple[float | None, ...]
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    selection_seconds: float = Field(0.0, ge=0.0)
    selection_device: str = "cpu"

    @model_validator(mode="after")
    def _split_covers_the_cases(self) -> ProxyDataManifest:
        if not len(self.case_ids) == len(self.cases) == len(self.scores):
            raise ValueError(f"case_ids, cases and scores must have one entry per case, got {len(self.case_ids)}, {len(self.cases)}, {len(self.scores)}")
        if sorted((*self.train_ids, *self.val_ids)) != sorted(self.case_ids):
            raise ValueError("train_ids and val_ids must split case_ids exactly")
        return self

    def check_against(self, data: StudyData, source: str | os.PathLike[str] = "manifest") -> None:
        """Check that this manifest was chosen from ``data``: same fingerprint, search cases only.

        Raises:
            ConfigError: when the fingerprints differ or a chosen case is not a search case.
        """
        if self.dataset_sha256 != data.dataset_sha256:
            raise ConfigError(
                source,
                f"was chosen from data set {self.dataset_sha256[:12]}, but the study's data are {data.dataset_sha256[:12]} ({data.dataset})",
                "the data set changed since the selection: run the study again so that both stages see the same data",
            )
        # the held-out cases are the untouched test set: a search that reads them, to train or to validate, is refused
        leaked = sorted(set(self.case_ids) & set(data.holdout_ids))
        if leaked:
            raise ConfigError(
                source,
                f"reads held-out test cases {leaked[:5]} in its search",
                "select from the search cases only: the held-out cases test the final model and nothing else",
            )
        outside = sorted(set(self.case_ids) - set(data.search_ids))
        if outside:
            raise ConfigError(source, f"chose cases outside the study's search cases: {outside[:5]}", "select from the search cases only")
