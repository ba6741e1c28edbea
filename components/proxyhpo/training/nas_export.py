"""The searched network, exported as is (RONASMIS: no retraining) and loaded again to segment new volumes.

An exported network is a folder a user can copy anywhere:

- ``architecture.json``: the controller's most likely architecture (:class:`~proxyhpo.config.nas_space.Architecture`);
- ``space.json``: the search space it is a path of (:class:`~proxyhpo.config.nas_space.NasSearchSpace`);
- ``recipe.json``: the preprocessing its inputs need (:class:`~proxyhpo.config.Recipe`);
- ``weights.pt``: the shared weights of its path only (a ``state_dict`` subset).

:class:`ExportedNetwork` loads it, preprocesses a NIfTI volume as the search did, infers the whole
volume in one pass (the paper's one-shot inference), thresholds at 0.5 and maps the mask back onto the
input's grid with MONAI's inverse transforms.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxyhpo import storage
from proxyhpo.config import Recipe, StudyConfig, StudyData
from proxyhpo.config.nas import NasFoldResult, NasPlan
from proxyhpo.config.nas_space import Architecture, NasSearchSpace
from proxyhpo.errors import InputError

__all__ = ["export_network", "ExportedNetwork", "evaluate_fold"]

FILES = ("architecture.json", "space.json", "recipe.json", "weights.pt")


def export_network(state: Any, space: NasSearchSpace, recipe: Recipe, out_dir: str | os.PathLike[str]) -> Architecture:
    """Export the search state's final network (the controller's most likely architecture) to ``out_dir``.

    Args:
        state: a :class:`~proxyhpo.training.nas_search.SearchState`.
        space: the search space.
        recipe: the preprocessing the search used.
        out_dir: the folder written (created; files written atomically).

    Returns:
        The exported architecture.
    """
    from proxyhpo.networks.nas_encoding import decode

    arch = decode(space, state.controller.most_likely())
    used = state.supernet.parameter_names(arch)
    weights = {name: tensor.detach().cpu() for name, tensor in state.supernet.state_dict().items() if name in used or _is_buffer_of(name, used)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arch.write(out / "architecture.json")
    space.write(out / "space.json")
    storage.atomic_write_text(out / "recipe.json", recipe.model_dump_json(indent=2) + "\n")
    with storage.atomic_output(out / "weights.pt") as partial:
        torch.save(weights, partial)
    return arch


def _is_buffer_of(name: str, used: set[str]) -> bool:
    # buffers (none today: instance norm keeps no running statistics) travel with their module's weights
    module = name.rsplit(".", 1)[0]
    return any(parameter.rsplit(".", 1)[0] == module for parameter in used)


class ExportedNetwork:
    """A network exported by :func:`export_network`, ready to segment volumes.

    Args:
        folder: the exported folder.
        device: where it runs (``auto``, ``cpu``, ``cuda``).

    Raises:
        InputError: naming the folder and the missing or unreadable file.

    Example:
        >>> network = ExportedNetwork("nas-model")  # doctest: +SKIP
        >>> network.segment_file("case.nii.gz", "case-mask.nii.gz")  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike[str], device: str = "auto") -> None:
        from proxyhpo.config.base import load_config
        from proxyhpo.devices import resolve_device
        from proxyhpo.networks import Supernet

        self.folder = Path(folder)
        for name in FILES:
            if not (self.folder / name).is_file():
                raise InputError(self.folder / name, "is missing: this is not an exported NAS network", "export one with `proxyhpo run CONFIG --pipeline nas`")
        self.architecture = Architecture.read(self.folder / "architecture.json")
        self.space = NasSearchSpace.read(self.folder / "space.json")
        self.recipe = load_config(Recipe, self.folder / "recipe.json")
        self.device = resolve_device(device)
        self.network = Supernet(self.space)
        try:
            weights = torch.load(self.folder / "weights.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign: torch raises many types
            raise InputError(self.folder / "weights.pt", f"cannot be read ({type(exc).__name__})", "export the network again") from None
        missing = sorted(self.network.parameter_names(self.architecture) - set(weights))
        if missing:
            raise InputError(self.folder / "weights.pt", f"lacks {len(missing)} weights of the architecture (first: {missing[0]})", "export the network again")
        self.network.load_state_dict(weights, strict=False)
        self.network.to(self.device).eval()

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The mask of a preprocessed ``(C, D, H, W)`` volume, ``(1, D, H, W)`` float: binary (one-shot, threshold
        0.5), or the class of each voxel (argmax) for a multi-class network."""
        if image.ndim != 4 or image.shape[0] != self.space.in_channels:
            raise ValueError(f"image must be (C={self.space.in_channels}, D, H, W), got {tuple(image.shape)}")
        logits = self.network(image[None].to(self.device), self.architecture)[0]
        if logits.shape[0] > 1:
            return logits.argmax(0, keepdim=True).float().cpu()
        return (torch.sigmoid(logits) > 0.5).float().cpu()

    def segment_file(self, image_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
        """Segment a NIfTI volume and write its mask, on the input's own grid, to ``out_path`` (``.nii.gz``).

        Raises:
            DataError: naming the file when it cannot be read or preprocessed.
        """
        import nibabel as nib
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        from proxyhpo.errors import DataError

        transform = _inference_transforms(self.recipe)
        try:
            item = transform({"image": str(image_path)})
        except Exception as exc:  # MONAI wraps reader errors in RuntimeError
            raise DataError(image_path, f"cannot be read or preprocessed ({str(exc).splitlines()[-1][:200]})", "check that it is a 3D NIfTI volume (4D with the channels the network takes)") from None
        image = item["image"]
        if image.ndim != 4 or image.shape[0] != self.space.in_channels:  # a 2-D slice, or channels the network does not take
            raise DataError(
                image_path, f"is {tuple(image.shape[1:])} with {image.shape[0]} channel(s) after preprocessing; the network takes 3D volumes of {self.space.in_channels}",
                "give a 3D NIfTI volume (4D, channels last, with the channels the network was trained on)",
            )
        mask = self.predict(torch.as_tensor(image).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        item["pred"] = MetaTensor(mask, meta=image.meta, applied_operations=list(image.applied_operations))
        restored = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=True)(item)["pred"]
        affine = np.asarray(restored.affine if hasattr(restored, "affine") else image.meta["original_affine"], dtype=np.float64)
        values = restored[0].cpu().numpy()  # nearest-neighbour inverted: the class values survive
        array = np.asarray(values > 0.5, dtype=np.uint8) if self.space.out_channels == 1 else np.rint(values).astype(np.uint8)
        with storage.atomic_output(out_path) as partial:
            nib.save(nib.Nifti1Image(array, affine), str(partial) + ".nii.gz")
            os.replace(str(partial) + ".nii.gz", partial)
        return Path(out_path)


def _inference_transforms(recipe: Recipe) -> Any:
    """The recipe's preprocessing of one image, invertible (no index or type transforms), for :meth:`segment_file`."""
    import functools

    from monai.transforms import Compose, CropForegroundd, EnsureChannelFirstd, Lambdad, LoadImaged, NormalizeIntensityd, Orientationd, ScaleIntensityRanged, Spacingd

    from proxyhpo.config import HUWindow
    from proxyhpo.training.data import _select_channel

    steps: list[Any] = [LoadImaged(keys="image"), EnsureChannelFirstd(keys="image")]
    if recipe.channel is not None:
        steps.append(Lambdad(keys="image", func=functools.partial(_select_channel, channel=recipe.channel), inv_func=lambda x: x))
    steps.append(Orientationd(keys="image", axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if recipe.spacing is not None:
        steps.append(Spacingd(keys="image", pixdim=recipe.spacing, mode="bilinear"))
    if isinstance(recipe.intensity, HUWindow):
        steps.append(ScaleIntensityRanged(keys="image", a_min=recipe.intensity.a_min, a_max=recipe.intensity.a_max, b_min=0.0, b_max=1.0, clip=True))
    else:
        steps.append(NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    if recipe.crop_foreground:
        steps.append(CropForegroundd(keys="image", source_key="image", allow_smaller=True))
    return Compose(steps)


def evaluate_fold(
    study: StudyConfig,
    data: StudyData,
    plan: NasPlan,
    fold: int,
    arm: str,
    *,
    state_in: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    parent_run_id: str | None = None,
) -> NasFoldResult:
    """Export fold ``fold``'s final network and test it, without retraining, on the fold's test part and the study's held-out cases.

    The fold's test part was read by no search (nested cross-validation): its Dice is the fold's term of the
    cross-validated Dice. The Dice on the fold's search-validation cases, which rewarded the controller, is
    recorded beside it as ``search_validation_dice`` (optimistic by construction).

    With ``parent_run_id`` the fold's final network becomes a child run (``proxyhpo.role=nas-final``) holding
    its Dice, the search's device-hours, and the exported folder as the artifact ``model/``.

    Returns:
        The fold's :class:`~proxyhpo.config.nas.NasFoldResult` (also written to ``out``).
    """
    from proxyhpo.devices import resolve_device
    from proxyhpo.data.msd import load_dataset
    from proxyhpo.data.prepare import classes_after_merge
    from proxyhpo.training.nas_search import load_nas_volumes, nas_recipe, read_search_state, validate_child_by_class

    device = resolve_device(study.nas.device, source="nas.device")
    state = read_search_state(state_in, study, plan, fold, arm, device)
    arch = export_network(state, plan.space, nas_recipe(study), model_dir)
    nas_fold = plan.fold(fold)

    labels = load_dataset(data.dataset).labels
    class_names = list(classes_after_merge(labels, nas_recipe(study).label_merge, strict=False).values())[1:]
    per_class: dict[str, dict[str, float]] = {}

    def dice_on(case_ids: tuple[str, ...], what: str) -> dict[str, float]:
        scored = validate_child_by_class(state.supernet, arch, load_nas_volumes(study, data, case_ids, device, what=what)) if case_ids else {}
        if plan.space.out_channels > 1 and scored:  # each class's mean over the cases holding it (issue 20)
            table = np.array([classes for _, classes in scored.values()], dtype=float)
            per_class[what] = {name: float(np.nanmean(column)) if np.isfinite(column).any() else 0.0 for name, column in zip(class_names, table.T)}
        return {case_id: mean for case_id, (mean, _) in scored.items()}

    test = dice_on(nas_fold.test_ids, f"fold {fold} test cases")
    rewarded = dice_on(nas_fold.search_validation_ids, f"fold {fold} search-validation cases")
    internal = dice_on(plan.internal_test_ids, "held-out cases")
    hours = state.wall_seconds / 3600
    result = NasFoldResult(
        fold=fold,
        arm=arm,
        architecture=arch,
        test_dice=_mean(test),
        test_case_dice=test,
        search_validation_dice=_mean(rewarded),
        internal_test_dice=_mean(internal),
        test_class_dice=per_class.get(f"fold {fold} test cases", {}),
        internal_test_class_dice=per_class.get("held-out cases", {}),
        failed_children=state.failed_children,
        search_gpu_hours=hours if state.device_type == "cuda" else 0.0,
        search_process_hours=0.0 if state.device_type == "cuda" else hours,
        search_wall_seconds=state.wall_seconds,
        train_cases=len(nas_fold.search_ids(arm)),
        search_validation_cases=len(nas_fold.search_validation_ids),
        test_cases=len(nas_fold.test_ids),
        episodes=tuple(state.controller.history),
    )
    if out is not None:
        result.write(out)
    if parent_run_id is not None:
        _log_final(study, result, model_dir, parent_run_id)
    return result


def _mean(case_dice: dict[str, float]) -> float | None:
    return float(np.mean(list(case_dice.values()))) if case_dice else None


def _log_final(study: StudyConfig, result: NasFoldResult, model_dir: str | os.PathLike[str], parent_run_id: str) -> None:
    from proxyhpo import tracking
    from proxyhpo.tracking import names

    tags = {names.FOLD_KEY: str(result.fold), names.ARM_KEY: result.arm, names.ARCHITECTURE_KEY: result.architecture.key}
    with tracking.task_run(study.name, parent_run_id=parent_run_id, role=names.ROLE_NAS_FINAL, task_id=f"nas-final-{result.arm}-fold{result.fold}", tags=tags) as (
        mlflow_client, run_id, _,
    ):
        values = {
            # the cases that rewarded the controller are the search's validation: val_dice
            names.FOLD_TEST_DICE: result.test_dice, names.VAL_DICE: result.search_validation_dice, names.INTERNAL_TEST_DICE: result.internal_test_dice,
            names.GPU_HOURS: result.search_gpu_hours,
            names.PROCESS_HOURS: result.search_process_hours, names.WALL_SECONDS: result.search_wall_seconds,
        }
        for metric, per_class in ((names.FOLD_TEST_DICE, result.test_class_dice), (names.INTERNAL_TEST_DICE, result.internal_test_class_dice)):
            values |= {names.class_dice(metric, name): dice for name, dice in per_class.items()}
        for key, value in values.items():
            if value is not None:
                mlflow_client.log_metric(run_id, key, float(value))
        mlflow_client.log_artifacts(run_id, str(model_dir), "model")
        mlflow_client.set_terminated(run_id, status="FINISHED")
