"""Synthetic MSD phantoms: layout, labels, grids, determinism, the external domain and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from proxyhpo.data.msd import load_dataset, validate_dataset
from proxyhpo.data.synthetic import synthetic_case, write_synthetic_dataset
from proxyhpo.errors import ConfigError, DataError

SIZE = 32  # the smallest allowed matrix keeps every test well under a second a case


def _arrays(root: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, label, affine) of every case listed in root/dataset.json, read as stored (no scaling)."""
    document = json.loads((root / "dataset.json").read_text())
    found = []
    for entry in document["training"]:
        image = nib.load(root / entry["image"])
        label = nib.load(root / entry["label"])
        found.append((np.asanyarray(image.dataobj), np.asanyarray(label.dataobj), image.affine))
    return found


@pytest.fixture(scope="module")
def spleen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset("spleen", tmp_path_factory.mktemp("synth") / "spleen", cases=5, size=SIZE, seed=3).parent


@pytest.fixture(scope="module")
def prostate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset("prostate", tmp_path_factory.mktemp("synth") / "prostate", cases=5, size=SIZE, seed=3).parent


@pytest.mark.parametrize(
    ("task", "modality", "labels", "prefix"),
    [
        ("spleen", {"0": "CT"}, {"0": "background", "1": "spleen"}, "spleen"),
        ("prostate", {"0": "T2"}, {"0": "background", "1": "PZ", "2": "TZ"}, "prostate"),
    ],
)
def test_msd_layout_and_dataset_json(task, modality, labels, prefix, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(task)
    document = json.loads((root / "dataset.json").read_text())
    assert document["tensorImageSize"] == "3D"
    assert document["modality"] == modality and document["labels"] == labels
    assert document["numTraining"] == 5 and document["numTest"] == 0 and document["test"] == []
    assert document["training"] == [
        {"image": f"./imagesTr/{prefix}_{i}.nii.gz", "label": f"./labelsTr/{prefix}_{i}.nii.gz"} for i in range(1, 6)
    ]
    assert sorted(p.name for p in root.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]
    assert len(list((root / "imagesTr").iterdir())) == len(list((root / "labelsTr").iterdir())) == 5
    assert not list(root.parent.glob(".*partial"))  # the staging folder was renamed away
    # The project's own reader accepts it: files exist, shapes and affines match, labels non-empty and listed.
    dataset = load_dataset(root)
    validate_dataset(dataset)
    assert [c.case_id for c in dataset.cases] == [f"{prefix}_{i}" for i in range(1, 6)]


@pytest.mark.parametrize("task", ["spleen", "prostate"])
def test_volumes_labels_and_grids(task, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(task)
    allowed = {0, 1} if task == "spleen" else {0, 1, 2}
    spacings, depths = [], []
    for image, label, affine in _arrays(root):
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert image.shape == label.shape and image.shape[:2] == (SIZE, SIZE)
        values = set(np.unique(label).tolist())
        assert values <= allowed and values == allowed, f"{task} label values {values}"
        spacing = np.abs(np.diag(affine)[:3])
        assert spacing[0] == pytest.approx(spacing[1])
        assert spacing[2] >= 1.3 * spacing[0]  # slices coarser than pixels
        spacings.append(tuple(spacing))
        depths.append(image.shape[2])
    assert len(set(spacings)) == len(spacings), "every case has its own grid"
    assert len(set(depths)) > 1, "slice counts vary"
    if task == "spleen":
        hu = np.concatenate([a[0].ravel() for a in _arrays(root)])
        assert hu.min() <= -990 and np.median(hu) < -300  # air around the body
        assert ((hu > -150) & (hu < 150)).mean() > 0.2  # plenty of soft tissue


def test_organ_size_and_position_vary() -> None:
    volumes, centres = [], []
    for index in range(6):
        case = synthetic_case("spleen", index, size=48, seed=11)
        mm3 = float(np.prod(case.spacing))
        volumes.append(case.label.sum() * mm3 / 1000)  # millilitres
        centres.append(np.argwhere(case.label).mean(0) / case.label.shape)
    assert max(volumes) > 1.5 * min(volumes)
    assert all(20 < v < 1500 for v in volumes), volumes  # spleen-sized, in mL
    assert np.ptp(np.array(centres)[:, 2]) > 0.1  # position along Z varies
    # The spleen lies on the patient's left (-x in RAS) and posterior (-y).
    assert all(c[0] < 0.5 and c[1] < 0.5 for c in centres)


def test_prostate_zones_and_mr_intensities() -> None:
    scales = []
    for index in range(4):
        case = synthetic_case("prostate", index, size=48, seed=2)
        pz, tz = case.label == 1, case.label == 2
        assert pz.any() and tz.any()
        image = case.image.astype(np.float64)
        assert image.min() >= 0  # magnitude images
        assert image[pz].mean() > image[tz].mean()  # T2: peripheral zone brighter than transition zone
        scales.append(np.percentile(image, 99))
    assert max(scales) > 2 * min(scales)  # no absolute unit: the intensity scale varies per case


@pytest.mark.parametrize("task", ["spleen", "prostate", "brain"])
def test_same_seed_same_voxels_other_seed_other_voxels(task, tmp_path: Path) -> None:
    first = _arrays(write_synthetic_dataset(task, tmp_path / "a", cases=2, size=SIZE, seed=7).parent)
    again = _arrays(write_synthetic_dataset(task, tmp_path / "b", cases=2, size=SIZE, seed=7).parent)
    other = _arrays(write_synthetic_dataset(task, tmp_path / "c", cases=2, size=SIZE, seed=8).parent)
    for (i1, l1, a1), (i2, l2, a2) in zip(first, again):
        assert i1.tobytes() == i2.tobytes() and l1.tobytes() == l2.tobytes()
        np.testing.assert_array_equal(a1, a2)
    for (i1, _, _), (i3, _, _) in zip(first, other):
        assert i1.shape != i3.shape or not np.array_equal(i1, i3)
    # Case i does not depend on how many cases are written.
    np.testing.assert_array_equal(synthetic_case(task, 1, size=SIZE, seed=7).image, first[1][0])


def test_external_spleen_domain_is_shifted(tmp_path: Path) -> None:
    path = write_synthetic_dataset("spleen", tmp_path / "ext", cases=4, size=SIZE, seed=3, external=True)
    document = json.loads(path.read_text())
    assert document["name"].endswith("External")
    assert document["training"][0]["image"] == "./imagesTr/btcv_like_1.nii.gz"
    load_dataset(path)

    def stats(task_external: bool) -> tuple[float, float, float]:
        air, noise, pixel = [], [], []
        for index in range(4):
            case = synthetic_case("spleen", index, size=SIZE, seed=3, external=task_external)
            image = case.image.astype(np.float64)
            air.append(np.median(image[:3, :3, :]))  # a corner outside the body
            # Noise: robust spread of the residual after a 3x3x3 median, over soft tissue.
            residual = image - ndimage.median_filter(image, 3)
            soft = np.abs(image - 60) < 120
            noise.append(1.4826 * np.median(np.abs(residual[soft])))
            pixel.append(case.spacing[2])
        return float(np.mean(air)), float(np.mean(noise)), float(np.mean(pixel))

    air_in, noise_in, dz_in = stats(False)
    air_ex, noise_ex, dz_ex = stats(True)
    assert air_in == pytest.approx(-1000, abs=15)
    assert air_ex > air_in + 60  # calibration: air is not -1000 HU on the other scanner
    assert noise_ex > 1.5 * noise_in
    assert dz_ex > dz_in  # thicker slices


def test_external_prostate_domain_is_shifted() -> None:
    internal = [synthetic_case("prostate", i, size=SIZE, seed=3) for i in range(4)]
    external = [synthetic_case("prostate", i, size=SIZE, seed=3, external=True) for i in range(4)]
    level = lambda cases: np.mean([np.percentile(c.image, 99) for c in cases])  # noqa: E731
    assert level(external) < 0.5 * level(internal)
    assert np.mean([c.spacing[0] for c in external]) > np.mean([c.spacing[0] for c in internal])


def test_refuses_existing_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"taken: already exists and is not empty; fix: choose a new --out or delete it"):
        write_synthetic_dataset("spleen", out, cases=1, size=SIZE)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    file_out = tmp_path / "a_file"
    file_out.write_text("")
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_dataset("spleen", file_out, cases=1, size=SIZE)


def test_empty_folder_is_filled_and_parents_created(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    assert write_synthetic_dataset("prostate", out, cases=1, size=SIZE) == out / "dataset.json"
    nested = write_synthetic_dataset("prostate", tmp_path / "x" / "y", cases=1, size=SIZE)
    assert nested.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "x"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "liver"}, r"task must be one of \['brain', 'prostate', 'spleen'\], got 'liver'"),
        ({"cases": 0}, r"cases must be an integer >= 1, got 0"),
        ({"size": 16}, r"size must be an integer in \[32, 512\], got 16"),
        ({"seed": -1}, r"seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_arguments_raise_config_error_and_write_nothing(kwargs, message, tmp_path: Path) -> None:
    arguments = {"task": "spleen", "out": tmp_path / "out", "cases": 1, "size": SIZE} | kwargs
    with pytest.raises(ConfigError, match=message):
        write_synthetic_dataset(**arguments)
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import proxyhpo.data.synthetic as synthetic

    calls = {"n": 0}
    real = synthetic._save_nifti

    def failing(array, spacing, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(array, spacing, path)

    monkeypatch.setattr(synthetic, "_save_nifti", failing)
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_dataset("spleen", tmp_path / "out", cases=3, size=SIZE)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def brain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset("brain", tmp_path_factory.mktemp("synth") / "brain", cases=3, size=SIZE, seed=3).parent


def test_brain_is_msd_task01_layout_4d_channels_last(brain: Path) -> None:
    document = json.loads((brain / "dataset.json").read_text())
    assert document["tensorImageSize"] == "4D"
    assert document["modality"] == {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    assert document["labels"] == {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
    for image, label, affine in _arrays(brain):
        assert image.dtype == np.int16 and image.ndim == 4 and image.shape[3] == 4  # the modality axis last, as MSD stores it
        assert label.shape == image.shape[:3] and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3}  # every phantom holds every class
        assert np.all(image[label == 0].max(axis=0) >= 0) and image.min() >= 0
    dataset = load_dataset(brain)
    assert dataset.channels == 4
    validate_dataset(dataset)  # the project's reader takes the 4-channel, 3-class data set


def test_brain_classes_differ_in_other_channels() -> None:
    """Each class is told apart by another channel (BraTS-like): no single channel separates all of them."""
    for index in range(3):
        case = synthetic_case("brain", index, size=48, seed=5)
        image = case.image.astype(np.float64)
        brain_tissue = (case.label == 0) & (image[..., 1] > 0)
        mean = {name: image[mask].mean(axis=0) / image[brain_tissue].mean(axis=0) for name, mask in (
            ("edema", case.label == 1), ("core", case.label == 2), ("enhancing", case.label == 3))}
        flair, t1, t1gd, t2 = range(4)
        assert mean["edema"][flair] > max(mean["core"][flair], mean["enhancing"][flair], 1.3)  # oedema: bright FLAIR
        assert mean["enhancing"][t1gd] > max(mean["edema"][t1gd], mean["core"][t1gd]) + 0.3  # enhancing rim: bright T1gd only
        assert mean["enhancing"][t1] < mean["enhancing"][t1gd] - 0.3
        assert mean["core"][t1] < min(mean["edema"][t1], mean["enhancing"][t1])  # core: dark T1 ...
        assert mean["core"][t2] > mean["enhancing"][t2] + 0.3  # ... and bright T2
