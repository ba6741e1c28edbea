"""The NAS search of RONASMIS: plan the space and the folds, then train the shared supernet episode by episode.

Each episode the controller samples ``children_per_episode`` architectures; each child (a path through
the one supernet) trains the shared weights for ``child_epochs`` epochs and is rewarded with its
patient-wise Dice on the fold's search-validation cases after thresholding at 0.5; then the controller
takes one REINFORCE step. The fold's test part and the study's held-out cases are read by no search
(nested cross-validation, :data:`~proxyhpo.config.nas.NAS_PROTOCOL`).
The supernet is never re-initialised: the final architecture, the controller's most likely one, is used
with the weights it shares, without retraining (:mod:`proxyhpo.training.nas_export`).

The pipeline runs the episodes of one fold as a chain of tasks (:meth:`NasConfig.task_episodes`), each
handing the supernet, its Adam state and the controller to the next in one state file. A task also
checkpoints after every episode under the checkpoint root, so a preempted pod resumes from its last
finished episode. Patches are drawn from generators seeded by (seed, fold, episode, child), so a resumed
search samples exactly the patches an uninterrupted one would: no random state needs saving besides
the controller's own.

Volumes are handled as ``(C, D, H, W)`` with ``D`` the axial slice axis (MONAI's RAS arrays are
``(C, X, Y, Z)``: they are permuted once, when cached), matching the search space's ``(D, H, W)``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceLoss
from monai.transforms import Compose, FgBgToIndicesd, RandCropByPosNegLabeld, RandFlipd, SpatialPadd

from proxyhpo import paths, storage
from proxyhpo.config import DataItem, Recipe, StudyConfig, StudyData
from proxyhpo.config.nas import NasFold, NasPlan, check_protocol, nested_folds
from proxyhpo.config.nas_controller import EpisodeStats
from proxyhpo.config.nas_space import Architecture, NasSearchSpace
from proxyhpo.errors import DataError, ProxyHPOError
from proxyhpo.tracking import names

__all__ = [
    "nas_recipe",
    "load_nas_volumes",
    "plan_nas",
    "init_search",
    "search_episodes",
    "read_search_state",
    "train_child",
    "validate_child",
    "SearchState",
]

log = logging.getLogger(__name__)

STATE_VERSION = 1
_FG, _BG = "label_fg_indices", "label_bg_indices"  # FgBgToIndicesd's keys for "label"
#: The reward of a child that ran out of memory or diverged: the Dice of an empty prediction. Resource
#: optimisation means a network that does not fit is a bad network, so the controller learns to avoid it
#: (a ``None`` reward would leave it out of the gradient, and the controller would keep proposing it).
FAILED_CHILD_REWARD = 0.0
#: The axial plane's left-right axis among the spatial axes of a ``(C, D, H, W)`` volume (H is RAS x).
AXIAL_HORIZONTAL_AXIS = 1


def nas_recipe(study: StudyConfig) -> Recipe:
    """The study's preprocessing for NAS: its recipe's spacing, intensity and channel, with no padding (whole images)."""
    from proxyhpo.training.study_trials import study_recipe

    return study_recipe(study).model_copy(update={"pad": False})


def nas_out_channels(study: StudyConfig, data: StudyData) -> int:
    """The supernet's output width from the data: 1 sigmoid channel for one foreground class (the paper's),
    otherwise one softmax channel per class, background included (dataset.json's ``labels`` after the merge)."""
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.data.prepare import classes_after_merge

    dataset = load_dataset(data.dataset)
    classes = len(classes_after_merge(dataset.labels, nas_recipe(study).label_merge, source=str(dataset.dataset_json), strict=False))
    return 1 if classes == 2 else classes


def _to_dhw(tensor: torch.Tensor) -> torch.Tensor:
    # MONAI's RAS array (C, X, Y, Z) -> (C, Z, X, Y): axial slices first, as the search space counts depth
    return tensor.permute(0, 3, 1, 2).contiguous()


def load_nas_volumes(
    study: StudyConfig, data: StudyData, case_ids: Sequence[str], device: torch.device | str = "cpu", *, pad_to: Sequence[int] | None = None, what: str = "cases"
) -> list[dict[str, Any]]:
    """Preprocess ``case_ids`` once and return them as ``(C, D, H, W)`` image and ``(1, D, H, W)`` label tensors.

    Args:
        study: the study (its recipe and label merge).
        data: the prepared data set.
        case_ids: the cases, in order.
        device: where the tensors are put.
        pad_to: for training volumes, pad to at least this ``(D, H, W)`` (the largest patch) and add the
            foreground/background indices the patch sampler draws from.
        what: names the list in errors.

    Raises:
        DataError: naming the file of a case that cannot be read or preprocessed.
    """
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.data.prepare import classes_after_merge, entries_for
    from proxyhpo.training.data import cache_volumes

    dataset = load_dataset(data.dataset)
    items = [DataItem(**entry) for entry in entries_for(dataset, case_ids)]
    classes = len(classes_after_merge(dataset.labels, nas_recipe(study).label_merge, source=str(dataset.dataset_json), strict=False))
    cached = cache_volumes(items, nas_recipe(study), "cpu", training=False, what=what, num_classes=classes)
    extra: list[Any] = []
    if pad_to is not None:
        extra = [SpatialPadd(keys=("image", "label"), spatial_size=tuple(pad_to)), FgBgToIndicesd(keys="label")]
    volumes = []
    for case_id, volume in zip(case_ids, cached, strict=True):
        item: dict[str, Any] = {"image": _to_dhw(volume["image"]), "label": _to_dhw(volume["label"])}
        if pad_to is not None:
            item = Compose(extra)(item)
        item = {key: (value.to(device) if isinstance(value, torch.Tensor) and key in ("image", "label") else value) for key, value in item.items()}
        volumes.append({"case_id": case_id, **item})
    return volumes


def plan_nas(study: StudyConfig, data: StudyData, *, out: str | os.PathLike[str] | None = None, progress: bool = False) -> NasPlan:
    """Resolve the search space from the search cases' preprocessed shapes, cut the nested folds, choose proxy data sets.

    Args:
        study: the study (its ``nas`` section, recipe, selection and similarity settings).
        data: the prepared data set: folds are cut from its search cases; its held-out cases (the internal
            test set) test every fold's final network and are read by no search.
        out: where the plan is written (nothing is written when None).
        progress: show progress bars while similarities are computed.

    Raises:
        ConfigError: when the config's search would read a fold's test part (:func:`check_protocol`).
        DataError: when there are fewer search cases than twice the folds, or a proxy budget exceeds a
            fold's search-train cases.
    """
    nas = study.nas
    search_ids = tuple(data.search_ids)
    if len(search_ids) < 2 * nas.folds:
        raise DataError(
            data.dataset,
            f"offers {len(search_ids)} search cases, too few for {nas.folds} folds of at least 2 cases each",
            f"set nas.folds to at most {max(len(search_ids) // 2, 1)}, or use more cases",
        )
    check_protocol(nas, len(search_ids))
    volumes = load_nas_volumes(study, data, search_ids, what="search cases")
    shapes = [tuple(int(side) for side in volume["image"].shape[1:]) for volume in volumes]
    space = NasSearchSpace.from_shapes(nas.space, shapes, in_channels=int(volumes[0]["image"].shape[0]), out_channels=nas_out_channels(study, data))
    folds = []
    for index, (train_ids, validation_ids, test_ids) in enumerate(nested_folds(search_ids, nas.folds, nas.validation_fraction, study.data.split_seed)):
        proxy_ids: tuple[str, ...] = ()
        seconds = 0.0
        if "proxy" in nas.arms:
            from proxyhpo.data.msd import load_dataset
            from proxyhpo.similarity.proxy_data import select_proxy_data, study_channel

            # the proxy data set is chosen among the search-train cases only: its similarities read no reward or test case
            manifest = select_proxy_data(
                load_dataset(data.dataset), study.selection, study.similarity, candidates=train_ids, fingerprint=data.dataset_sha256, progress=progress,
                channel=study_channel(study),
            )
            proxy_ids, seconds = tuple(manifest.case_ids), manifest.selection_seconds
        folds.append(
            NasFold(fold=index, search_train_ids=train_ids, search_validation_ids=validation_ids, test_ids=test_ids, proxy_ids=proxy_ids, proxy_selection_seconds=seconds)
        )
    plan = NasPlan(space=space, folds=tuple(folds), internal_test_ids=tuple(data.holdout_ids), proxy_method=study.selection.method if "proxy" in nas.arms else "")
    if out is not None:
        plan.write(out)
    return plan


class SearchState:
    """Everything a search hands from one task to the next: the supernet, its Adam state and the controller.

    Attributes:
        supernet: the shared weights (:class:`~proxyhpo.networks.Supernet`).
        optimizer: Adam over every shared weight; a child updates only the weights its path uses.
        controller: the :class:`~proxyhpo.controller.enas.EnasController`.
        next_episode: the first episode not run yet.
        wall_seconds: search time spent so far, over every task.
        device_type: ``cuda`` or ``cpu``, where that time was spent.
        identity: the study, plan, fold and arm the state belongs to; a state of another search is refused.
        failed_children: children so far that ran out of memory or diverged (rewarded
            :data:`FAILED_CHILD_REWARD`, so the controller's statistics cannot tell them apart).
    """

    def __init__(
        self, supernet: Any, optimizer: torch.optim.Optimizer, controller: Any, *, next_episode: int, wall_seconds: float, identity: str, device_type: str,
        failed_children: int = 0,
    ) -> None:
        self.supernet = supernet
        self.optimizer = optimizer
        self.controller = controller
        self.next_episode = next_episode
        self.wall_seconds = wall_seconds
        self.identity = identity
        self.device_type = device_type
        self.failed_children = failed_children

    def to_bytes(self) -> bytes:
        """The state as one ``torch.save`` payload (controller file included)."""
        with tempfile.TemporaryDirectory() as folder:
            controller_file = self.controller.save(Path(folder) / "controller.zip")
            controller_bytes = Path(controller_file).read_bytes()
        buffer = io.BytesIO()
        torch.save(
            {
                "version": STATE_VERSION,
                "identity": self.identity,
                "supernet": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "controller": controller_bytes,
                "next_episode": self.next_episode,
                "wall_seconds": self.wall_seconds,
                "device_type": self.device_type,
                "failed_children": self.failed_children,
            },
            buffer,
        )
        return buffer.getvalue()

    def write(self, location: str | os.PathLike[str]) -> None:
        """Write the state to a local path or an ``s3://`` URL, atomically."""
        storage.write_bytes(location, self.to_bytes()) if storage.is_s3_url(location) else storage.atomic_write_bytes(location, self.to_bytes())


def search_identity(study: StudyConfig, plan: NasPlan, fold: int, arm: str) -> str:
    """A hash of what a search computes: the study's NAS and data settings, the plan, the fold and the arm."""
    text = "\n".join([study.nas.model_dump_json(), study.data.model_dump_json(), nas_recipe(study).model_dump_json(), plan.model_dump_json(), str(fold), arm])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _new_state(study: StudyConfig, plan: NasPlan, fold: int, arm: str, device: torch.device) -> SearchState:
    from proxyhpo.controller.enas import EnasController
    from proxyhpo.networks import Supernet

    torch.manual_seed(study.nas.child.seed + 1000 * fold)  # the supernet's initial weights
    supernet = Supernet(plan.space).to(device)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=study.nas.child.lr, weight_decay=study.nas.child.weight_decay)
    controller_config = study.nas.controller.model_copy(update={"seed": study.nas.controller.seed + 1000 * fold})
    controller = EnasController([(decision.kind, len(decision.options)) for decision in plan.space.decisions], controller_config)
    return SearchState(supernet, optimizer, controller, next_episode=0, wall_seconds=0.0, identity=search_identity(study, plan, fold, arm), device_type=device.type)


def read_search_state(location: str | os.PathLike[str], study: StudyConfig, plan: NasPlan, fold: int, arm: str, device: torch.device | str = "cpu") -> SearchState:
    """Read a state written by :meth:`SearchState.write` for this search.

    Raises:
        ProxyHPOError: when the file is not a search state, or belongs to another search.
    """
    from proxyhpo.controller.enas import EnasController
    from proxyhpo.networks import Supernet

    device = torch.device(device)
    raw = storage.read_bytes(location)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises many types
        raise ProxyHPOError(f"{location}: is not a NAS search state ({type(exc).__name__}); fix: rerun the search from its first task") from None
    expected = search_identity(study, plan, fold, arm)
    if payload.get("version") != STATE_VERSION or payload.get("identity") != expected:
        raise ProxyHPOError(f"{location}: is the state of another search (or version); fix: rerun the search from its first task")
    supernet = Supernet(plan.space)
    supernet.load_state_dict(payload["supernet"])
    supernet.to(device)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=study.nas.child.lr, weight_decay=study.nas.child.weight_decay)
    optimizer.load_state_dict(payload["optimizer"])
    with tempfile.TemporaryDirectory() as folder:
        controller_file = Path(folder) / "controller.zip"
        controller_file.write_bytes(payload["controller"])
        controller = EnasController.load(controller_file)
    return SearchState(
        supernet, optimizer, controller, next_episode=int(payload["next_episode"]), wall_seconds=float(payload["wall_seconds"]),
        identity=expected, device_type=str(payload.get("device_type", "cpu")), failed_children=int(payload.get("failed_children", 0)),
    )


def init_search(study: StudyConfig, plan: NasPlan, fold: int, arm: str, *, out: str | os.PathLike[str]) -> Path:
    """Write the initial state of fold ``fold``'s ``arm`` search: a fresh supernet, its Adam state, a fresh controller."""
    _new_state(study, plan, fold, arm, torch.device("cpu")).write(out)
    return Path(out)


def _patch_sampler(arch: Architecture, flip_prob: float, seed: int) -> Compose:
    sampler = Compose(
        [
            RandCropByPosNegLabeld(
                keys=("image", "label"), label_key="label", spatial_size=tuple(arch.patch_size), pos=1.0, neg=1.0, num_samples=1,
                fg_indices_key=_FG, bg_indices_key=_BG,
            ),
            RandFlipd(keys=("image", "label"), prob=flip_prob, spatial_axis=AXIAL_HORIZONTAL_AXIS),
        ]
    )
    sampler.set_random_state(seed=seed % (2**32))
    return sampler


def train_child(
    supernet: Any, optimizer: torch.optim.Optimizer, arch: Architecture, volumes: Sequence[dict[str, Any]], *, epochs: int, batch_size: int, flip_prob: float, seed: int
) -> float:
    """Train the shared weights along ``arch``'s path for ``epochs`` epochs of random patches; return the last epoch's mean loss.

    Unused weights get no gradient and keep their Adam state: gradients are reset to None, not zero.

    Raises:
        FloatingPointError: when the loss is not finite.
    """
    # one output: the paper's sigmoid Dice; several: a softmax over the classes, Dice of every class
    loss_function = DiceLoss(sigmoid=True) if supernet.space.out_channels == 1 else DiceLoss(to_onehot_y=True, softmax=True)
    sampler = _patch_sampler(arch, flip_prob, seed)
    order_rng = np.random.default_rng(seed)
    device = next(supernet.parameters()).device
    supernet.train()
    mean_loss = math.nan
    for _ in range(epochs):
        losses = []
        order = order_rng.permutation(len(volumes))
        for start in range(0, len(order), batch_size):
            patches = [sampler(volumes[int(i)])[0] for i in order[start : start + batch_size]]
            image = torch.stack([torch.as_tensor(p["image"]) for p in patches]).to(device)
            label = torch.stack([torch.as_tensor(p["label"]) for p in patches]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(supernet(image, arch), label)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss of child {arch.key} is {loss.item()}")
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        mean_loss = float(np.mean(losses))
    return mean_loss


@torch.no_grad()
def validate_child(supernet: Any, arch: Architecture, volumes: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Patient-wise Dice of ``arch`` on whole volumes (one-shot inference), after thresholding at 0.5; with
    several classes, after the argmax, the mean over the foreground classes a case holds."""
    return {case_id: mean for case_id, (mean, _) in validate_child_by_class(supernet, arch, volumes).items()}


@torch.no_grad()
def validate_child_by_class(supernet: Any, arch: Architecture, volumes: Sequence[dict[str, Any]]) -> dict[str, tuple[float, tuple[float, ...]]]:
    """Per case: the Dice of :func:`validate_child` and, with several classes, each foreground class's
    (NaN where the case's label lacks the class; empty for one sigmoid output)."""
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    device = next(supernet.parameters()).device
    supernet.eval()
    dice = {}
    for volume in volumes:
        logits = supernet(volume["image"][None].to(device), arch)
        label = volume["label"][None].to(device)
        classes: tuple[float, ...] = ()
        if logits.shape[1] == 1:
            prediction = (torch.sigmoid(logits) > 0.5).float()
            value = compute_dice(prediction, label, include_background=True, ignore_empty=False)
        else:
            per_class = compute_dice(one_hot(logits.argmax(1, keepdim=True), logits.shape[1]), one_hot(label, logits.shape[1]), include_background=False, ignore_empty=True)[0]
            value = per_class[~torch.isnan(per_class)].mean() if (~torch.isnan(per_class)).any() else torch.zeros(())
            classes = tuple(float(d) for d in per_class)
        dice[volume["case_id"]] = (float(value.item()), classes)
    return dice


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _child_seed(seed: int, fold: int, episode: int, child: int) -> int:
    # one generator per (seed, fold, episode, child): a resumed search draws exactly the patches it would have
    return int.from_bytes(hashlib.sha256(f"{seed}:{fold}:{episode}:{child}".encode()).digest()[:4], "little")


def _checkpoint_location(parent_run_id: str | None, identity: str, fold: int, arm: str) -> str:
    root = paths.checkpoint_root().rstrip("/")
    return f"{root}/nas/{parent_run_id or identity}/{arm}-fold{fold}.pt"


def _resume_point(location: str, study: StudyConfig, plan: NasPlan, fold: int, arm: str, episodes: range, device: torch.device) -> SearchState | None:
    """The checkpoint of an earlier attempt of this task, when it got past the task's first episode."""
    try:
        state = read_search_state(location, study, plan, fold, arm, device)
    except (ProxyHPOError, OSError):
        return None
    return state if episodes.start < state.next_episode <= episodes.stop else None


def search_episodes(
    study: StudyConfig,
    data: StudyData,
    plan: NasPlan,
    fold: int,
    arm: str,
    *,
    task: int,
    state_in: str | os.PathLike[str],
    state_out: str | os.PathLike[str],
    parent_run_id: str | None = None,
    on_episode: Callable[[EpisodeStats], None] | None = None,
) -> list[EpisodeStats]:
    """Run search task ``task`` of fold ``fold``'s ``arm`` search: its episodes, from ``state_in`` to ``state_out``.

    Args:
        study: the study.
        data: the prepared data set.
        plan: the NAS plan (space and folds).
        fold, arm: which search (``arm`` is ``all`` or ``proxy``).
        task: the task's index in the chain (:meth:`NasConfig.task_episodes`).
        state_in: the previous task's state (the initial state for task 0).
        state_out: where this task's final state is written.
        parent_run_id: the study's MLflow run; the task logs per-episode metrics to a child run of it
            (``proxyhpo.role=nas-search``), resumed when the task is retried.
        on_episode: called with each episode's statistics.

    Returns:
        The statistics of the episodes this call ran (none when a checkpoint already held them all).

    Raises:
        ProxyHPOError: when ``state_in`` is not this search's state at this task's first episode.
    """
    from proxyhpo import tracking
    from proxyhpo.devices import resolve_device
    from proxyhpo.networks import nas_encoding
    from proxyhpo.signals import sigterm_ends_trials

    nas = study.nas
    if arm not in nas.arms:
        raise ValueError(f"arm must be one of {nas.arms}, got {arm!r}")
    episodes = nas.task_episodes(task)
    device = resolve_device(nas.device, source="nas.device")
    identity = search_identity(study, plan, fold, arm)
    checkpoint = _checkpoint_location(parent_run_id, identity, fold, arm)
    state = _resume_point(checkpoint, study, plan, fold, arm, episodes, device)
    if state is None:
        state = read_search_state(state_in, study, plan, fold, arm, device)
        if state.next_episode != episodes.start:
            raise ProxyHPOError(f"{state_in}: holds a search at episode {state.next_episode}, not {episodes.start}; fix: pass the state of task {task - 1}")
    else:
        log.info("resuming fold %d (%s) at episode %d from %s", fold, arm, state.next_episode, checkpoint)
    nas_fold = plan.fold(fold)
    train_ids = nas_fold.search_ids(arm)
    largest = nas_encoding.largest(plan.space)
    # the search reads its fold's search-train and search-validation cases only; the test part and the
    # study's held-out cases are read once, by the evaluation, after the search
    train = load_nas_volumes(study, data, train_ids, device, pad_to=largest.patch_size, what=f"fold {fold} search-train cases")
    val = load_nas_volumes(study, data, nas_fold.search_validation_ids, device, what=f"fold {fold} search-validation cases")
    ran: list[EpisodeStats] = []
    tags = {names.FOLD_KEY: str(fold), names.ARM_KEY: arm, names.TASK_KEY: str(task)}
    params = {"episodes": f"{episodes.start}-{episodes.stop - 1}", "children_per_episode": str(nas.children_per_episode), "child_epochs": str(nas.child_epochs), "train_cases": str(len(train_ids)),
              "search_validation_cases": str(len(val))}
    with sigterm_ends_trials(), tracking.task_run(
        study.name, parent_run_id=parent_run_id, role=names.ROLE_NAS_SEARCH, task_id=f"nas-{arm}-fold{fold}-task{task}", tags=tags, params=params
    ) as (mlflow_client, run_id, logged):
        task_seconds = 0.0
        for episode in range(state.next_episode, episodes.stop):
            started = time.perf_counter()
            stats, failed = _run_episode(study, plan, state, fold, episode, train, val)
            seconds = time.perf_counter() - started
            state.failed_children += failed
            task_seconds += seconds
            state.next_episode, state.wall_seconds = episode + 1, state.wall_seconds + seconds
            state.write(checkpoint)  # a preempted pod resumes after this episode
            if episode not in logged:
                _log_episode(mlflow_client, run_id, stats, seconds, failed)
            ran.append(stats)
            if on_episode is not None:
                on_episode(stats)
        state.write(state_out)
        hours = task_seconds / 3600
        for key, value in {names.GPU_HOURS: hours if device.type == "cuda" else 0.0, names.PROCESS_HOURS: 0.0 if device.type == "cuda" else hours, names.WALL_SECONDS: task_seconds}.items():
            mlflow_client.log_metric(run_id, key, value)
        mlflow_client.set_terminated(run_id, status="FINISHED")
    return ran


def _run_episode(
    study: StudyConfig, plan: NasPlan, state: SearchState, fold: int, episode: int, train: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]]
) -> tuple[EpisodeStats, int]:
    """Sample the episode's children, train and reward each, then update the controller once.

    Returns:
        The episode's statistics and how many of its children failed (out of memory or diverged).
    """
    from proxyhpo.networks.nas_encoding import decode, encode, largest

    nas = study.nas
    samples = state.controller.sample(nas.children_per_episode)
    if episode == 0:  # the paper: the first child is the largest network, every skip and operation kept
        samples[0] = tuple(encode(plan.space, largest(plan.space)))
    rewards: list[float | None] = []
    failed = 0
    for child, choices in enumerate(samples):
        arch = decode(plan.space, choices)
        try:
            train_child(
                state.supernet, state.optimizer, arch, train, epochs=nas.child_epochs, batch_size=nas.child.batch_size,
                flip_prob=nas.child.flip_prob, seed=_child_seed(nas.child.seed, fold, episode, child),
            )
            dice = validate_child(state.supernet, arch, val)
            rewards.append(float(np.mean(list(dice.values()))))
        except (FloatingPointError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _is_out_of_memory(exc):
                raise
            log.warning("episode %d child %d (%s) failed, reward 0: %s", episode, child, arch.name, str(exc).splitlines()[0][:200])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            rewards.append(FAILED_CHILD_REWARD)
            failed += 1
    return state.controller.update(samples, rewards), failed


def _log_episode(mlflow_client: Any, run_id: str, stats: EpisodeStats, seconds: float, failed: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = {
        names.REWARD_MEAN: stats.mean_reward,
        names.REWARD_MAX: stats.max_reward,
        names.ENTROPY: stats.entropy,
        names.BASELINE: stats.baseline,
        names.SAME_AS_MOST_LIKELY: stats.same_as_most_likely,
        names.MODE_FRACTION: stats.mode_fraction,
        names.FAILED_CHILDREN: failed,  # rewarded 0, not None: the statistics cannot count them
        names.EPISODE_SECONDS: seconds,
    }
    metrics = [Metric(key, float(value), now, int(stats.episode)) for key, value in values.items() if value is not None and math.isfinite(float(value))]
    mlflow_client.log_batch(run_id, metrics=metrics)
