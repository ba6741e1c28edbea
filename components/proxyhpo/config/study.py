"""The study config: what a user writes in ``examples/*.yaml`` and ``proxyhpo run CONFIG`` reads.

Unknown keys are rejected: a misspelt key is an error naming the key and the file, never silently
ignored. A study survives its own JSON round trip (every KFP task re-reads it from JSON).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_serializer, model_validator

from proxyhpo.config.base import MAX_BATCH, MAX_CASES, MAX_EPOCHS, MAX_GPUS, MAX_SEED, MAX_SIMILARITY_PATCH, Record, StrictModel, brief, load_config, parse_config
from proxyhpo.config.controller import ControllerConfig
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.config.nas import NasConfig
from proxyhpo.config.network import check_patch_size
from proxyhpo.config.recipe import Recipe, resolve_recipe
from proxyhpo.config.search_space import Categorical, SearchSpace, default_search_space
from proxyhpo.config.selection import SelectionMethod, method_crop, method_metric
from proxyhpo.config.studies import SEARCH_ARMS, StudiesConfig, arm_levers, arm_seed
from proxyhpo.config.trial import HyperParameters
from proxyhpo.errors import ConfigError
from proxyhpo.names import Name, PathText
from proxyhpo.registry import NETWORK_FAMILIES, SEARCH_STRATEGIES

__all__ = [
    "SyntheticDataConfig",
    "DataConfig",
    "SimilarityConfig",
    "SelectionConfig",
    "SearchConfig",
    "TrialSettings",
    "FinalConfig",
    "ResourcesConfig",
    "StudyConfig",
    "PipelineShape",
    "StudyRun",
    "load_study",
    "study_from_json",
]



class SyntheticDataConfig(StrictModel):
    """Generate a synthetic phantom data set when the data set folder does not exist yet."""

    task: Literal["spleen", "prostate", "brain"] = "spleen"
    cases: int = Field(12, ge=2, le=MAX_CASES, description="number of training cases")
    size: int = Field(64, ge=32, le=512, description="in-plane matrix size of the phantoms")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    external_cases: int = Field(6, ge=0, le=MAX_CASES, description="cases of the shifted external domain (0: none)")


class DataConfig(StrictModel):
    """The data set a study runs on.

    Attributes:
        dataset: MSD folder or its dataset.json, local or s3://.
        external: optional MSD data set of another domain, used only for testing (external validation).
        synthetic: when set and ``dataset`` does not exist, phantoms are generated there first.
        merge_labels: label values mapped to others before training (the prostate task merges 2 into 1).
        holdout_fraction: share of the cases held out of the search as the untouched internal test set:
            no search, selection, early stopping or checkpoint choice reads them; only the final model is
            tested on them once.
        search_val_fraction: share of the other (search) cases that validate the "all data" search
            (``training.data: full``) and choose the final model's checkpoint; the rest train both.
        val_fraction: share of the proxy data set used for validation Dice during the search; the paper
            splits proxy data 50/50.
        split_seed: seed of the three splits.
    """

    dataset: PathText
    external: PathText | None = None
    synthetic: SyntheticDataConfig | None = None
    merge_labels: dict[int, int] = Field(default_factory=dict)
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    search_val_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0, le=MAX_SEED)

    def local_locations(self) -> dict[str, str]:
        """The configured data sets that are local paths, by key (``data.dataset``, ``data.external``)."""
        keys = {"data.dataset": self.dataset, "data.external": self.external}
        return {key: location for key, location in keys.items() if location is not None and not location.startswith("s3://")}

    def with_absolute_paths(self) -> DataConfig:
        """A copy whose local data paths are absolute (against the current folder), so every task process agrees on them."""
        update = {key.removeprefix("data."): str(Path(location).absolute()) for key, location in self.local_locations().items()}
        return self.model_copy(update=update)


class SimilarityConfig(StrictModel):
    """How the similarity engines compare volumes (paper section 3).

    Which metric, and whether volumes are cropped to their label first, is the selection method's
    choice (:attr:`SelectionConfig.metric`, :attr:`SelectionConfig.crop`), so it is not repeated here.
    """

    patch: int = Field(96, ge=8, le=MAX_SIMILARITY_PATCH, description="side of the cubic patch every volume is resampled to")
    bins: int = Field(32, ge=2, le=1024, description="histogram bins for mutual information")
    window: int = Field(9, ge=3, le=MAX_SIMILARITY_PATCH, description="local window side for NCC")
    margin: int = Field(8, ge=0, le=MAX_SIMILARITY_PATCH, description="voxels kept around the label's bounding box with crop=label")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    include_self: bool = Field(True, description="a case's importance includes its self-pair (the paper's); False: other cases only")


class SelectionConfig(StrictModel):
    """Which cases form the proxy data set: the ``budget`` least similar by ``method``, or a seeded random draw."""

    method: SelectionMethod = "mi+labelcrop"
    budget: int = Field(8, ge=2, le=MAX_CASES)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @property
    def metric(self) -> str | None:
        """The similarity metric the method uses (None for random)."""
        return method_metric(self.method)

    @property
    def crop(self) -> Literal["label", "none"]:
        """Whether the method crops to the label's region of interest."""
        return method_crop(self.method)  # type: ignore[return-value]


class SearchConfig(StrictModel):
    """The search: R rounds of M proposals from a search strategy (Optuna's TPE by default, chosen by the tabular benchmark).

    Rounds are unrolled when the pipeline is compiled, so ``rounds`` fixes the pipeline's shape.

    Attributes:
        strategy: the search strategy, one registered in :data:`proxyhpo.registry.SEARCH_STRATEGIES`
            (Optuna's ``tpe`` by default: on the tabular benchmark's judging table no other strategy was at least
            as good at every budget of 10 to 60 trials (issue 19, ``bench/results/search-table-spleen.json``);
            ``reinforce`` (the paper's controller, our settings), ``reinforce-paper`` (the paper's settings),
            ``random``, ``tpe+asha``, ``tpe+hyperband`` (which needs ``early_stopping.schedule: hyperband``), ``gp`` and
            ``cmaes``); it is seeded with ``controller.seed``, and with ``early_stopping`` set, the packs' early
            stopping (successive halving, or Hyperband's brackets of it) is its pruner.
        trust_gate: run the trust check (``studies.trust``) before the search and stop when the proxy is
            not trusted; fixed when the pipeline is compiled.
        early_stopping: successive halving inside packs (see :class:`EarlyStoppingConfig`): the worse trials
            stop at rungs of ``min_epochs * reduction_factor**k`` epochs, and a round's proposals queue on its
            GPUs, ``training.pack_size`` at a time, a stopped trial's slot taking the next; the controller then
            learns from ranks (``controller.reward: auto``). None (the paper's): every trial trains all epochs.
    """

    strategy: Annotated[str, AfterValidator(SEARCH_STRATEGIES.check)] = "tpe"
    space: SearchSpace = Field(default_factory=default_search_space)
    rounds: int = Field(3, ge=1, le=100)
    proposals_per_round: int = Field(4, ge=1, le=256)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    trust_gate: bool = False
    early_stopping: EarlyStoppingConfig | None = None
    max_failed_packs: int | None = Field(
        None, ge=0, description="packs of a round that may fail (crash, or leave no results) before the round fails the run; their trials count as failed; null: any"
    )


class TrialSettings(StrictModel):
    """How each searched trial is trained: proxy or full data, proxy or full network, schedule, recipe."""

    data: Literal["proxy", "full"] = "proxy"
    network: Literal["proxy", "full"] = "proxy"
    proxy_levels: int = Field(3, ge=3, le=5, description="levels of the proxy U-Net (5, 4 or 3)")
    network_family: Annotated[str, AfterValidator(NETWORK_FAMILIES.check)] = Field("unet", description="the network family of the search's and the final model's networks")
    recipe: str | Recipe = "demo"
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    val_every: int = Field(1, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(2, ge=1, le=MAX_BATCH)
    pack_size: Annotated[int, Field(ge=1, le=MAX_BATCH)] | Literal["auto"] = "auto"
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="before")
    @classmethod
    def _network_as_a_mapping(cls, data: Any) -> Any:
        """``network: {family: dynunet, kind: proxy, levels: 3}`` is another spelling of ``network_family``, ``network``
        and ``proxy_levels`` (the one the issues use); each setting is given once."""
        if not isinstance(data, dict) or not isinstance(data.get("network"), dict):
            return data
        given, data = dict(data["network"]), dict(data)
        unknown = sorted(set(given) - {"family", "kind", "levels"})
        if unknown:
            raise ValueError(f"network has no key {unknown[0]!r}: it takes family, kind (proxy or full) and levels")
        for key, flat in (("family", "network_family"), ("levels", "proxy_levels")):
            if key in given:
                if flat in data:
                    raise ValueError(f"network.{key} and {flat} both given: keep one")
                data[flat] = given[key]
        data["network"] = given.get("kind", "proxy")
        return data


class FinalConfig(StrictModel):
    """The final model: the best proposal trained on all training data with the full network."""

    network: Literal["proxy", "full"] = "full"
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS)
    seed: int = Field(0, ge=0, le=MAX_SEED)


_K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_DNS_1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # a PersistentVolumeClaim's name (at most 63 characters)


def _pvc_name(name: str) -> str:
    if len(name) > 63 or not re.fullmatch(_DNS_1123_LABEL, name):
        raise ValueError(f"{name!r} is no PersistentVolumeClaim name: give a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)")
    return name


#: Top folders the data cache may not be mounted at or in: what a task pod already mounts (KFP's launcher at
#: /kfp-launcher, the staging volume, the CA bundle under /etc: a duplicate mount path makes the pod invalid) and the
#: image's own folders (a read-write shared claim over /tmp would collect every task's temporary files).
_TAKEN_TOP_FOLDERS = frozenset({"staging", "kfp-launcher", "bin", "boot", "dev", "etc", "lib", "lib64", "opt", "proc", "root",
                                "run", "sbin", "sys", "tmp", "usr", "var", "workspace"})


def _cache_mount_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path.startswith("/") or "\x00" in path or ".." in parts or len(parts) < 2 or parts[1] in _TAKEN_TOP_FOLDERS:
        raise ValueError(
            f"{path!r} is no mount path for the data cache: give an absolute folder of its own, e.g. /data-cache or /mnt/data-cache"
            " (not /, the staging volume, KFP's launcher, or a folder of the image)"
        )
    return path


class Toleration(StrictModel):
    """A Kubernetes toleration of the GPU pods (AKS: ``sku=gpu``; GKE and the GPU Operator: ``nvidia.com/gpu``)."""

    key: str = Field(min_length=1)
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] = "NoSchedule"


class NodeRequirement(StrictModel):
    """One required node affinity term's expression (``key`` ``operator`` ``values``): e.g. GPU product In [A100-SXM4-80GB]."""

    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"] = "In"
    values: list[str] = Field(default_factory=list)


class DataCache(StrictModel):
    """A read-only shared data cache: a PersistentVolumeClaim (e.g. ReadOnlyMany, filled once by an admin) mounted into
    every task at ``path``, holding data set files at the same relative paths as under the data root (PROXYHPO_DATASETS_ROOT).
    A task copies a file from it when its size and checksum match the object's, and downloads the others from S3 (an
    object that records no checksum included)."""

    pvc: Annotated[str, AfterValidator(_pvc_name)] = Field(description="the PersistentVolumeClaim in the run namespace")
    path: Annotated[str, AfterValidator(_cache_mount_path)] = Field("/data-cache", description="where the tasks mount it (absolute)")


class ScratchVolume(StrictModel):
    """A generic ephemeral volume (a PVC per pod, of size ``resources.scratch``, that the scheduler must bind) to stage
    into instead of the emptyDir: the disk is reserved before the pod starts, never shared with the node's other pods."""

    storage_class: str = Field(min_length=1, max_length=253, pattern=_K8S_NAME, description="the StorageClass its PVC is provisioned from")


class ResourcesConfig(StrictModel):
    """What each pod asks the cluster for, and where GPU pods may run (ignored by the local runner; fixed at compile time)."""

    gpus: int = Field(1, ge=1, le=MAX_GPUS, description="packs trained at once: the ParallelFor parallelism, one GPU each")
    gpu_type: str = "nvidia.com/gpu"
    cpu: str = "4"
    memory: str = "16Gi"
    scratch: str = Field("20Gi", pattern=_K8S_QUANTITY, description="size limit of each task pod's staging folder (an emptyDir): data set and cache")
    node_selector: dict[str, str] = Field(default_factory=dict, description="labels a GPU pod's node must carry (e.g. a node pool)")
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu")], description="taints of the GPU nodes the GPU pods tolerate, whatever gpu_type is"
    )
    node_affinity: list[NodeRequirement] = Field(default_factory=list, description="required node affinity of the GPU pods (KFP 2.14+)")
    timeout_hours: float | None = Field(48.0, gt=0, description="a GPU pod running longer is stopped (activeDeadlineSeconds), its GPU freed; null: none")
    image_pull_secrets: list[Annotated[str, Field(pattern=_K8S_NAME)]] = Field(default_factory=list, description="Secrets for a private registry")
    data_cache: DataCache | None = Field(None, description="a read-only PVC the tasks take data set files from before S3 (KFP cannot mount it read-only)")
    scratch_volume: ScratchVolume | None = Field(None, description="stage into a generic ephemeral volume of size scratch instead of the emptyDir")

    @model_serializer(mode="wrap")
    def _unset_volumes_left_out(self, handler: Any) -> dict[str, Any]:
        # unset, they are not written: the studies and pipelines compiled without them stay as they were
        dumped = handler(self)
        for key in _OPTIONAL_VOLUMES:
            if dumped.get(key) is None:
                dumped.pop(key, None)
        return dumped


#: The resources settings left out of a study's JSON while unset.
_OPTIONAL_VOLUMES = ("data_cache", "scratch_volume")


class StudyConfig(StrictModel):
    """A whole study, as written in ``examples/*.yaml``.

    Example:
        >>> load_study("examples/demo.yaml").name  # doctest: +SKIP
        'demo-spleen'
    """

    name: Name = Field(min_length=1, description="the MLflow experiment and the Kubeflow experiment")
    description: str = ""
    data: DataConfig
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    training: TrialSettings = Field(default_factory=TrialSettings)
    final: FinalConfig = Field(default_factory=FinalConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    studies: StudiesConfig = Field(default_factory=StudiesConfig)
    nas: NasConfig = Field(default_factory=NasConfig)

    @property
    def shape(self) -> PipelineShape:
        """What a compiled HPO pipeline of this study fixes: its rounds and its parallelism."""
        return PipelineShape(rounds=self.search.rounds, gpus=self.resources.gpus)

    def with_compiled_settings(self, shape: PipelineShape) -> PipelineShape:
        """``shape`` with the other settings compiling writes into the tasks (``fixed``), which the first task checks too."""
        return shape.model_copy(update={"fixed": self._compiled_settings()})

    def _compiled_settings(self) -> dict[str, str]:
        """The settings besides rounds and GPUs that compiling writes into the tasks, each as JSON."""
        resources = self.resources.model_dump(mode="json", exclude={"gpus"})
        settings = {f"resources.{key}": value for key, value in resources.items()}
        settings["search.trust_gate"] = self.search.trust_gate
        return {key: json.dumps(value, sort_keys=True) for key, value in settings.items()}

    def with_data_root(self, root: str) -> StudyConfig:
        """This study with its local data sets moved under ``root`` (``s3://bucket/datasets``), where a cluster's pods read them.

        A local data set keeps its folder's name (``.proxyhpo/data/demo-spleen`` becomes
        ``<root>/demo-spleen``, ``/data/Task09_Spleen`` becomes ``<root>/Task09_Spleen``): push it there with
        ``proxyhpo data push``. Synthetic phantoms are not generated on a cluster: they are pushed too.
        """
        moved = {key.removeprefix("data."): f"{root.rstrip('/')}/{Path(location).name}" for key, location in self.data.local_locations().items()}
        if not moved:
            return self
        data = self.data.model_copy(update={**moved, "synthetic": None})
        return self.model_copy(update={"data": data})

    def run_parameters(self) -> dict[str, str]:
        """The pipeline run parameters a user fills in in the Kubeflow UI, as this study sets them.

        ``study_config`` holds the whole study; ``dataset``, ``external`` (``none`` for no external set)
        and ``study_name`` are fields of their own, and win over the config's (see :func:`study_from_json`).
        """
        return {"dataset": self.data.dataset, "external": self.data.external or "none", "study_name": self.name}

    @property
    def nas_shape(self) -> PipelineShape:
        """What a compiled NAS pipeline fixes: its chained search tasks, folds and arms, and its parallelism."""
        return PipelineShape(rounds=None, gpus=self.resources.gpus, nas=self._nas_layout())

    def _nas_layout(self) -> dict[str, int | str]:
        return {"episodes": self.nas.episodes, "episodes_per_task": self.nas.episodes_per_task, "folds": self.nas.folds, "search_data": self.nas.search_data}

    @property
    def study_shape(self) -> PipelineShape:
        """What a compiled comparison-study pipeline fixes: its parallelism only (its cells fan out at run time)."""
        return PipelineShape(rounds=None, gpus=self.resources.gpus)

    def planned_trials(self, kind: str) -> int:
        """How many search or grid trials pipeline ``kind`` trains (final models, trained after them, not counted)."""
        search = self.search.rounds * self.search.proposals_per_round
        if kind == "hpo":
            return search
        if kind == "automl-comparison":
            return len(self.studies.comparison.arms) * search
        if kind == "nas":  # one search task of episodes per fold and arm
            return self.nas.folds * len(self.nas.arms) * self.nas.tasks
        return self.studies.trial_count(kind)

    def for_search_arm(self, arm: str) -> StudyConfig:
        """This study as the automl comparison's ``arm`` searches: its data and network per :data:`SEARCH_ARMS`.

        The paper's arms keep the study's packing and early stopping. An arm of the lever ladder
        (:data:`~proxyhpo.config.studies.LEVER_ARMS`) sets them by its levers
        (:func:`~proxyhpo.config.studies.arm_levers`): without ``packing`` one trial per pack
        (``training.pack_size: 1``), with it the study's pack size; without ``early-stopping`` none, with it
        the study's ``search.early_stopping``, else :meth:`default_early_stopping`. The controller's
        ``reward: auto`` then follows the arm's early stopping. Unless ``studies.comparison.paired``, the
        arm's controller and trial seeds are its own (:func:`~proxyhpo.config.studies.arm_seed`), so arms
        are independent; the final models keep ``final.seed`` (each repeat one initialisation, shared by the arms).

        Raises:
            ValueError: for an arm that is not one of :data:`SEARCH_ARMS`.

        Example:
            >>> study.for_search_arm("full-search").training.pack_size  # doctest: +SKIP
            1
        """
        if arm not in SEARCH_ARMS:
            raise ValueError(f"arm must be one of {', '.join(SEARCH_ARMS)}, got {arm!r}")
        data, network = SEARCH_ARMS[arm]
        document = self.model_dump()
        document["training"].update(data="full" if data == "full" else "proxy", network=network)
        if data == "random":
            document["selection"]["method"] = "random"
        levers = arm_levers(arm)
        if levers is not None:
            if "packing" not in levers:
                document["training"]["pack_size"] = 1
            stopping = (self.search.early_stopping or self.default_early_stopping()) if "early-stopping" in levers else None
            document["search"]["early_stopping"] = stopping.model_dump() if stopping is not None else None
        if not self.studies.comparison.paired:
            document["search"]["controller"]["seed"] = arm_seed(self.search.controller.seed, arm)
            document["training"]["seed"] = arm_seed(self.training.seed, arm)
        return StudyConfig.model_validate(document)

    def default_early_stopping(self) -> EarlyStoppingConfig | None:
        """The early stopping a ladder arm uses when the study sets none: η = 3, first rung at a sixth of the epochs.

        None when the trials train a single epoch (nothing to stop). Example: 30 epochs give rungs at 5 and 15.
        """
        if self.training.epochs < 2:
            return None
        return EarlyStoppingConfig(reduction_factor=3, min_epochs=max(1, self.training.epochs // 6))

    def check_compiled_shape(self, compiled: PipelineShape, source: str = "study_config") -> None:
        """Check that this study fits the pipeline compiled for ``compiled`` (a config edited in the UI may not).

        Raises:
            ConfigError: naming the first setting that differs and the pipeline to compile instead.
        """
        settings = [("search.rounds", self.search.rounds, compiled.rounds), ("resources.gpus", self.resources.gpus, compiled.gpus)]
        if compiled.nas:
            layout = self._nas_layout()
            settings += [(f"nas.{key}", layout[key], value) for key, value in compiled.nas.items()]
        if compiled.fixed:
            ours = self._compiled_settings()
            settings += [(key, ours.get(key), value) for key, value in compiled.fixed.items()]
            settings += [(key, ours[key], "null") for key in sorted(ours.keys() - compiled.fixed.keys())]  # set here, unset when compiled
        for key, ours, theirs in settings:
            if theirs is not None and ours != theirs:
                raise ConfigError(
                    source,
                    f"{key} is {ours} but this pipeline was compiled for {theirs}: a pipeline's rounds, tasks and parallelism are fixed at compile time",
                    f"compile the pipeline for this study (`proxyhpo compile STUDY.yaml`) and run that one, or set {key} back to {theirs}",
                )

    @model_validator(mode="after")
    def _rungs_below_the_epochs(self) -> StudyConfig:
        stopping = self.search.early_stopping
        if stopping is not None and stopping.min_epochs >= self.training.epochs:
            raise ValueError(
                f"search.early_stopping.min_epochs ({stopping.min_epochs}) must be below training.epochs ({self.training.epochs}): "
                "no trial would ever be stopped; lower it, or remove search.early_stopping"
            )
        return self

    @model_validator(mode="after")
    def _space_is_trainable(self) -> StudyConfig:
        known = HyperParameters.model_fields
        for name, distribution in self.search.space.items():
            if name not in known:
                raise ValueError(f"search.space.{name} is not a hyper-parameter the trainer knows; search only {sorted(known)}")
            values = distribution.choices if isinstance(distribution, Categorical) else (distribution.low, distribution.high)
            for value in values:
                try:
                    HyperParameters.model_validate({"lr": 1e-3, name: value})
                except ValidationError as exc:
                    raise ValueError(f"search.space.{name} allows {value!r}, which training rejects: {exc.errors()[0]['msg']}") from None
        return self

    @model_validator(mode="after")
    def _patches_suit_networks(self) -> StudyConfig:
        try:
            recipe = resolve_recipe(self.training.recipe)
        except ConfigError as exc:
            raise ValueError(f"training.recipe: {exc.problem}; {exc.fix}") from None
        networks = {
            "training.network": (self.training.network, self.training.proxy_levels),
            "final.network": (self.final.network, self.training.proxy_levels),
        }
        for key, (kind, levels) in networks.items():
            levels = 5 if kind == "full" else levels
            for what, size in (("patch_size", recipe.patch_size), ("roi_size", recipe.roi_size)):
                try:
                    check_patch_size(size, levels, what=f"training.recipe.{what}", family=self.training.network_family)
                except ConfigError as exc:
                    raise ValueError(f"{exc.problem} (for {key}: {kind}); {exc.fix}") from None
        return self


class PipelineShape(StrictModel):
    """The part of a study a pipeline fixes when it is compiled (KFP v2 has no while-loop).

    Attributes:
        rounds: search rounds, unrolled into the pipeline (None: the pipeline has no rounds).
        gpus: packs trained at once, the ``ParallelFor`` parallelism.
        nas: the NAS pipeline's unrolled layout (episodes, episodes per task, folds, search data); None
            for the other pipelines.
    """

    rounds: int | None = Field(ge=1)
    gpus: int = Field(ge=1)
    nas: dict[str, int | str] | None = None
    #: Other settings compiled into the tasks (pod placement, scratch, the trust gate's tasks), by key, as JSON text.
    fixed: dict[str, str] | None = None


class StudyRun(Record):
    """The study as a pipeline run resolved it, and its MLflow parent run: what the first task hands every other.

    The run's study is its ``study_config`` parameter with the run's own data set, external set and name
    (the fields a user fills in when launching from the Kubeflow UI), validated once. It travels as a
    small artifact, not a parameter: kfp 2.17's local runner replaces every task-output parameter
    entering a ``ParallelFor`` with the loop item.
    """

    WRITTEN_BY = "the study's open step"

    experiment: str
    run_id: str = Field(min_length=1)
    study: StudyConfig


def study_from_json(text: str, source: str = "study_config", *, dataset: str = "", external: str = "", name: str = "") -> StudyConfig:
    """The study config a pipeline run receives as its JSON parameter, with the run's own data and name.

    Args:
        text: the ``study_config`` parameter.
        source: named in errors.
        dataset, external, name: the run's ``dataset``, ``external`` and ``study_name`` parameters; an
            empty one keeps the study config's value (``external`` may be ``none`` to drop the external set).

    Raises:
        ConfigError: naming ``source`` and the key when the JSON is malformed or does not validate.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, f"is not valid JSON ({brief(exc)})", "pass the study config as JSON, as `proxyhpo run` does") from exc
    if isinstance(document, dict):
        if name:
            document["name"] = name
        data = document.get("data")
        if isinstance(data, dict) and (dataset or external):
            if dataset:
                data["dataset"] = dataset
            if external:
                data["external"] = None if external.lower() == "none" else external
            if any(location.startswith("s3://") for location in (dataset, external)):
                data["synthetic"] = None  # phantoms are generated on a local disk; data in the object store are given
    return parse_config(StudyConfig, document, source)


def load_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Load a study config; relative data paths are resolved against the current directory.

    Raises:
        ConfigError: naming the key and the file for the first invalid, missing or unknown key.
    """
    return load_config(StudyConfig, path)
