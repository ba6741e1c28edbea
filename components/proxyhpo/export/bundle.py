"""A final model as a MONAI bundle: a folder a team runs in its own MONAI stack, without proxyhpo.

The bundle follows MONAI's bundle layout::

    configs/metadata.json    what the model takes and returns, its versions, the study it came from
    configs/inference.json   segments every NIfTI of a folder: ``python -m monai.bundle run --config_file
                             configs/inference.json --dataset_dir IMAGES --output_dir MASKS`` (run in the folder)
    configs/train.json       the network, the hyper-parameters the search found, loss, schedule and recipe
    models/model.pt          the final model's best-validation weights (a ``state_dict``)
    docs/README.md           the study's Dice, cost and MLflow run ids

The inference config uses MONAI and torch only (no ignite, no proxyhpo): the recipe's preprocessing
(orientation, spacing, intensity, crop), sliding-window inference with the recipe's window, softmax, the
preprocessing inverted onto each input's grid, the class of each voxel (argmax), one ``<name>_seg.nii.gz`` per
input. A deep-supervised network (DynUNet) returns its main output in eval mode.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxyhpo import storage
from proxyhpo.config import HUWindow, HyperParameters, NetworkConfig, Recipe
from proxyhpo.errors import ConfigError

__all__ = ["BundleInfo", "write_bundle", "bundle_files", "network_definition", "in_channels_of"]

#: the files every bundle holds, relative to its folder
BUNDLE_FILES = ("configs/metadata.json", "configs/inference.json", "configs/train.json", "models/model.pt", "docs/README.md")

_OPTIMIZERS = {"adam": "torch.optim.Adam", "rmsprop": "torch.optim.RMSprop", "adamax": "torch.optim.Adamax", "novograd": "monai.optimizers.Novograd"}


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle says about the study it came from (docs/README.md, metadata.json).

    Attributes:
        study: the study's name (the MLflow experiment, the registered model's name).
        description: the study's description.
        dice: the final model's Dice by set (``internal_test_dice``, ``val_dice``, ``test_dice``; absent ones left out).
        cost: device-hours by what they paid for (``final_gpu_hours``, ``search_gpu_hours``, ...).
        study_run_id: the study's MLflow parent run.
        final_run_id: the final model's MLflow run.
        dataset_sha256: the fingerprint of the data set it trained on.
        image_digest: the runtime image it trained in (``local`` outside a cluster).
        classes: class value -> name, background included.
    """

    study: str
    description: str = ""
    dice: Mapping[str, float] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    study_run_id: str | None = None
    final_run_id: str | None = None
    dataset_sha256: str | None = None
    image_digest: str = "local"
    classes: Mapping[int, str] = field(default_factory=dict)


def bundle_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The bundle's files under ``folder`` (:data:`BUNDLE_FILES`)."""
    return [Path(folder) / name for name in BUNDLE_FILES]


def network_definition(network: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
    """The network as a MONAI bundle component (its family's :meth:`~proxyhpo.networks.NetworkFamily.network_def`).

    Raises:
        ConfigError: when the family has no bundle component.
    """
    from proxyhpo.registry import NETWORK_FAMILIES

    definition = NETWORK_FAMILIES[network.family]().network_def(network, in_channels, out_channels)
    if definition is None:
        raise ConfigError("training.network_family", f"the {network.family!r} family has no MONAI bundle component (network_def)", "export a family that has one: " + ", ".join(NETWORK_FAMILIES.names()))
    return definition


def in_channels_of(weights: Mapping[str, Any]) -> int:
    """The image channels a network's weights take: the input width of its first convolution (every family's first weight)."""
    for tensor in weights.values():
        if getattr(tensor, "ndim", 0) == 5:
            return int(tensor.shape[1])
    raise ValueError("the weights hold no 3-D convolution")


def _preprocessing(recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe's deterministic preprocessing of an image, as MONAI bundle components (all invertible)."""
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": False},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
    ]
    if recipe.channel is not None:  # keep one channel of a multi-channel volume, as training did
        channel = int(recipe.channel)
        steps.append({"_target_": "Lambdad", "keys": "image", "func": f"$lambda x: x[{channel}:{channel + 1}] if x.shape[0] > 1 else x", "inv_func": "$lambda x: x"})
    steps.append({"_target_": "Orientationd", "keys": "image", "axcodes": "RAS", "labels": [["L", "R"], ["P", "A"], ["I", "S"]]})
    if recipe.spacing is not None:
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(recipe.spacing), "mode": "bilinear"})
    if isinstance(recipe.intensity, HUWindow):
        window = recipe.intensity
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": window.a_min, "a_max": window.a_max, "b_min": 0.0, "b_max": 1.0, "clip": True})
    else:
        steps.append({"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True})
    if recipe.crop_foreground:
        steps.append({"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "allow_smaller": True})
    if recipe.pad:
        steps.append({"_target_": "SpatialPadd", "keys": "image", "spatial_size": list(recipe.patch_size)})
    steps.append({"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"})
    return steps


def _inference_config(definition: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    return {
        "imports": ["$import glob", "$import os", "$import torch"],
        "bundle_root": ".",
        "dataset_dir": "images",
        "output_dir": "segmentations",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))",
        "network_def": definition,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(recipe)},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': path} for path in @datalist]", "transform": "@preprocessing"},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(recipe.roi_size), "sw_batch_size": recipe.sw_batch_size, "overlap": 0.25},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image", "nearest_interp": False, "to_tensor": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg", "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False},
            ],
        },
        # one volume at a time, whole, without gradients: the batch dimension added and taken off again
        "segment": "$torch.no_grad()(lambda item: @postprocessing(dict(item, pred=@inferer(item['image'][None].to(@device), @network)[0].cpu())))",
        "initialize": [
            "$@network.load_state_dict(torch.load(os.path.join(@bundle_root, 'models', 'model.pt'), map_location=@device, weights_only=True))",
            "$@network.eval()",
        ],
        "run": ["$[@segment(item) for item in @dataset]"],
    }


def _train_config(definition: dict[str, Any], recipe: Recipe, hyperparameters: HyperParameters, schedule: Mapping[str, Any]) -> dict[str, Any]:
    loss: dict[str, Any] = {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True}
    if definition.get("deep_supervision"):  # the main output and its heads (torch.unbind(pred, 1)), weights halving per head, as trained
        heads = int(definition["deep_supr_num"]) + 1
        loss = {"_target_": "DeepSupervisionLoss", "loss": loss, "weights": [0.5**s / sum(0.5**h for h in range(heads)) for s in range(heads)]}
    return {
        "imports": ["$import torch", "$import monai"],
        "network_def": definition,
        "network": "$@network_def",
        # the hyper-parameters the study's search found
        "hyperparameters": hyperparameters.model_dump(mode="json"),
        "optimizer": {
            "_target_": _OPTIMIZERS[hyperparameters.optimizer],
            "params": "$@network.parameters()",
            "lr": hyperparameters.lr,
            "weight_decay": hyperparameters.weight_decay,
        },
        "loss": loss,
        "intensity_shift": {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": recipe.intensity_shift_offset, "prob": hyperparameters.intensity_shift_prob},
        "patch_size": list(recipe.patch_size),
        "samples_per_volume": recipe.num_samples,
        **{key: value for key, value in schedule.items()},
        "preprocessing": {"_target_": "Compose", "transforms": _preprocessing(recipe)},
        "recipe": recipe.model_dump(mode="json"),
    }


def _metadata(definition: dict[str, Any], recipe: Recipe, in_channels: int, out_channels: int, info: BundleInfo) -> dict[str, Any]:
    import monai
    import numpy
    import torch

    from proxyhpo import __version__

    classes = dict(info.classes) or {0: "background", 1: "foreground"}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by proxyhpo {__version__} from study {info.study}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"nibabel": _version("nibabel")},
        "name": info.study,
        "task": f"3D segmentation: {', '.join(name for value, name in sorted(classes.items()) if value)}",
        "description": info.description or f"the final model of proxyhpo study {info.study}",
        "authors": "proxyhpo",
        "copyright": "see the data set's licence",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield" if isinstance(recipe.intensity, HUWindow) else "magnitude",
                    "num_channels": in_channels,
                    "spatial_shape": list(recipe.roi_size),
                    "dtype": "float32",
                    "value_range": [0, 1] if isinstance(recipe.intensity, HUWindow) else [],
                    "is_patch_data": True,
                    "channel_def": {str(c): f"channel {c}" for c in range(in_channels)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": out_channels,
                    "spatial_shape": list(recipe.roi_size),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {str(value): name for value, name in sorted(classes.items())},
                }
            },
        },
        "proxyhpo": {
            "study": info.study,
            "study_run_id": info.study_run_id,
            "final_run_id": info.final_run_id,
            "dataset_sha256": info.dataset_sha256,
            "image_digest": info.image_digest,
            "dice": dict(info.dice),
            "cost": dict(info.cost),
            "network": definition["_target_"],
        },
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def readme(info: BundleInfo, network: str, hyperparameters: HyperParameters) -> str:
    """docs/README.md: what the model is, how it was found and what it scored."""
    dice = "\n".join(f"| {name} | {value:.4f} |" for name, value in info.dice.items()) or "| (none recorded) | |"
    cost = "\n".join(f"| {name} | {value:.4f} |" for name, value in info.cost.items()) or "| (none recorded) | |"
    searched = ", ".join(f"{key} = {value}" for key, value in hyperparameters.model_dump().items())
    return f"""# {info.study}: final model

{info.description or "The final model of a proxyhpo hyper-parameter study."}

Network: `{network}`. Hyper-parameters found by the study's search: {searched}.

## Dice of the final model

| set | Dice |
|---|---|
{dice}

`internal_test_dice` is measured once on the study's held-out cases, which neither the search nor the
final model's training read; `val_dice` on the search-validation cases that chose its checkpoint.

## Cost

| what | hours |
|---|---|
{cost}

## Provenance

- MLflow study run: `{info.study_run_id or "none (no tracking)"}`; final model's run: `{info.final_run_id or "none"}`
- data set fingerprint (sha256): `{info.dataset_sha256 or "unknown"}`
- runtime image: `{info.image_digest}`

## Run it

In this folder: `python -m monai.bundle run --config_file configs/inference.json --dataset_dir IMAGES --output_dir MASKS`
segments every NIfTI in IMAGES into MASKS/<name>_seg.nii.gz, on each input's own grid.
"""


def write_bundle(
    out_dir: str | os.PathLike[str],
    *,
    network: NetworkConfig,
    weights: Mapping[str, Any] | str | os.PathLike[str],
    recipe: Recipe,
    hyperparameters: HyperParameters,
    out_channels: int,
    schedule: Mapping[str, Any],
    info: BundleInfo,
) -> Path:
    """Write a MONAI bundle of a trained network to ``out_dir`` (replaced when it exists).

    Args:
        out_dir: the bundle's folder.
        network: the network's config (its family gives the bundle component).
        weights: its ``state_dict``, or the ``.pt`` file holding it.
        recipe: the preprocessing it trained with.
        hyperparameters: the hyper-parameters it trained with (the search's best).
        out_channels: its classes, background included.
        schedule: ``epochs``, ``batch_size`` and the like, recorded in ``configs/train.json``.
        info: the study's summary (:class:`BundleInfo`).

    Returns:
        The bundle's folder.

    Raises:
        ConfigError: when the network's family has no bundle component.
    """
    import torch

    if not isinstance(weights, Mapping):
        weights = torch.load(weights, map_location="cpu", weights_only=True)
    in_channels = in_channels_of(weights)
    definition = network_definition(network, in_channels, out_channels)
    from proxyhpo.networks import instantiate

    instantiate(definition).load_state_dict(weights)  # the bundle's network takes these weights, or nothing is written
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    for sub in ("configs", "models", "docs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with storage.atomic_output(out / "models" / "model.pt") as partial:
        torch.save({key: value.detach().cpu() for key, value in weights.items()}, partial)
    documents = {
        "configs/inference.json": _inference_config(definition, recipe),
        "configs/train.json": _train_config(definition, recipe, hyperparameters, schedule),
        "configs/metadata.json": _metadata(definition, recipe, in_channels, out_channels, info),
    }
    for name, document in documents.items():
        storage.atomic_write_text(out / name, json.dumps(document, indent=2) + "\n")
    storage.atomic_write_text(out / "docs" / "README.md", readme(info, network.name, hyperparameters))
    return out
