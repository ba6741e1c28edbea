"""The hostile-input corpus (issue 23): each case is a command or a library call, its exit code and a word its line holds.

A case runs in-process (:func:`proxyhpo.cli.main`, or the library call itself, an :class:`InputError` read as
exit code 2 and a :class:`ProxyHPOError` as 1), in a fresh folder that is also the current directory, with
``PROXYHPO_HOME`` inside it. Each asserts the exit code, exactly one line of error (no traceback), the word
in it, no password in it, and that nothing changed outside the folder the case names as its output (by
default: nothing changed anywhere in the test's folder, nor beside it).

The cases are grouped as the issue groups them: writes where nobody pointed, values nobody bounded,
tracebacks where one line was promised, waits without end.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import yaml

from proxyhpo.cli import main
from proxyhpo.errors import InputError, ProxyHPOError
from tiny import tiny_recipe

PASSWORD = "s3cret-corpus-pw"


@dataclass(frozen=True)
class Case:
    """One hostile input: ``make(folder)`` prepares it and returns the argv of ``proxyhpo`` or a call to make.

    Attributes:
        code: the exit code expected (2 bad input, 1 a failure outside, 0 bounded and done).
        word: a word the one line must hold (case-insensitive).
        env: environment variables set for the case.
        output: the one folder (relative to the case's folder) the case may write; None: none.
    """

    name: str
    make: Callable[[Path], list[str] | Callable[[], Any]]
    code: int
    word: str
    env: dict[str, str] | None = None
    output: str | None = None


CASES: list[Case] = []


def case(code: int, word: str, *, env: dict[str, str] | None = None, output: str | None = None):
    """Register the decorated ``make`` function as a :class:`Case` named after it."""

    def register(make: Callable[[Path], Any]) -> Callable[[Path], Any]:
        CASES.append(Case(make.__name__, make, code, word, env, output))
        return make

    return register


# --- inputs ---------------------------------------------------------------------------------------------------------


def _example_study() -> dict[str, Any]:
    from proxyhpo.config.base import load_yaml

    return load_yaml(Path(__file__).parents[2] / "components" / "proxyhpo" / "examples" / "demo.yaml")


def study_file(folder: Path, text: str | None = None, **changes: Any) -> Path:
    """A copy of the demo study with ``changes`` (dotted keys: ``training.epochs``), or with raw ``text``."""
    path = folder / "study.yaml"
    if text is None:
        document = _example_study()
        for dotted, value in changes.items():
            node = document
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        text = yaml.safe_dump(document, sort_keys=False)
    path.write_text(text)
    return path


def compile_study(folder: Path, text: str | None = None, **changes: Any) -> list[str]:
    """``proxyhpo compile`` of a damaged study: the config is refused at load, before anything compiles."""
    return ["compile", str(study_file(folder, text, **changes)), "--out", str(folder / "out")]


def with_yaml_line(key: str, value: str, **changes: Any) -> str:
    """The demo study with ``changes``, and the YAML ``key: value`` set as written (a dotted key's parents kept)."""
    document = _example_study() | changes
    *parents, last = key.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = "@@VALUE@@"
    return yaml.safe_dump(document, sort_keys=False).replace("'@@VALUE@@'", value)


_DATA: dict[str, Path] = {}


def tiny_data() -> Path:
    """A 4-case synthetic spleen set of 32^2 slices, made once per test process (outside every case's folder)."""
    if "spleen" not in _DATA:
        from proxyhpo.data.synthetic import write_synthetic_dataset

        folder = Path(tempfile.mkdtemp(prefix="proxyhpo-corpus-")) / "spleen"
        write_synthetic_dataset("spleen", folder, cases=4, size=32, seed=3)
        _DATA["spleen"] = folder
    return _DATA["spleen"]


def trial_plan(folder: Path, *, trials: list[dict[str, Any]] | None = None, **changes: Any) -> Path:
    """A tiny trial plan on :func:`tiny_data` (1 epoch, 16^3 patches, CPU), with ``changes`` at its top level."""
    data = _DATA.get("thin") or tiny_data()
    entries = json.loads((data / "dataset.json").read_text())["training"]
    items = [{"image": str(data / e["image"]), "label": str(data / e["label"])} for e in entries]
    plan = {
        "recipe": tiny_recipe(),
        "train": items[:2],
        "val": items[2:3],
        "epochs": 1,
        "batch_size": 1,
        "device": "cpu",
        "num_workers": 0,
        "trials": trials or [{"trial_id": "t0", "hyperparameters": {"lr": 1e-3}, "seed": 1}],
        **changes,
    }
    path = folder / "trial.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def train(folder: Path, **changes: Any) -> list[str]:
    return ["train", str(trial_plan(folder, **changes)), "--out", str(folder / "out" / "results.json")]


def record_file(folder: Path, text: str | None = None, *, sparse: int = 0) -> Callable[[], Any]:
    """A call of ``TrialResults.read`` on a file holding ``text`` (or ``sparse`` bytes of nothing)."""
    from proxyhpo.config.trial import TrialResults

    path = folder / "results.json"
    if sparse:
        with open(path, "wb") as handle:
            handle.truncate(sparse)
    else:
        path.write_text(text or "")
    return lambda: TrialResults.read(path)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "corpus-key", "AWS_SECRET_ACCESS_KEY": PASSWORD}


def s3_read() -> Callable[[], Any]:
    from proxyhpo import storage

    return lambda: storage.read_bytes("s3://bucket/key")


# --- writes where nobody pointed ------------------------------------------------------------------------------------


@case(2, "safe file name")
def study_name_escapes_the_output_folder(folder: Path):
    return compile_study(folder, name="x/../../../../outside/escaped")


@case(2, "safe file name")
def study_name_carries_yaml(folder: Path):
    return compile_study(folder, name="demo\nkind: Secret")


@case(2, "at most 48")
def study_name_too_long(folder: Path):
    return compile_study(folder, name="s" * 300)


@case(2, "safe file name")
def study_name_hidden_file(folder: Path):
    return compile_study(folder, name=".hidden")


@case(2, "safe file name")
def study_name_with_space(folder: Path):
    return compile_study(folder, name="my study")


@case(2, "safe file name")
def study_name_with_colon(folder: Path):
    return compile_study(folder, name="a: b")


@case(2, "safe file name")
def trial_id_escapes(folder: Path):
    return train(folder, trials=[{"trial_id": "../../escaped", "hyperparameters": {"lr": 1e-3}}])


@case(2, "safe file name")
def trial_id_with_newline(folder: Path):
    return train(folder, trials=[{"trial_id": "t\nkind: Secret", "hyperparameters": {"lr": 1e-3}}])


def _atomic_write(target: Path) -> Callable[[], Any]:
    from proxyhpo.storage import atomic_write_text

    return lambda: atomic_write_text(target, "replaced")


def null_device(folder: Path) -> Path:
    """A character device to write over: as root, a null device of the case's own (a writer that regressed would
    replace it, not the machine's /dev/null); else /dev/null itself, which only root could replace."""
    if os.geteuid() != 0:
        return Path(os.devnull)
    node = folder / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


@case(2, "character device")
def writer_over_dev_null(folder: Path):
    return _atomic_write(null_device(folder))


@case(2, "FIFO")
def writer_over_a_fifo(folder: Path):
    os.mkfifo(folder / "pipe")
    return _atomic_write(folder / "pipe")


@case(2, "socket")
def writer_over_a_socket(folder: Path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock"))
    _KEEP.append(server)
    return _atomic_write(folder / "sock")


@case(2, "folder")
def writer_over_a_folder(folder: Path):
    (folder / "dir").mkdir()
    return _atomic_write(folder / "dir")


@case(2, "symbolic link")
def writer_over_a_link_to_a_fifo(folder: Path):
    os.mkfifo(folder / "pipe")
    (folder / "link").symlink_to(folder / "pipe")
    return _atomic_write(folder / "link")


@case(2, "symbolic link")
def writer_over_a_link_to_dev_null(folder: Path):
    (folder / "link").symlink_to(null_device(folder))
    return _atomic_write(folder / "link")


@case(2, "FIFO")
def select_out_is_a_fifo(folder: Path):
    os.mkfifo(folder / "manifest.json")
    return ["select", str(folder / "no-data"), "--method", "random", "--budget", "2", "--out", str(folder / "manifest.json")]


@case(2, "character device")
def select_out_is_dev_null(folder: Path):
    return ["select", str(folder / "no-data"), "--method", "random", "--budget", "2", "--out", str(null_device(folder))]


@case(2, "both")
def segment_two_inputs_of_one_name(folder: Path):
    for side in ("A", "B"):
        (folder / side).mkdir()
        (folder / side / "organ_000.nii.gz").write_bytes(b"")
    return ["segment", str(folder / "model"), str(folder / "A/organ_000.nii.gz"), str(folder / "B/organ_000.nii.gz"), "--out-dir", str(folder / "masks")]


@case(2, "kept in", env={"PROXYHPO_S3_RETRIES": "0", "PROXYHPO_S3_CONNECT_TIMEOUT": "0.5", **S3_CREDENTIALS}, output="tmp")
def train_to_s3_with_s3_down(folder: Path):
    os.environ["PROXYHPO_S3_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    tempfile.tempdir = str(folder / "tmp")  # the kept results land here (reset after the case)
    (folder / "tmp").mkdir()
    return ["train", str(trial_plan(folder)), "--out", "s3://bucket/results.json"]


@case(2, "is not an s3://bucket/key URL")
def train_to_a_malformed_s3_url(folder: Path):
    return ["train", str(trial_plan(folder)), "--out", "s3://"]


# --- values nobody bounded ------------------------------------------------------------------------------------------


@case(2, "boolean")
def epochs_given_as_a_boolean(folder: Path):
    return compile_study(folder, **{"training.epochs": True})


@case(2, "pack_size")
def pack_size_zero(folder: Path):
    return compile_study(folder, **{"training.pack_size": 0})


@case(2, "pack_size")
def pack_size_huge(folder: Path):
    return compile_study(folder, **{"training.pack_size": 10**6})


def _inline_recipe(**changes: Any) -> dict[str, Any]:
    from proxyhpo.config.recipe import load_preset

    return load_preset("demo").model_dump(mode="json") | changes


@case(2, "voxels")
def patch_of_4096_cubed(folder: Path):
    return compile_study(folder, **{"training.recipe": _inline_recipe(patch_size=[4096, 4096, 4096])})


@case(2, "voxels")
def inference_window_of_4096_cubed(folder: Path):
    return compile_study(folder, **{"training.recipe": _inline_recipe(roi_size=[4096, 4096, 4096])})


@case(2, "non-finite")
def spacing_nan(folder: Path):
    return compile_study(folder, with_yaml_line("training.recipe", "{spacing: [.nan, 1.0, 1.0]}"))


@case(2, "non-finite")
def spacing_infinite(folder: Path):
    return compile_study(folder, with_yaml_line("training.recipe", "{spacing: [.inf, 1.0, 1.0]}"))


@case(2, "spacing")
def spacing_a_micrometre_of_a_millimetre(folder: Path):
    return compile_study(folder, **{"training.recipe": _inline_recipe(spacing=[1e-6, 1.0, 1.0])})


@case(2, "non-finite")
def intensity_offset_infinite(folder: Path):
    training = _example_study()["training"] | {"recipe": _inline_recipe()}
    return compile_study(folder, with_yaml_line("training.recipe.intensity_shift_offset", ".inf", training=training))


@case(2, "non-finite")
def controller_lr_infinite(folder: Path):
    return compile_study(folder, with_yaml_line("search.controller.lr", ".inf"))


@case(2, "less than or equal")
def controller_lr_huge(folder: Path):
    return compile_study(folder, **{"search.controller.lr": 1e12})


@case(2, "num_samples")
def num_samples_a_billion(folder: Path):
    return compile_study(folder, **{"training.recipe": _inline_recipe(num_samples=10**9)})


@case(2, "hidden_size")
def controller_hidden_size_a_billion(folder: Path):
    return compile_study(folder, **{"search.controller.hidden_size": 10**9})


@case(2, "gpus")
def gpus_a_million(folder: Path):
    return compile_study(folder, **{"resources.gpus": 10**6})


@case(2, "cases")
def synthetic_cases_a_billion(folder: Path):
    return compile_study(folder, **{"data.synthetic": {"cases": 10**9}})


@case(2, "cases")
def synth_command_a_billion_cases(folder: Path):
    return ["synth", "spleen", "--out", str(folder / "out"), "--cases", str(10**9)]


@case(2, "size")
def synth_command_huge_slices(folder: Path):
    return ["synth", "spleen", "--out", str(folder / "out"), "--size", "100000"]


@case(2, "repeats key 'epochs'")
def duplicate_yaml_key(folder: Path):
    return compile_study(folder, _example_study_text().replace("training:\n", "training:\n  epochs: 3\n  epochs: 4\n", 1))


def _example_study_text() -> str:
    return yaml.safe_dump(_example_study(), sort_keys=False)


@case(2, "repeats key 'name'")
def duplicate_top_level_key(folder: Path):
    return compile_study(folder, _example_study_text() + "name: other\n")


@case(2, "bytes")
def a_gigabyte_config(folder: Path):
    path = folder / "study.yaml"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: a gigabyte that costs no disk
    return ["compile", str(path), "--out", str(folder / "out")]


@case(2, "not a regular file")
def config_from_dev_zero(folder: Path):
    return ["compile", "/dev/zero", "--out", str(folder / "out")]


@case(2, "folder")
def config_is_a_folder(folder: Path):
    (folder / "study.yaml").mkdir()
    return ["compile", str(folder / "study.yaml"), "--out", str(folder / "out")]


@case(2, "NUL")
def nul_byte_in_a_synthetic_data_path(folder: Path):
    return compile_study(folder, **{"data.dataset": "data/sp\0leen", "data.synthetic": {"cases": 4}})


@case(2, "boolean")
def trial_epochs_a_boolean(folder: Path):
    return train(folder, epochs=True)


@case(2, "less than or equal")
def trial_epochs_a_trillion(folder: Path):
    return train(folder, epochs=10**12)


@case(2, "boolean")
def trial_patch_of_booleans(folder: Path):
    return train(folder, recipe=_inline_recipe(patch_size=[True, 16, 16]))


@case(2, "seed")
def trial_seed_past_uint32(folder: Path):
    return train(folder, trials=[{"trial_id": "t0", "hyperparameters": {"lr": 1e-3}, "seed": 2**40}])


@case(2, "pack_size")
def trial_pack_size_zero(folder: Path):
    return train(folder, pack_size=0)


@case(2, "pack_size 2 needs at least")
def trial_pack_larger_than_memory(folder: Path):
    # two full U-Nets on 256^3 patches, 64 a step: about 190 GiB each (more than any machine that runs these tests
    # has free), counted before a model is built (issue 23)
    from proxyhpo.config import NetworkConfig

    full = NetworkConfig.full().model_dump(mode="json")
    trials = [{"trial_id": f"t{i}", "hyperparameters": {"lr": 1e-3}, "seed": i, "network": full} for i in range(2)]
    return train(folder, trials=trials, pack_size=2, batch_size=64, recipe=tiny_recipe(patch_size=[256, 256, 256]))


@case(2, "lr")
def trial_lr_huge(folder: Path):
    return train(folder, trials=[{"trial_id": "t0", "hyperparameters": {"lr": 1e9}}])


@case(2, "patch")
def similarity_patch_600(folder: Path):
    return ["similarity", str(folder / "no-data"), "--patch", "600", "--out", str(folder / "out")]


@case(2, "PROXYHPO_S3_RETRIES", env={"PROXYHPO_S3_RETRIES": "1e9", "PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def s3_retries_1e9(folder: Path):
    return s3_read()


@case(2, "PROXYHPO_S3_RETRIES", env={"PROXYHPO_S3_RETRIES": "100000", "PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def s3_retries_100000(folder: Path):
    return s3_read()


@case(2, "PROXYHPO_S3_CONNECT_TIMEOUT", env={"PROXYHPO_S3_CONNECT_TIMEOUT": "0", "PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def s3_connect_timeout_zero(folder: Path):
    return s3_read()


@case(2, "PROXYHPO_S3_CONNECT_TIMEOUT", env={"PROXYHPO_S3_CONNECT_TIMEOUT": "inf", "PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def s3_connect_timeout_infinite(folder: Path):
    return s3_read()


@case(2, "PROXYHPO_S3_READ_TIMEOUT", env={"PROXYHPO_S3_READ_TIMEOUT": "-1", "PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def s3_read_timeout_negative(folder: Path):
    return s3_read()


@case(0, ".proxyhpo", env={"PROXYHPO_HOME": ""})
def empty_proxyhpo_home(folder: Path):
    from proxyhpo.paths import proxyhpo_home

    return lambda: str(proxyhpo_home().relative_to(Path.cwd()))


# --- tracebacks where one line was promised -------------------------------------------------------------------------


@case(2, "not a URL", env={"PROXYHPO_S3_ENDPOINT": "http://[::1", **S3_CREDENTIALS})
def s3_endpoint_malformed(folder: Path):
    return s3_read()


@case(2, "user or password", env={"PROXYHPO_S3_ENDPOINT": f"http://admin:{PASSWORD}@127.0.0.1:9", **S3_CREDENTIALS})
def s3_endpoint_with_credentials(folder: Path):
    return s3_read()


@case(2, "http(s)://host", env={"PROXYHPO_S3_ENDPOINT": "ftp://127.0.0.1:21", **S3_CREDENTIALS})
def s3_endpoint_wrong_scheme(folder: Path):
    return s3_read()


@case(2, "not a URL", env={"PROXYHPO_S3_ENDPOINT": "http://[::1", **S3_CREDENTIALS})
def data_push_with_a_malformed_endpoint(folder: Path):
    return ["data", "push", str(tiny_data()), "s3://bucket/spleen"]


@case(1, "does not answer", env={"MLFLOW_TRACKING_URI": f"http://admin:{PASSWORD}@127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
def report_against_a_dead_server(folder: Path):
    return ["report", "demo"]


@case(1, "scheme", env={"MLFLOW_TRACKING_URI": "bogus://store"})
def report_with_a_bogus_scheme(folder: Path):
    return ["report", "demo"]


@case(1, "pragma integrity_check")
def report_on_a_corrupt_sqlite_store(folder: Path):
    store = folder / "mlflow.db"
    store.write_bytes(b"this is not a database" * 200)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    return ["report", "demo"]


@case(2, "not a regular file")
def record_from_dev_zero(folder: Path):
    from proxyhpo.config.trial import TrialResults

    return lambda: TrialResults.read("/dev/zero")


@case(2, "not a regular file")
def record_from_a_fifo(folder: Path):
    from proxyhpo.config.trial import TrialResults

    os.mkfifo(folder / "results.json")
    return lambda: TrialResults.read(folder / "results.json")


@case(2, "nested")
def record_nested_100000_deep(folder: Path):
    return record_file(folder, "[" * 100_000 + "]" * 100_000)


@case(2, "digits")
def record_with_an_integer_of_5000_digits(folder: Path):
    return record_file(folder, '{"schema_version": ' + "9" * 5000 + "}")


@case(2, "NaN")
def record_with_nan(folder: Path):
    return record_file(folder, '{"schema_version": 1, "results": NaN}')


@case(2, "bytes")
def record_of_100_megabytes(folder: Path):
    return record_file(folder, sparse=100 << 20)


@case(2, "not a regular file")
def config_library_call_on_dev_zero(folder: Path):
    from proxyhpo.config.study import load_study

    return lambda: load_study("/dev/zero")


@case(2, "nested deeper")
def config_nested_deep(folder: Path):
    path = folder / "study.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    from proxyhpo.config.study import load_study

    return lambda: load_study(path)


@case(2, "s3://bucket/prefix")
def compile_data_root_a_local_path(folder: Path):
    return ["compile", str(study_file(folder)), "--data-root", "/local/path", "--out", str(folder / "out")]


@case(2, "s3://bucket/prefix")
def compile_data_root_without_a_bucket(folder: Path):
    return ["compile", str(study_file(folder)), "--data-root", "s3://", "--out", str(folder / "out")]


# --- the data check refuses what cannot train ------------------------------------------------------------------------

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def msd_folder(folder: Path, cases: int = 3) -> Path:
    """A valid tiny MSD data set (16 x 16 x 8 volumes) under ``folder/data``, to damage."""
    root = folder / "data"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    entries = []
    for i in range(cases):
        image = np.random.default_rng(i).normal(40, 10, (16, 16, 8)).astype(np.int16)
        label = np.zeros((16, 16, 8), np.uint8)
        label[4:9, 4:9, 2:5] = 1
        nib.save(nib.Nifti1Image(image, AFFINE), root / "imagesTr" / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, AFFINE), root / "labelsTr" / f"case_{i}.nii.gz")
        entries.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    document = {"name": "Tiny", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"}, "training": entries}
    (root / "dataset.json").write_text(json.dumps(document))
    return root


def select(folder: Path, root: Path) -> list[str]:
    return ["select", str(root), "--method", "random", "--budget", "2", "--out", str(folder / "out" / "manifest.json")]


def _nifti(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI image whose affine is ``affine`` as given, even a singular one (kept in the sform only)."""
    image = nib.Nifti1Image(array, None)
    image.header.set_sform(affine, code=1)
    return image


def _save_case_1(root: Path, image: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(_nifti(image, affine), root / "imagesTr" / "case_1.nii.gz")
    label = np.zeros(image.shape[:3], np.uint8)
    label[4:9, 4:9, :] = 1
    nib.save(_nifti(label, affine), root / "labelsTr" / "case_1.nii.gz")


def _random(shape: tuple[int, ...] = (16, 16, 8)) -> np.ndarray:
    return np.random.default_rng(7).normal(40, 10, shape).astype(np.float32)


@case(2, "singular affine")
def singular_affine(folder: Path):
    root = msd_folder(folder)
    _save_case_1(root, _random(), np.diag([0.8, 0.0, 2.5, 1.0]))
    return select(folder, root)


@case(2, "NaN or infinite values in its affine")
def nan_affine(folder: Path):
    root = msd_folder(folder)
    affine = AFFINE.copy()
    affine[0, 3] = np.nan
    _save_case_1(root, _random(), affine)
    return select(folder, root)


@case(2, "constant")
def constant_image(folder: Path):
    root = msd_folder(folder)
    _save_case_1(root, np.full((16, 16, 8), 40, np.int16))
    return select(folder, root)


@case(2, "complex")
def complex_voxels(folder: Path):
    root = msd_folder(folder)
    _save_case_1(root, (_random() + 1j * _random()).astype(np.complex64))
    return select(folder, root)


@case(2, "no foreground")
def label_without_foreground(folder: Path):
    root = msd_folder(folder)
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), AFFINE), root / "labelsTr" / "case_2.nii.gz")
    return select(folder, root)


@case(2, "outside the data set")
def image_symlinked_out_of_the_data_set(folder: Path):
    root = msd_folder(folder)
    outside = folder / "elsewhere.nii.gz"
    nib.save(nib.Nifti1Image(_random(), AFFINE), outside)
    (root / "imagesTr" / "case_1.nii.gz").unlink()
    (root / "imagesTr" / "case_1.nii.gz").symlink_to(outside)
    return select(folder, root)


@case(2, "outside the data set", env={"PROXYHPO_S3_ENDPOINT": "http://127.0.0.1:9", **S3_CREDENTIALS})
def data_push_of_a_link_out_of_the_data_set(folder: Path):
    root = msd_folder(folder)
    outside = folder / "elsewhere.nii.gz"
    nib.save(nib.Nifti1Image(_random(), AFFINE), outside)
    (root / "labelsTr" / "case_0.nii.gz").rename(outside)
    (root / "labelsTr" / "case_0.nii.gz").symlink_to(outside)
    return ["data", "push", str(root), "s3://bucket/tiny"]


@case(2, "voxels")
def header_of_1024_cubed_voxels(folder: Path):
    root = msd_folder(folder)
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    header.set_qform(AFFINE, code=1)
    header.set_sform(AFFINE, code=1)
    body = header.binaryblock + b"\0" * 4 + bytes(4096)  # a few bytes where 4 GiB are promised
    (root / "imagesTr" / "case_1.nii.gz").write_bytes(gzip.compress(body))
    return select(folder, root)


@case(2, "thick")
def volume_one_voxel_thick(folder: Path):
    data = folder / "data"
    shutil.copytree(tiny_data(), data)
    first = json.loads((data / "dataset.json").read_text())["training"][0]
    image = nib.load(data / first["image"])
    thin = np.asarray(image.dataobj)[:, :, :1]
    nib.save(nib.Nifti1Image(thin, image.affine), data / first["image"])
    label = nib.load(data / first["label"])
    thin_label = np.asarray(label.dataobj)[:, :, :1].copy()
    thin_label[10:20, 10:20, 0] = 1
    nib.save(nib.Nifti1Image(thin_label, label.affine), data / first["label"])
    _DATA["thin"] = data
    try:
        return train(folder)
    finally:
        del _DATA["thin"]


@case(2, "recipe.spacing")
def resample_to_billions_of_voxels(folder: Path):
    return train(folder, recipe=_inline_recipe(spacing=[0.01, 0.01, 0.01], patch_size=[16, 16, 16], roi_size=[32, 32, 32]))


# --- waits without end ----------------------------------------------------------------------------------------------


@case(2, "did not answer", env={"PROXYHPO_S3_RETRIES": "0", "PROXYHPO_S3_READ_TIMEOUT": "0.5", **S3_CREDENTIALS})
def s3_server_that_never_answers(folder: Path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel accepts connections; nobody ever reads or answers them
    _KEEP.append(server)
    os.environ["PROXYHPO_S3_ENDPOINT"] = f"http://127.0.0.1:{server.getsockname()[1]}"
    return s3_read()


# --- the runner -----------------------------------------------------------------------------------------------------

_KEEP: list[socket.socket] = []  # servers a case opened, closed after it


def snapshot(root: Path, output: Path | None) -> dict[str, tuple[int, int, int]]:
    """Every entry below ``root`` (and beside it) but inside ``output``: its mode, size and modification time."""
    seen: dict[str, tuple[int, int, int]] = {}
    for base in (root.parent, root):
        for directory, folders, files in os.walk(base):
            if output is not None and Path(directory).is_relative_to(output):
                continue
            names = folders + files
            if base == root.parent:
                folders[:] = []  # beside the folder: names only, one level
            for name in names:
                path = Path(directory) / name
                if output is not None and path.is_relative_to(output):
                    continue
                info = os.lstat(path)
                kept_dir = stat.S_ISDIR(info.st_mode)
                seen[str(path)] = (info.st_mode, 0 if kept_dir else info.st_size, 0 if kept_dir else info.st_mtime_ns)
    return seen


def run(make: Callable[[], Any] | list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and error text of a command (``main``) or a library call."""
    if isinstance(make, list):
        code = main(make)
        return code, capsys.readouterr().err
    try:
        result = make()
    except InputError as exc:
        return 2, str(exc)
    except ProxyHPOError as exc:
        return 1, str(exc)
    return 0, str(result)


@pytest.mark.parametrize("corpus_case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(corpus_case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "home"))
    for name in [n for n in os.environ if n.startswith(("PROXYHPO_S3", "AWS_", "MLFLOW_S3"))]:
        monkeypatch.delenv(name)
    for name, value in (corpus_case.env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # a case may move it, or set these itself:
    for name in ("PROXYHPO_S3_ENDPOINT", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if name not in (corpus_case.env or {}):
            monkeypatch.delenv(name)
    try:
        make = corpus_case.make(folder)
        output = folder / corpus_case.output if corpus_case.output else None
        before = snapshot(tmp_path, output)
        code, text = run(make, capsys)
        after = snapshot(tmp_path, output)
    finally:
        while _KEEP:
            _KEEP.pop().close()
    assert "Traceback" not in text, text
    assert PASSWORD not in text, text
    assert code == corpus_case.code, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert corpus_case.word.lower() in lines[0].lower(), (corpus_case.word, lines[0])
    assert len(lines[0]) < 1_000, lines[0]
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) ^ set(after) | {k for k in before if before[k] != after.get(k)}}
    assert not list(tmp_path.rglob("*.partial"))


def test_the_corpus_covers_the_issue() -> None:
    """At least 60 cases, each group of the issue represented."""
    assert len(CASES) >= 60, len(CASES)
    assert len({c.name for c in CASES}) == len(CASES)


def test_a_case_id_with_a_newline_or_comma_stays_one_row_of_importance_csv() -> None:
    """importance.csv is written by the csv module: a file name with a newline, a comma or a quote is one field."""
    import csv
    import io

    from proxyhpo.similarity.proxy_data import SimilarityResult

    ids = ["plain", "new\nline", 'comma,"quote"']
    result = SimilarityResult(metric="mi", crop="none", case_ids=ids, matrix=np.array([[1.0, 0.2, 0.3], [0.2, 1.0, 0.4], [0.3, 0.4, 1.0]]))
    rows = list(csv.reader(io.StringIO(result.importance_csv())))
    assert rows[0] == ["case_id", "mean_similarity", "rank"]
    assert sorted(row[0] for row in rows[1:]) == sorted(ids)
    assert all(len(row) == 3 for row in rows)
