"""MSD reading and validation: every bad input kind gives a DataError naming the file and the fix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from proxyhpo.data.msd import load_dataset, read_case, validate_dataset
from proxyhpo.errors import DataError


def _write_case(root: Path, name: str, shape=(16, 16, 8), label_shape=None, empty=False, label_value=1, affine=None) -> dict:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    affine = np.diag([0.8, 0.8, 2.5, 1.0]) if affine is None else affine
    image = (rng.normal(40, 10, shape)).astype(np.int16)
    label = np.zeros(label_shape or shape, dtype=np.uint8)
    if not empty:
        label[4:9, 4:9, 2:5] = label_value
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, np.diag([0.8, 0.8, 2.5, 1.0])), root / "imagesTr" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{name}.nii.gz")
    return {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}


def _write_dataset(root: Path, entries: list[dict], **extra) -> Path:
    document = {"name": "Tiny", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"}, "training": entries, **extra}
    document = {key: value for key, value in document.items() if value is not None}
    (root / "dataset.json").write_text(json.dumps(document))
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    root = tmp_path / "Task09_Tiny"
    return _write_dataset(root, [_write_case(root, f"case_{i}") for i in range(3)])


def test_load_folder_and_file_forms_agree(tiny: Path) -> None:
    by_folder = load_dataset(tiny)
    by_file = load_dataset(tiny / "dataset.json")
    assert by_folder.cases == by_file.cases
    assert [c.case_id for c in by_folder.cases] == ["case_0", "case_1", "case_2"]
    assert by_folder.labels == {0: "background", 1: "spleen"}
    assert by_folder.is_ct
    assert by_folder.cases[0].as_entry() == {"image": "./imagesTr/case_0.nii.gz", "label": "./labelsTr/case_0.nii.gz"}
    validate_dataset(by_folder)


def test_read_case_returns_volumes_and_spacing(tiny: Path) -> None:
    case = read_case(load_dataset(tiny).cases[0])
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
    assert case.image.shape == case.label.shape == (16, 16, 8)
    assert case.spacing == pytest.approx((0.8, 0.8, 2.5))


def test_sha256_changes_with_content(tiny: Path) -> None:
    before = load_dataset(tiny).sha256()
    _write_case(tiny, "case_1", shape=(16, 16, 8), label_value=1, affine=None)  # same name, new random content? same seed
    assert load_dataset(tiny).sha256() == before  # deterministic rewrite: same bytes
    nib.save(nib.Nifti1Image(np.ones((16, 16, 8), np.int16), np.diag([0.8, 0.8, 2.5, 1.0])), tiny / "imagesTr" / "case_1.nii.gz")
    assert load_dataset(tiny).sha256() != before


def _expect(match: str, path_part: str, call) -> DataError:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert path_part in message, message
    assert match in message, message
    assert "fix:" in message
    return info.value


def test_missing_dataset_json(tmp_path: Path) -> None:
    _expect("does not exist", "dataset.json", lambda: load_dataset(tmp_path))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"labels": {"0": "bg"}, "modality": {"0": "CT"}}', "no non-empty 'training' list"),
        ('{"labels": {"0": "bg"}, "modality": {"0": "CT"}, "training": [{"image": 3}]}', "training[0]"),
        ('{"modality": {"0": "CT"}, "training": [{"image": "a", "label": "b"}]}', "no 'labels' mapping"),
        ('{"labels": {"x": "bg"}, "modality": {"0": "CT"}, "training": [{"image": "a", "label": "b"}]}', "keys must be integers"),
        ('{"labels": {"0": "bg"}, "training": [{"image": "a", "label": "b"}]}', "no 'modality' mapping"),
    ],
)
def test_malformed_dataset_json(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "dataset.json").write_text(text)
    _expect(problem, "dataset.json", lambda: load_dataset(tmp_path))


def test_missing_file(tiny: Path) -> None:
    (tiny / "labelsTr" / "case_2.nii.gz").unlink()
    _expect("is missing", "labelsTr/case_2.nii.gz", lambda: load_dataset(tiny))


def test_duplicate_entry(tmp_path: Path) -> None:
    root = tmp_path / "dup"
    entry = _write_case(root, "case_0")
    _write_dataset(root, [entry, entry])
    _expect("listed twice", "dataset.json", lambda: load_dataset(root))


def test_truncated_nifti(tiny: Path) -> None:
    path = tiny / "imagesTr" / "case_1.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    _expect("truncated or corrupt", "imagesTr/case_1.nii.gz", lambda: validate_dataset(load_dataset(tiny)))


def test_corrupt_nifti(tiny: Path) -> None:
    (tiny / "imagesTr" / "case_0.nii.gz").write_bytes(b"this is not a nifti file at all")
    _expect("not a readable NIfTI", "imagesTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(tiny)))


def test_shape_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "shape"
    _write_dataset(root, [_write_case(root, "case_0", label_shape=(16, 16, 9))])
    _expect("has shape (16, 16, 9)", "labelsTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_affine_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "affine"
    _write_dataset(root, [_write_case(root, "case_0", affine=np.diag([1.0, 1.0, 1.0, 1.0]))])
    _expect("affine different", "labelsTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_empty_label(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    _write_dataset(root, [_write_case(root, "case_0"), _write_case(root, "case_1", empty=True)])
    _expect("is empty", "labelsTr/case_1.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_label_value_not_listed(tmp_path: Path) -> None:
    root = tmp_path / "values"
    _write_dataset(root, [_write_case(root, "case_0", label_value=3)])
    _expect("label values [3]", "labelsTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_s3_dataset_is_staged_and_read(tiny: Path, s3_bucket: str, isolated_home: Path) -> None:
    from proxyhpo import storage

    storage.upload_dir(tiny, f"s3://{s3_bucket}/msd/Task09_Tiny")
    for location in (f"s3://{s3_bucket}/msd/Task09_Tiny", f"s3://{s3_bucket}/msd/Task09_Tiny/dataset.json"):
        dataset = load_dataset(location)
        assert dataset.location == location
        assert Path(dataset.root).is_relative_to(isolated_home)
        assert [c.case_id for c in dataset.cases] == ["case_0", "case_1", "case_2"]
        validate_dataset(dataset)
    assert dataset.sha256() == load_dataset(tiny).sha256()


def test_s3_dataset_missing_object(s3_bucket: str) -> None:
    from proxyhpo.errors import StorageError

    with pytest.raises(StorageError) as info:
        load_dataset(f"s3://{s3_bucket}/absent")
    assert f"s3://{s3_bucket}/absent/dataset.json: could not read the object (NoSuchKey)" in str(info.value)


def test_label_value_above_255_is_not_wrapped(tmp_path: Path) -> None:
    root = tmp_path / "big"
    entry = _write_case(root, "case_0")
    label = np.zeros((16, 16, 8), dtype=np.int16)
    label[4:9, 4:9, 2:5] = 257
    nib.save(nib.Nifti1Image(label, np.diag([0.8, 0.8, 2.5, 1.0])), root / "labelsTr" / "case_0.nii.gz")
    _write_dataset(root, [entry])
    _expect("above 255", "labelsTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_push_uploads_the_validated_data_set(tiny: Path, s3_bucket: str, isolated_home: Path) -> None:
    from proxyhpo import storage
    from proxyhpo.data.msd import push_dataset

    (tiny / "notes.txt").write_text("not part of the data set")
    url = push_dataset(tiny, f"s3://{s3_bucket}/datasets/tiny/")
    assert url == f"s3://{s3_bucket}/datasets/tiny"
    keys = {obj.object_name for obj in storage.s3_client().list_objects(bucket_name=s3_bucket, prefix="datasets/tiny/", recursive=True)}
    assert "datasets/tiny/dataset.json" in keys and "datasets/tiny/notes.txt" not in keys  # only what dataset.json lists
    assert load_dataset(url).sha256() == load_dataset(tiny).sha256()


def test_push_refuses_a_bad_data_set_before_uploading(tiny: Path, s3_bucket: str) -> None:
    from proxyhpo import storage
    from proxyhpo.data.msd import push_dataset

    (tiny / "labelsTr" / "case_1.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="case_1.nii.gz"):
        push_dataset(tiny, f"s3://{s3_bucket}/datasets/bad")
    assert list(storage.s3_client().list_objects(bucket_name=s3_bucket, prefix="datasets/bad/", recursive=True)) == []
    with pytest.raises(DataError, match="is not an s3://bucket/prefix URL"):
        push_dataset(tiny, "/tmp/somewhere")


def test_data_push_command(tiny: Path, s3_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyhpo.cli import main

    assert main(["data", "push", str(tiny), f"s3://{s3_bucket}/datasets/cli"]) == 0
    assert capsys.readouterr().out.strip() == f"s3://{s3_bucket}/datasets/cli"
    assert main(["data", "push", str(tiny / "missing"), f"s3://{s3_bucket}/datasets/x"]) == 2
    assert "missing" in capsys.readouterr().err


# --- multi-channel images and multi-class labels (issue 20) ---------------------------------------------------


def _multi_case(root: Path, name: str, channels: int, values=(1, 2, 3)) -> dict:
    """A case whose image has ``channels`` channels on its last axis (3D when 1) and whose label holds ``values``."""
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    shape = (16, 16, 8) + ((channels,) if channels > 1 else ())
    label = np.zeros((16, 16, 8), np.uint8)
    for i, value in enumerate(values):
        label[2 + 4 * i : 5 + 4 * i, 4:9, 2:5] = value
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(rng.normal(100, 10, shape).astype(np.int16), affine), root / "imagesTr" / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{name}.nii.gz")
    return {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}


BRAIN_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
BRAIN_MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def test_multi_channel_multi_class_data_set_is_accepted(tmp_path: Path) -> None:
    root = tmp_path / "brain"
    _write_dataset(root, [_multi_case(root, f"case_{i}", 4) for i in range(2)], modality=BRAIN_MODALITY, labels=BRAIN_LABELS)
    dataset = load_dataset(root)
    assert dataset.channels == 4 and dataset.labels == {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
    seen = []
    validate_dataset(dataset, on_case=lambda case: seen.append((case.image.shape, sorted(np.unique(case.label).tolist()))))
    assert seen == [((16, 16, 8, 4), [0, 1, 2, 3])] * 2  # every channel kept, channels last as stored
    assert read_case(dataset.cases[0], channel=2).image.shape == (16, 16, 8)  # one channel on request


def test_nnunet_channel_names_stand_for_modality(tmp_path: Path) -> None:
    root = tmp_path / "v2"
    _write_dataset(root, [_multi_case(root, "case_0", 2)], modality=None, channel_names={"0": "T2", "1": "ADC"}, labels=BRAIN_LABELS)
    validate_dataset(load_dataset(root))
    assert load_dataset(root).modality == {"0": "T2", "1": "ADC"}


def test_channel_count_that_differs_between_cases_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _write_dataset(root, [_multi_case(root, "case_0", 4), _multi_case(root, "case_1", 3)], modality=BRAIN_MODALITY, labels=BRAIN_LABELS)
    _expect("is 4D with 3 channels", "imagesTr/case_1.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_single_channel_case_in_a_multi_channel_set_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "three_d"
    _write_dataset(root, [_multi_case(root, "case_0", 4), _multi_case(root, "case_1", 1)], modality=BRAIN_MODALITY, labels=BRAIN_LABELS)
    error = _expect("is 3D (one channel)", "imagesTr/case_1.nii.gz", lambda: validate_dataset(load_dataset(root)))
    assert "'modality' lists 4" in str(error)


def test_modality_keys_must_number_the_channels(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    _write_dataset(root, [_multi_case(root, "case_0", 2)], modality={"0": "T2", "2": "ADC"}, labels=BRAIN_LABELS)
    _expect("'modality' keys must be the channel indices 0..1", "dataset.json", lambda: load_dataset(root))


def test_multi_class_label_value_not_declared_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "undeclared"
    labels = {"0": "background", "1": "edema", "3": "enhancing tumour"}  # 2 is not declared
    _write_dataset(root, [_multi_case(root, "case_0", 4)], modality=BRAIN_MODALITY, labels=labels)
    _expect("label values [2] not declared in dataset.json 'labels'", "labelsTr/case_0.nii.gz", lambda: validate_dataset(load_dataset(root)))


def test_classes_after_merge() -> None:
    from proxyhpo.data.prepare import classes_after_merge
    from proxyhpo.errors import ConfigError

    prostate = {0: "background", 1: "PZ", 2: "TZ"}
    assert classes_after_merge(prostate, {}) == prostate  # both zones
    assert classes_after_merge(prostate, {2: 1}) == {0: "background", 1: "PZ+TZ"}  # the paper's merge
    brain = {int(k): v for k, v in BRAIN_LABELS.items()}
    assert classes_after_merge(brain, {2: 1, 3: 1}) == {0: "background", 1: "edema+non-enhancing tumor+enhancing tumour"}
    with pytest.raises(DataError, match=r"has classes \[0, 1, 3\] after data.merge_labels"):
        classes_after_merge(brain, {2: 1})  # a gap: one output per value 0..K
    with pytest.raises(ConfigError, match=r"merges label values \[5\]"):
        classes_after_merge(brain, {5: 1})
