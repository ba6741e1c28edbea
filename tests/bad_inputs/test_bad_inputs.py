"""The corpus of bad inputs (issue 11): each ends with exit code 2 and one stderr line, nothing written.

Every bad input is generated on the fly into ``tmp_path`` (no binary fixture is committed) and run
through the real command line, :func:`proxyhpo.cli.main`; a few also run as a real subprocess, to see
the real exit code and stderr. Each asserts: exit code 2, exactly one stderr line naming the file or
setting and holding ``fix:``, no traceback, nothing at the output path and no ``.partial`` left.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from proxyhpo.cli import main


def _helpers(name: str, path: Path):
    """The helpers of another test module (``tests/`` is not a package under ``--import-mode=importlib``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_msd = _helpers("_bad_inputs_msd_helpers", Path(__file__).parents[1] / "data" / "test_msd.py")
_cli = _helpers("_bad_inputs_cli_helpers", Path(__file__).parents[1] / "test_cli.py")
write_case, write_dataset = _msd._write_case, _msd._write_dataset
trial_plan = _cli._trial_plan

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def good_dataset(root: Path, cases: int = 3) -> Path:
    """A valid tiny MSD folder (tests/data/test_msd.py's helpers) to damage."""
    return write_dataset(root, [write_case(root, f"case_{i}") for i in range(cases)])


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(nib.Nifti1Image(array, affine), path)


def entries(root: Path) -> list[dict[str, str]]:
    return json.loads((root / "dataset.json").read_text())["training"]


def set_entry(root: Path, index: int, **fields: str) -> None:
    document = json.loads((root / "dataset.json").read_text())
    document["training"][index].update(fields)
    (root / "dataset.json").write_text(json.dumps(document))


# --- the data set cases: each returns (data set location, names the line must hold) -------------------------------


def missing_dataset_json(root: Path):
    root.mkdir()
    return root, ["dataset.json", "does not exist"]


def malformed_json(root: Path):
    good_dataset(root)
    (root / "dataset.json").write_text('{"training": [')
    return root, ["dataset.json", "is not valid JSON"]


def json_nested_deep(root: Path):
    good_dataset(root)
    (root / "dataset.json").write_text("[" * 100_000 + "]" * 100_000)
    return root, ["dataset.json", "nested too deeply"]


def nul_byte_path(root: Path):
    good_dataset(root)
    set_entry(root, 1, image="./imagesTr/case\x00_1.nii.gz")
    return root, ["dataset.json", "training[1] image", "NUL byte"]


def path_leaves_folder(root: Path):
    good_dataset(root)
    outside = root.parent / "elsewhere"
    good_dataset(outside)
    set_entry(root, 2, image="../elsewhere/imagesTr/case_2.nii.gz")
    return root, ["dataset.json", "training[2] image", "leaves the data set's folder"]


def absolute_path(root: Path):
    good_dataset(root)
    set_entry(root, 0, label=str(root / "labelsTr" / "case_0.nii.gz"))
    return root, ["dataset.json", "training[0] label", "leaves the data set's folder"]


def missing_image(root: Path):
    good_dataset(root)
    (root / "imagesTr" / "case_1.nii.gz").unlink()
    return root, ["imagesTr/case_1.nii.gz", "is missing"]


def missing_label(root: Path):
    good_dataset(root)
    (root / "labelsTr" / "case_2.nii.gz").unlink()
    return root, ["labelsTr/case_2.nii.gz", "is missing"]


def symlink_loop(root: Path):
    good_dataset(root)
    loop = root / "imagesTr" / "loop.nii.gz"
    os.symlink(loop, loop)
    set_entry(root, 1, image="./imagesTr/loop.nii.gz")
    return root, ["imagesTr/loop.nii.gz", "cannot be resolved"]


def truncated_nifti(root: Path):
    good_dataset(root)
    path = root / "imagesTr" / "case_1.nii.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return root, ["imagesTr/case_1.nii.gz", "truncated or corrupt"]


def gzip_of_random_bytes(root: Path):
    good_dataset(root)
    (root / "imagesTr" / "case_0.nii.gz").write_bytes(gzip.compress(np.random.default_rng(0).bytes(4096)))
    return root, ["imagesTr/case_0.nii.gz", "not a readable NIfTI"]


def not_nifti(root: Path):
    good_dataset(root)
    (root / "labelsTr" / "case_0.nii.gz").write_text("id,value\n1,2\n")
    return root, ["labelsTr/case_0.nii.gz", "not a readable NIfTI"]


def shape_mismatch(root: Path):
    write_dataset(root, [write_case(root, "case_0"), write_case(root, "case_1", label_shape=(16, 16, 9))])
    return root, ["labelsTr/case_1.nii.gz", "has shape (16, 16, 9)"]


def affine_mismatch(root: Path):
    write_dataset(root, [write_case(root, "case_0"), write_case(root, "case_1", affine=np.eye(4))])
    return root, ["labelsTr/case_1.nii.gz", "affine different"]


def empty_label(root: Path):
    write_dataset(root, [write_case(root, "case_0"), write_case(root, "case_1", empty=True)])
    return root, ["labelsTr/case_1.nii.gz", "is empty"]


def label_value_not_listed(root: Path):
    write_dataset(root, [write_case(root, "case_0"), write_case(root, "case_1", label_value=3)])
    return root, ["labelsTr/case_1.nii.gz", "label values [3]"]


def fractional_label(root: Path):
    good_dataset(root)
    label = np.zeros((16, 16, 8), np.float32)
    label[4:9, 4:9, 2:5] = 0.5
    save(root / "labelsTr" / "case_1.nii.gz", label)
    return root, ["labelsTr/case_1.nii.gz", "non-integer or negative"]


def negative_label(root: Path):
    good_dataset(root)
    label = np.zeros((16, 16, 8), np.int16)
    label[4:9, 4:9, 2:5] = -1
    save(root / "labelsTr" / "case_1.nii.gz", label)
    return root, ["labelsTr/case_1.nii.gz", "non-integer or negative"]


def image_2d(root: Path):
    good_dataset(root)
    save(root / "imagesTr" / "case_1.nii.gz", np.ones((16, 16), np.int16))
    return root, ["imagesTr/case_1.nii.gz", "is 2D", "expected a 3D image"]


def image_4d(root: Path):
    good_dataset(root)  # modality lists one channel: 3D expected
    save(root / "imagesTr" / "case_1.nii.gz", np.ones((16, 16, 8, 3), np.int16))
    return root, ["imagesTr/case_1.nii.gz", "is 4D with 3 channels", "'modality' lists 1"]


def label_4d(root: Path):
    good_dataset(root)
    save(root / "labelsTr" / "case_1.nii.gz", np.ones((16, 16, 8, 2), np.uint8))
    return root, ["labelsTr/case_1.nii.gz", "is 4D", "expected a 3D label"]


def channel_count_differs(root: Path):
    """A 4-channel (brain) set whose second case has 3 channels (issue 20)."""
    cases = [_msd._multi_case(root, "case_0", 4), _msd._multi_case(root, "case_1", 3), _msd._multi_case(root, "case_2", 4)]
    write_dataset(root, cases, modality=_msd.BRAIN_MODALITY, labels=_msd.BRAIN_LABELS)
    return root, ["imagesTr/case_1.nii.gz", "is 4D with 3 channels", "'modality' lists 4"]


def multi_class_label_not_declared(root: Path):
    """A multi-class (brain) set whose labels hold a class dataset.json does not declare (issue 20)."""
    labels = {key: name for key, name in _msd.BRAIN_LABELS.items() if key != "2"}
    write_dataset(root, [_msd._multi_case(root, f"case_{i}", 4) for i in range(3)], modality=_msd.BRAIN_MODALITY, labels=labels)
    return root, ["labelsTr/case_", "label values [2] not declared"]


def nan_voxels(root: Path):
    good_dataset(root)
    image = np.ones((16, 16, 8), np.float32)
    image[3, 3, 3] = np.nan
    save(root / "imagesTr" / "case_2.nii.gz", image)
    return root, ["imagesTr/case_2.nii.gz", "NaN or infinite"]


def inf_voxels(root: Path):
    good_dataset(root)
    image = np.ones((16, 16, 8), np.float32)
    image[0, 0, 0] = -np.inf
    save(root / "imagesTr" / "case_0.nii.gz", image)
    return root, ["imagesTr/case_0.nii.gz", "NaN or infinite"]


def zero_length_axis(root: Path):
    good_dataset(root)
    save(root / "imagesTr" / "case_1.nii.gz", np.ones((16, 0, 8), np.int16))
    return root, ["imagesTr/case_1.nii.gz", "zero-length axis"]


def duplicated_case(root: Path):
    entry = write_case(root, "case_0")
    write_dataset(root, [entry, write_case(root, "case_1"), entry])
    return root, ["dataset.json", "listed twice"]


def same_name_other_folder(root: Path):
    good_dataset(root)
    (root / "imagesTr" / "b").mkdir()
    (root / "labelsTr" / "b").mkdir()
    for kind in ("imagesTr", "labelsTr"):
        (root / kind / "b" / "case_0.nii.gz").write_bytes((root / kind / "case_1.nii.gz").read_bytes())
    set_entry(root, 1, image="./imagesTr/b/case_0.nii.gz", label="./labelsTr/b/case_0.nii.gz")
    return root, ["dataset.json", "case id 'case_0'", "training[0]"]


DATA_CASES: list[Callable] = [
    missing_dataset_json, malformed_json, json_nested_deep, nul_byte_path, path_leaves_folder, absolute_path,
    missing_image, missing_label, symlink_loop, truncated_nifti, gzip_of_random_bytes, not_nifti, shape_mismatch,
    affine_mismatch, empty_label, label_value_not_listed, fractional_label, negative_label, image_2d, image_4d,
    label_4d, channel_count_differs, multi_class_label_not_declared, nan_voxels, inf_voxels, zero_length_axis, duplicated_case, same_name_other_folder,
]


def assert_one_line(code: int, stderr: str, command: str, names: list[str], out: Path | None, root: Path) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"proxyhpo {command}: error: "), line
    assert "fix:" in line, line
    assert len(line) < 1000, line
    for name in names:
        assert name in line, (name, line)
    if out is not None:
        assert not out.exists(), out
    assert not list(root.rglob("*.partial")), list(root.rglob("*.partial"))
    return line


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("make", DATA_CASES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["select", "similarity"])
def test_bad_data_set(capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Callable, command: str) -> None:
    root, names = make(tmp_path / "Task09_Bad")
    out = tmp_path / "out" / ("manifest.json" if command == "select" else "sim")
    if command == "select":
        argv = ["select", root, "--method", "random", "--budget", "2", "--out", out]
    else:
        argv = ["similarity", root, "--metric", "mi", "--patch", "16", "--device", "cpu", "--out", out]
    code, err = cli(capsys, *argv)
    assert_one_line(code, err, command, names, out, tmp_path)


@pytest.mark.parametrize("cases", [1, 2])
def test_too_few_cases(capsys: pytest.CaptureFixture[str], tmp_path: Path, cases: int) -> None:
    root = good_dataset(tmp_path / "few", cases=cases)
    out = tmp_path / "manifest.json"
    code, err = cli(capsys, "select", root, "--method", "random", "--budget", "3", "--out", out)
    assert_one_line(code, err, "select", ["dataset.json", "fewer than the budget 3"], out, tmp_path)
    if cases == 1:
        sim = tmp_path / "sim"
        code, err = cli(capsys, "similarity", root, "--metric", "mi", "--patch", "16", "--device", "cpu", "--out", sim)
        assert_one_line(code, err, "similarity", ["dataset.json", "at least 2"], sim, tmp_path)


@pytest.mark.parametrize("cases", [1, 3])
def test_too_few_cases_for_the_study_split(tmp_path: Path, cases: int) -> None:
    from proxyhpo.config import StudyConfig
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.errors import DataError

    root = good_dataset(tmp_path / "few", cases=cases)
    study = StudyConfig.model_validate({"name": "s", "data": {"dataset": str(root)}, "selection": {"method": "random", "budget": 4}})
    with pytest.raises(DataError) as info:
        prepare_study_data(study)
    assert "dataset.json" in str(info.value) and "fix:" in str(info.value)


def test_too_few_cases_in_run(capsys: pytest.CaptureFixture[str], tmp_path: Path, isolated_home: Path) -> None:
    """`proxyhpo run` on a data set with one case: refused before the pipeline, with one line (no ValueError from the split)."""
    root = good_dataset(tmp_path / "one", cases=1)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": str(root)}, "selection": {"method": "random", "budget": 4}}))
    code, err = cli(capsys, "run", config)
    assert_one_line(code, err, "run", ["dataset.json", "fix:"], None, tmp_path)
    assert not (isolated_home / "artifacts").exists() and not (isolated_home / "mlflow.db").exists()


# --- the object store: an endpoint that does not answer, credentials it refuses --------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, then closed: nothing listens there, connections are refused at once
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_s3_endpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("PROXYHPO_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "some-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret-value")
    monkeypatch.setenv("PROXYHPO_S3_RETRIES", "1")  # the documented bound: 2 attempts, 0.5 s apart
    out = tmp_path / "manifest.json"
    started = time.monotonic()
    code, err = cli(capsys, "select", "s3://datasets/spleen", "--method", "random", "--budget", "2", "--out", out)
    assert time.monotonic() - started < 5
    names = ["s3://datasets/spleen/dataset.json", endpoint, "PROXYHPO_S3_ENDPOINT", "did not answer", "in 2 attempts"]
    line = assert_one_line(code, err, "select", names, out, tmp_path)
    assert "some-secret-value" not in line
    assert not (isolated_home / "data").exists()  # nothing staged


def test_bad_s3_retry_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYHPO_S3_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "some-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret-value")
    monkeypatch.setenv("PROXYHPO_S3_RETRIES", "many")
    out = tmp_path / "manifest.json"
    code, err = cli(capsys, "select", "s3://datasets/spleen", "--method", "random", "--budget", "2", "--out", out)
    assert_one_line(code, err, "select", ["PROXYHPO_S3_RETRIES", "'many'", "whole number"], out, tmp_path)


@pytest.mark.s3
def test_wrong_s3_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, isolated_home: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxyhpo import storage

    root = good_dataset(tmp_path / "data")
    url = f"s3://{s3_bucket}/datasets/tiny"
    storage.upload_dir(root, url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-4d2a")
    out = tmp_path / "out" / "manifest.json"
    started = time.monotonic()
    code, err = cli(capsys, "select", url, "--method", "random", "--budget", "2", "--out", out)
    assert time.monotonic() - started < 5  # refused credentials are not retried
    endpoint = os.environ["PROXYHPO_S3_ENDPOINT"]
    names = [f"{url}/dataset.json", endpoint, "refused the credentials", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"]
    line = assert_one_line(code, err, "select", names, out, tmp_path)
    assert "wrong-secret-4d2a" not in line
    assert not (isolated_home / "data").exists()  # nothing staged


def test_subprocess_unreachable_s3_endpoint(tmp_path: Path) -> None:
    """The real process: no urllib3 warning lines before the error, exit code 2, in bounded time."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = dict(
        os.environ, PROXYHPO_HOME=str(tmp_path / "home"), PROXYHPO_S3_ENDPOINT=endpoint, PROXYHPO_S3_RETRIES="2",
        AWS_ACCESS_KEY_ID="some-key", AWS_SECRET_ACCESS_KEY="some-secret-value",
    )
    out = tmp_path / "manifest.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "proxyhpo", "similarity", "s3://datasets/spleen", "--out", str(tmp_path / "sim")],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert time.monotonic() - started < 60  # the interpreter's start and imports included, on a busy machine
    line = assert_one_line(done.returncode, done.stderr, "similarity", [endpoint, "did not answer", "in 3 attempts over"], out, tmp_path)
    assert int(line.split("in 3 attempts over ")[1].split(" s")[0]) <= 5  # the retries themselves wait 1.5 s
    assert not (tmp_path / "sim").exists() and not (tmp_path / "home").exists()


# --- configs -------------------------------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
) + "\n"

CONFIG_CASES = {
    "alias_bomb": (ALIAS_BOMB, ["alias bomb"]),
    "deeply_nested": ("name: " + "[" * 5000 + "]" * 5000 + "\n", ["nested deeper"]),
    "empty": ("", ["is empty"]),
    "only_a_comment": ("# nothing here\n", ["is empty"]),
    "yaml_syntax_error": ("name: s\ndata: {dataset: d\nsearch:\n  rounds: [1, 2\n", ["is not valid YAML"]),
    "not_utf8": (b"name: caf\xe9\n", ["not UTF-8"]),
    "not_a_mapping": ("- a\n- b\n", ["not a mapping"]),
    "unknown_key": (yaml.safe_dump({"name": "s", "data": {"dataset": "d"}, "trainig": {"epochs": 2}}), ["unknown key 'trainig'"]),
    "wrong_type": (yaml.safe_dump({"name": "s", "data": {"dataset": "d"}, "search": {"rounds": "many"}}), ["search.rounds"]),
    "out_of_range": (yaml.safe_dump({"name": "s", "data": {"dataset": "d"}, "search": {"rounds": 0}}), ["search.rounds"]),
    "val_fraction_out_of_range": (yaml.safe_dump({"name": "s", "data": {"dataset": "d", "val_fraction": 1.5}}), ["data.val_fraction"]),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    text, names = CONFIG_CASES[name]
    config = tmp_path / "study.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    before = sorted(tmp_path.rglob("*"))
    started = time.monotonic()
    code, err = cli(capsys, "run", config)
    assert time.monotonic() - started < 2.0
    assert_one_line(code, err, "run", [str(config), *names], None, tmp_path)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


# --- trial plans: the trainer's own reading of its cases -----------------------------------------------------------


@pytest.fixture(scope="module")
def plan_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from proxyhpo.data.synthetic import write_synthetic_dataset

    folder = tmp_path_factory.mktemp("plan-data") / "spleen"
    write_synthetic_dataset("spleen", folder, cases=4, size=32, seed=3)
    return folder


def _damaged_copy(plan_data: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(plan_data, tmp_path / "data"))


def _first_image(data: Path) -> Path:
    return data / entries(data)[0]["image"]


def _first_label(data: Path) -> Path:
    return data / entries(data)[0]["label"]


def train_gzip_random(data: Path, tmp_path: Path):
    _first_image(data).write_bytes(gzip.compress(np.random.default_rng(1).bytes(8192)))
    return trial_plan(tmp_path, data), [_first_image(data).name, "not a readable NIfTI"]


def train_2d_image(data: Path, tmp_path: Path):
    save(_first_image(data), np.ones((32, 32), np.int16), nib.load(_first_label(data)).affine)
    return trial_plan(tmp_path, data), [_first_image(data).name, "is 2D"]


def train_4d_image(data: Path, tmp_path: Path):
    shape = nib.load(_first_label(data)).shape
    image = np.random.default_rng(4).integers(0, 100, (*shape, 2)).astype(np.int16)  # not constant: that is refused first
    save(_first_image(data), image, nib.load(_first_label(data)).affine)
    return trial_plan(tmp_path, data), [_first_image(data).name, "is 4D"]


def train_nan_voxels(data: Path, tmp_path: Path):
    image = nib.load(_first_image(data))
    array = image.get_fdata(dtype=np.float32)
    array[0, 0, 0] = np.nan
    save(_first_image(data), array, image.affine)
    return trial_plan(tmp_path, data), [_first_image(data).name, "NaN or infinite"]


def train_fractional_label(data: Path, tmp_path: Path):
    label = nib.load(_first_label(data))
    array = label.get_fdata(dtype=np.float32) * 0.5
    save(_first_label(data), array, label.affine)
    return trial_plan(tmp_path, data), [_first_label(data).name, "non-integer or negative"]


def train_path_leaves_data(data: Path, tmp_path: Path):
    plan = trial_plan(tmp_path, data)
    document = yaml.safe_load(plan.read_text())
    stray = tmp_path / "notes.txt"
    stray.write_text("not an image\n")
    document["train"][0]["image"] = "../" * 12 + str(stray).lstrip("/")
    plan.write_text(yaml.safe_dump(document))
    return plan, ["notes.txt", "not a readable NIfTI"]


def train_nul_path(data: Path, tmp_path: Path):
    plan = trial_plan(tmp_path, data)
    document = yaml.safe_load(plan.read_text())
    document["val"][0]["label"] = str(_first_label(data)) + "\x00.nii.gz"
    plan.write_text(yaml.safe_dump(document))
    return plan, ["val[0].label"]


def train_escaping_trial_id(data: Path, tmp_path: Path):
    plan = trial_plan(tmp_path, data, save_model_dir=str(tmp_path / "models"))
    document = yaml.safe_load(plan.read_text())
    document["trials"][0]["trial_id"] = "../../escape"
    plan.write_text(yaml.safe_dump(document))
    return plan, ["trials.0.trial_id", "not a safe file name"]


TRAIN_CASES = [
    train_gzip_random, train_2d_image, train_4d_image, train_nan_voxels, train_fractional_label,
    train_path_leaves_data, train_nul_path, train_escaping_trial_id,
]


@pytest.mark.parametrize("make", TRAIN_CASES, ids=lambda f: f.__name__)
def test_bad_trial_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path, plan_data: Path, make: Callable) -> None:
    data = _damaged_copy(plan_data, tmp_path)
    plan, names = make(data, tmp_path)
    out = tmp_path / "results.json"
    code, err = cli(capsys, "train", plan, "--out", out)
    assert_one_line(code, err, "train", names, out, tmp_path)
    assert not (tmp_path / "escape.pt").exists() and not list(tmp_path.rglob("*.pt"))


# --- outputs -------------------------------------------------------------------------------------------------------


def test_unwritable_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_dataset(tmp_path / "data")
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = blocker / "manifest.json"
    code, err = cli(capsys, "select", root, "--method", "random", "--budget", "2", "--out", out)
    line = assert_one_line(code, err, "select", [str(blocker)], None, tmp_path)
    assert ".partial" not in line
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "manifest.json"
        code, err = cli(capsys, "select", root, "--method", "random", "--budget", "2", "--out", out)
        assert_one_line(code, err, "select", [str(locked), "not writable"], out, tmp_path)


def test_out_folder_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_dataset(tmp_path / "data")
    out = tmp_path / "sim"
    out.write_text("a file")
    code, err = cli(capsys, "similarity", root, "--metric", "mi", "--patch", "16", "--device", "cpu", "--out", out)
    assert_one_line(code, err, "similarity", [str(out), "not a folder"], None, tmp_path)
    assert out.read_text() == "a file"


def test_local_only_out_refuses_s3(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "synth", "spleen", "--out", "s3://bucket/synth", "--cases", "2", "--size", "32")
    assert_one_line(code, err, "synth", ["s3://bucket/synth", "local"], None, tmp_path)
    assert not (tmp_path / "s3:").exists()


def test_out_s3_writes_the_object_not_a_local_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxyhpo import storage

    root = good_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    url = f"s3://{s3_bucket}/out/manifest.json"
    code, err = cli(capsys, "select", root, "--method", "random", "--budget", "2", "--out", url)
    assert code == 0, err
    assert json.loads(storage.read_bytes(url))["budget"] == 2
    sim = f"s3://{s3_bucket}/out/sim"
    code, err = cli(capsys, "similarity", root, "--metric", "mi", "--patch", "16", "--device", "cpu", "--out", sim)
    assert code == 0, err
    assert json.loads(storage.read_bytes(f"{sim}/cases.json")) == ["case_0", "case_1", "case_2"]
    assert not (tmp_path / "s3:").exists()


def test_out_errors_name_the_target_not_the_partial_file() -> None:
    from proxyhpo.cli import _user_path

    assert _user_path("/x/out/.manifest.json.k2j3h4.partial") == "/x/out/manifest.json"
    assert _user_path("/x/out/manifest.json") == "/x/out/manifest.json"
    assert _user_path("/x/.phantoms.k2j3h4.partial/imagesTr/spleen_1.nii.gz") == "/x/phantoms/imagesTr/spleen_1.nii.gz"  # a staging folder


def test_similarity_failure_part_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo import storage
    from proxyhpo.similarity.proxy_data import SimilarityResult, write_similarity

    result = SimilarityResult(metric="mi", crop="none", case_ids=("a", "b"), matrix=np.eye(2))
    real = storage.atomic_write_bytes
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(storage, "atomic_write_bytes", failing)
    with pytest.raises(OSError):
        write_similarity(result, tmp_path / "sim")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(storage, "atomic_write_bytes", real)
    written = write_similarity(result, tmp_path / "sim")
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == ["cases.json", "importance.csv", "similarity.npy"]
    assert [Path(p).name for p in written] == ["similarity.npy", "cases.json", "importance.csv"]


# --- real processes: the real exit code and stderr, in bounded time and memory -------------------------------------


def _subprocess(tmp_path: Path, *argv: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PROXYHPO_HOME=str(tmp_path / "home"))
    return subprocess.run([sys.executable, "-m", "proxyhpo", *map(str, argv)], capture_output=True, text=True, timeout=300, env=env)


def test_subprocess_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(ALIAS_BOMB)
    limit = 2 << 30  # 2 GiB of address space: a 10 GB expansion could not happen
    code = (
        "import resource, sys, time; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); t = time.monotonic()\n"
        "from proxyhpo.cli import main\n"
        "c = main(['run', sys.argv[1]]); print(f'{{time.monotonic() - t:.3f}}'); sys.exit(c)"
    ).format(limit)
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert float(done.stdout.strip()) < 2.0
    assert_one_line(done.returncode, done.stderr, "run", [str(config), "alias bomb"], None, tmp_path)


@pytest.mark.parametrize("make", [nul_byte_path, gzip_of_random_bytes, image_4d], ids=lambda f: f.__name__)
def test_subprocess_bad_data_set(tmp_path: Path, make: Callable) -> None:
    root, names = make(tmp_path / "Task09_Bad")
    out = tmp_path / "manifest.json"
    done = _subprocess(tmp_path, "select", root, "--method", "random", "--budget", "2", "--out", out)
    assert_one_line(done.returncode, done.stderr, "select", names, out, tmp_path)


def test_subprocess_train_gzip_of_random_bytes(tmp_path: Path, plan_data: Path) -> None:
    data = _damaged_copy(plan_data, tmp_path)
    plan, names = train_gzip_random(data, tmp_path)
    out = tmp_path / "results.json"
    done = _subprocess(tmp_path, "train", plan, "--out", out)
    assert done.returncode != -6, "aborted (SIGABRT)"
    assert_one_line(done.returncode, done.stderr, "train", names, out, tmp_path)

