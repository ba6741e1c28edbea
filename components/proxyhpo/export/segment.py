"""``proxyhpo segment``: segment NIfTI volumes with an HPO study's final model (a MONAI bundle) or a NAS export.

The model is a folder, found wherever it lives: a local path, an MLflow URI (``models:/<study>/<version>``
from the model registry, ``runs:/<run id>/bundle``) or ``s3://bucket/prefix``. A folder holding
``configs/inference.json`` is a bundle (:mod:`proxyhpo.export.bundle`), run through MONAI's own bundle
parser exactly as ``python -m monai.bundle run`` runs it; one holding ``architecture.json`` is a NAS export
(:class:`~proxyhpo.training.nas_export.ExportedNetwork`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from proxyhpo.errors import DataError, InputError

__all__ = ["fetch_model", "segment_images"]

_URI_SCHEMES = ("models:/", "runs:/")


def fetch_model(source: str, scratch: str | os.PathLike[str]) -> Path:
    """The model folder ``source`` names, downloaded into ``scratch`` when it is not local.

    Raises:
        InputError: when the folder does not exist or cannot be downloaded.
    """
    from proxyhpo import storage

    if source.startswith(_URI_SCHEMES):
        import mlflow

        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(scratch)))
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for an unknown model or run
            raise InputError(source, f"cannot be downloaded from MLflow ({' '.join(str(exc).split())[:200]})", "check the model name and version (proxyhpo export prints them) and MLFLOW_TRACKING_URI") from None
    if storage.is_s3_url(source):
        files = storage.download_prefix(source.rstrip("/") + "/", scratch)
        if not files:
            raise InputError(source, "holds no files", "give the s3:// prefix a bundle or NAS export was uploaded to")
        return Path(scratch)
    folder = Path(source)
    if not folder.is_dir():
        raise InputError(source, "is not a folder", "give a bundle or NAS export folder, models:/NAME/VERSION, runs:/RUN_ID/bundle or s3://bucket/prefix")
    return folder


def segment_images(source: str, outputs: Mapping[str, Path], *, device: str = "auto") -> dict[str, Path]:
    """Segment each image of ``outputs`` (image -> mask path) with the model ``source`` names.

    Returns:
        image -> the mask written, on the image's own grid.

    Raises:
        InputError: when ``source`` is neither a bundle nor a NAS export.
    """
    with tempfile.TemporaryDirectory(prefix="proxyhpo-model-") as scratch:
        folder = fetch_model(source, scratch)
        if (folder / "configs" / "inference.json").is_file():
            return _segment_with_bundle(folder, outputs, device)
        if (folder / "architecture.json").is_file():
            from proxyhpo.training.nas_export import ExportedNetwork

            network = ExportedNetwork(folder, device=device)
            return {image: network.segment_file(image, out) for image, out in outputs.items()}
    raise InputError(source, "is neither a MONAI bundle (configs/inference.json) nor a NAS export (architecture.json)", "give an HPO study's bundle (proxyhpo export) or the NAS pipeline's model folder")


def _segment_with_bundle(folder: Path, outputs: Mapping[str, Path], device: str) -> dict[str, Path]:
    """Run the bundle's inference config over the images, as ``monai.bundle run`` does, then name the masks as asked."""
    from monai.bundle import ConfigParser

    from proxyhpo.devices import resolve_device

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    with tempfile.TemporaryDirectory(prefix="proxyhpo-masks-") as written:
        staged = {}
        for index, image in enumerate(outputs):
            # each image under a name of its own: the bundle writes <name>_seg.nii.gz
            link = Path(written) / "in" / f"{index:05d}{''.join(Path(image).suffixes[-2:]) or '.nii.gz'}"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(image).absolute(), link)
            staged[image] = link
        parser["bundle_root"] = str(folder)
        parser["output_dir"] = str(Path(written) / "out")
        parser["datalist"] = [str(link) for link in staged.values()]
        parser["device"] = f"$torch.device('{resolve_device(device)}')"
        for index, step in enumerate(parser["postprocessing"]["transforms"]):
            if step.get("_target_") == "SaveImaged":  # the masks are renamed and printed below, not at their scratch paths
                parser[f"postprocessing#transforms#{index}#print_log"] = False
        try:
            for expression in ("initialize", "run"):
                parser.get_parsed_content(expression, instantiate=True)
        except Exception as exc:  # MONAI wraps reader and config errors in RuntimeError
            raise DataError(next(iter(outputs)), f"the bundle in {folder} could not segment these images ({' '.join(str(exc).split())[-200:]})", "check that each is a NIfTI volume with the channels the bundle takes") from None
        done = {}
        for image, link in staged.items():
            mask = Path(written) / "out" / f"{link.name.split('.')[0]}_seg.nii.gz"
            if not mask.is_file():
                raise InputError(image, "was not segmented by the bundle", "check that it is a NIfTI volume the bundle's preprocessing reads")
            outputs[image].parent.mkdir(parents=True, exist_ok=True)
            shutil.move(mask, outputs[image])
            done[image] = outputs[image]
    return done
