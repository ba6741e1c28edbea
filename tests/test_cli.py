"""The ``proxyhpo`` command: its outputs, and bad input ending with exit code 2 and one line on stderr.

Most commands run in-process through :func:`proxyhpo.cli.main`; two run as real subprocesses to prove the
exit codes end to end.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from proxyhpo import storage
from proxyhpo.cli import main
from proxyhpo.config import HyperParameters, NetworkConfig, ProxyDataManifest, SimilarityConfig, TrialSpec
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.synthetic import write_synthetic_dataset
from proxyhpo.similarity.proxy_data import compute_similarity
from proxyhpo.tracking import names
from tiny import tiny_recipe

N_CASES = 6
PATCH = "32"
METHODS = ("mi", "ncc", "mi+labelcrop", "ncc+labelcrop", "random")
MANIFEST_KEYS = {"method", "budget", "seed", "case_ids", "cases", "scores", "dataset_sha256", "train_ids", "val_ids"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic spleen cases of 32² pixels in plane, in the MSD layout (read-only for the tests)."""
    folder = tmp_path_factory.mktemp("cli-data") / "spleen"
    write_synthetic_dataset("spleen", folder, cases=N_CASES, size=32, seed=0)
    return folder


@pytest.fixture(scope="module")
def similarities(dataset: Path) -> dict[tuple[str, str], object]:
    """The library's similarity results for every (metric, crop), to check the CLI against."""
    loaded = load_dataset(dataset)
    return {
        (metric, crop): compute_similarity(loaded, SimilarityConfig(patch=int(PATCH)), metric=metric, crop=crop)
        for metric in ("mi", "ncc")
        for crop in ("label", "none")
    }


@pytest.fixture
def broken(dataset: Path, tmp_path: Path) -> Path:
    """A writable copy of the data set, to damage."""
    return Path(shutil.copytree(dataset, tmp_path / "broken"))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def select(capsys: pytest.CaptureFixture[str], source: str | Path, out: Path, method: str, budget: int = 3, seed: int = 0, *extra: str) -> dict:
    code, stdout, stderr = run_cli(capsys, "select", source, "--method", method, "--budget", budget, "--seed", seed, "--patch", PATCH, "--out", out, *extra)
    assert code == 0, stderr
    assert str(out) in stdout
    return json.loads(out.read_text())


def assert_bad_input(capsys: pytest.CaptureFixture[str], argv: list, *, names: list[str], out: Path | None, root: Path) -> str:
    """Exit code 2, exactly one stderr line naming ``names`` with a fix, no traceback, nothing left behind."""
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"proxyhpo {argv[0]}: error: ")
    assert "fix:" in line
    assert "Traceback" not in stderr
    for name in names:
        assert name in line, (name, line)
    if out is not None:
        assert not out.exists()
    assert not list(root.rglob("*.partial"))
    return line


def dataset_entries(folder: Path) -> list[dict[str, str]]:
    return json.loads((folder / "dataset.json").read_text())["training"]


# --- synth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("external", [False, True])
def test_synth_writes_msd_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path, external: bool) -> None:
    out = tmp_path / "synth"
    code, stdout, stderr = run_cli(capsys, "synth", "spleen", "--out", out, "--cases", "6", "--size", "32", *(["--external"] if external else []))
    assert code == 0, stderr
    assert str(out) in stdout
    loaded = load_dataset(out)
    assert len(loaded.cases) == 6
    assert loaded.is_ct and loaded.labels == {0: "background", 1: "spleen"}
    prefix = "btcv_like" if external else "spleen"
    assert [case.case_id for case in loaded.cases] == [f"{prefix}_{i}" for i in range(1, 7)]
    image = nib.load(loaded.cases[0].image)
    assert image.shape[:2] == (32, 32)
    assert nib.load(loaded.cases[0].label).shape == image.shape


def test_synth_internal_and_external_differ(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name, flag in (("internal", []), ("external", ["--external"])):
        assert run_cli(capsys, "synth", "spleen", "--out", tmp_path / name, "--cases", "2", "--size", "32", *flag)[0] == 0
    internal = nib.load(load_dataset(tmp_path / "internal").cases[0].image)
    external = nib.load(load_dataset(tmp_path / "external").cases[0].image)
    assert internal.shape != external.shape or not np.array_equal(internal.get_fdata(), external.get_fdata())


# --- similarity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "crop", "include_self"), [("mi", "label", True), ("ncc", "none", True), ("mi", "none", False)])
def test_similarity_outputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path, similarities: dict, metric: str, crop: str, include_self: bool
) -> None:
    out = tmp_path / "sim"
    option = [] if include_self else ["--exclude-self"]
    code, stdout, stderr = run_cli(capsys, "similarity", dataset, "--metric", metric, "--crop", crop, "--patch", PATCH, "--out", out, *option)
    assert code == 0, stderr
    assert sorted(path.name for path in out.iterdir()) == ["cases.json", "importance.csv", "similarity.npy"]
    assert all(str(out / name) in stdout for name in ("cases.json", "importance.csv", "similarity.npy"))

    matrix = np.load(out / "similarity.npy")
    assert matrix.shape == (N_CASES, N_CASES)
    np.testing.assert_allclose(matrix, matrix.T, rtol=1e-12, atol=1e-12)
    expected = similarities[(metric, crop)]
    np.testing.assert_allclose(matrix, expected.matrix, rtol=1e-6, atol=1e-9)

    cases = json.loads((out / "cases.json").read_text())
    assert cases == list(expected.case_ids)
    assert cases == [entry["image"].split("/")[-1].removesuffix(".nii.gz") for entry in dataset_entries(dataset)]

    with open(out / "importance.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["case_id", "mean_similarity", "rank"]
    body = rows[1:]
    assert sorted(row[0] for row in body) == sorted(cases)
    # importance over all pairs with the self-pair (the paper's), or over the others only
    means = matrix.mean(axis=1) if include_self else (matrix.sum(axis=1) - np.diag(matrix)) / (N_CASES - 1)
    for case_id, mean, _ in body:
        assert float(mean) == pytest.approx(means[cases.index(case_id)], rel=1e-8)
    by_rank = sorted(body, key=lambda row: int(row[2]))
    assert [int(row[2]) for row in by_rank] == list(range(1, N_CASES + 1))
    assert by_rank[0][0] == cases[int(np.argmin(means))]  # rank 1 = least similar = lowest mean
    assert [float(row[1]) for row in by_rank] == sorted(float(row[1]) for row in body)


# --- select --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_select_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path, similarities: dict, method: str) -> None:
    manifest = select(capsys, dataset, tmp_path / "out" / "manifest.json", method)
    assert MANIFEST_KEYS <= set(manifest)
    assert (manifest["method"], manifest["budget"], manifest["seed"]) == (method, 3, 0)
    assert manifest["dataset_sha256"] == load_dataset(dataset).sha256()
    entries = dataset_entries(dataset)
    assert len(manifest["cases"]) == 3
    assert all(case in entries for case in manifest["cases"])  # as written in dataset.json
    assert len({case["image"] for case in manifest["cases"]}) == 3
    assert len(manifest["scores"]) == 3
    by_id = {case.case_id: case.as_entry() for case in load_dataset(dataset).cases}
    assert [by_id[case_id] for case_id in manifest["case_ids"]] == manifest["cases"]
    # the selection owns the train/validation split of the chosen cases: half of them validate by default
    assert sorted(manifest["train_ids"] + manifest["val_ids"]) == sorted(manifest["case_ids"])
    assert (len(manifest["train_ids"]), len(manifest["val_ids"])) == (1, 2)
    assert ProxyDataManifest.read(tmp_path / "out" / "manifest.json").model_dump(mode="json") == manifest
    if method == "random":
        assert manifest["scores"] == [None, None, None]
        return
    metric = method.split("+")[0]
    crop = "label" if method.endswith("+labelcrop") else "none"
    result = similarities[(metric, crop)]
    means = result.mean_similarity
    least = [int(i) for i in np.argsort(means, kind="stable")[:3]]
    assert [case["image"] for case in manifest["cases"]] == [entries[i]["image"] for i in least]
    assert manifest["scores"] == pytest.approx([float(means[i]) for i in least])
    assert manifest["scores"] == sorted(manifest["scores"])  # least similar first


def test_select_random_is_seeded(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path) -> None:
    first = select(capsys, dataset, tmp_path / "a.json", "random", budget=3, seed=7)
    again = select(capsys, dataset, tmp_path / "b.json", "random", budget=3, seed=7)
    assert first["cases"] == again["cases"]
    others = [select(capsys, dataset, tmp_path / f"s{seed}.json", "random", budget=3, seed=seed)["cases"] for seed in (8, 9, 10)]
    assert any(cases != first["cases"] for cases in others)  # 20 possible draws: three other seeds cannot all agree by chance


@pytest.mark.parametrize(("fraction", "n_val"), [("0.25", 1), ("0.75", 3)])
def test_select_val_fraction(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path, fraction: str, n_val: int) -> None:
    manifest = select(capsys, dataset, tmp_path / "manifest.json", "random", 4, 5, "--val-fraction", fraction)
    assert len(manifest["val_ids"]) == n_val and len(manifest["train_ids"]) == 4 - n_val
    assert sorted(manifest["train_ids"] + manifest["val_ids"]) == sorted(manifest["case_ids"])
    again = select(capsys, dataset, tmp_path / "again.json", "random", 4, 5, "--val-fraction", fraction)
    assert (again["train_ids"], again["val_ids"]) == (manifest["train_ids"], manifest["val_ids"])  # seeded by --seed


def test_select_folder_and_dataset_json_agree(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path) -> None:
    by_folder = select(capsys, dataset, tmp_path / "folder.json", "ncc+labelcrop")
    by_file = select(capsys, dataset / "dataset.json", tmp_path / "file.json", "ncc+labelcrop")
    # `dataset` records the location as given and `selection_seconds` what the selection took; everything else must match
    assert by_folder.pop("dataset") == str(dataset)
    assert by_file.pop("dataset") == str(dataset / "dataset.json")
    assert by_folder.pop("selection_seconds") > 0 and by_file.pop("selection_seconds") > 0
    assert by_folder == by_file


def test_select_from_s3(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path, s3_bucket: str) -> None:
    storage.upload_dir(dataset, f"s3://{s3_bucket}/msd/spleen")
    local = select(capsys, dataset, tmp_path / "local.json", "mi+labelcrop")
    remote = select(capsys, f"s3://{s3_bucket}/msd/spleen", tmp_path / "s3.json", "mi+labelcrop")
    remote_json = select(capsys, f"s3://{s3_bucket}/msd/spleen/dataset.json", tmp_path / "s3-json.json", "mi+labelcrop")
    assert remote.pop("dataset") == f"s3://{s3_bucket}/msd/spleen"
    assert remote_json.pop("dataset") == f"s3://{s3_bucket}/msd/spleen/dataset.json"
    for manifest in (remote, remote_json, local):
        assert manifest.pop("selection_seconds") >= 0  # what the selection took, not a property of the data
    local.pop("dataset")
    assert remote == local
    assert remote_json == local


# --- bad input -----------------------------------------------------------------------------------------------


def test_missing_dataset_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "out" / "manifest.json"
    missing = tmp_path / "no-such-folder"
    assert_bad_input(capsys, ["select", missing, "--method", "mi", "--budget", "2", "--out", out], names=[str(missing)], out=out, root=tmp_path)
    sim_out = tmp_path / "sim"
    assert_bad_input(capsys, ["similarity", missing, "--metric", "mi", "--out", sim_out], names=[str(missing)], out=sim_out, root=tmp_path)


def test_malformed_dataset_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    (broken / "dataset.json").write_text('{"training": [ {"image": "./imagesTr/spleen_1.nii.gz", ')
    out = tmp_path / "manifest.json"
    line = assert_bad_input(capsys, ["select", broken, "--method", "random", "--budget", "2", "--out", out], names=[str(broken / "dataset.json")], out=out, root=tmp_path)
    assert "JSON" in line


def test_dataset_json_without_training(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    document = json.loads((broken / "dataset.json").read_text())
    document["training"] = []
    (broken / "dataset.json").write_text(json.dumps(document))
    out = tmp_path / "manifest.json"
    assert_bad_input(capsys, ["select", broken, "--method", "mi", "--budget", "2", "--out", out], names=["dataset.json", "training"], out=out, root=tmp_path)


def test_corrupt_nifti(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    victim = broken / "imagesTr" / "spleen_3.nii.gz"
    victim.write_bytes(np.random.default_rng(0).bytes(4000))
    out = tmp_path / "manifest.json"
    assert_bad_input(capsys, ["select", broken, "--method", "mi", "--budget", "2", "--patch", PATCH, "--out", out], names=[str(victim)], out=out, root=tmp_path)


def test_truncated_nifti(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    victim = broken / "labelsTr" / "spleen_2.nii.gz"
    data = victim.read_bytes()
    assert len(gzip.decompress(data)) > 2000
    victim.write_bytes(data[: len(data) // 2])
    out = tmp_path / "sim"
    assert_bad_input(capsys, ["similarity", broken, "--metric", "ncc", "--patch", PATCH, "--out", out], names=[str(victim)], out=out, root=tmp_path)


def _replace_label(broken: Path, case: str, make) -> Path:
    image = nib.load(broken / "imagesTr" / f"{case}.nii.gz")
    label_path = broken / "labelsTr" / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(make(image.shape), image.affine, dtype=np.uint8), label_path)
    return label_path


def test_label_shape_differs_from_image(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    def smaller(shape: tuple[int, ...]) -> np.ndarray:
        label = np.zeros((shape[0] - 2, shape[1], shape[2]), dtype=np.uint8)
        label[5:9, 5:9, 1:3] = 1
        return label

    label_path = _replace_label(broken, "spleen_4", smaller)
    out = tmp_path / "manifest.json"
    line = assert_bad_input(capsys, ["select", broken, "--method", "mi+labelcrop", "--budget", "2", "--patch", PATCH, "--out", out], names=[str(label_path)], out=out, root=tmp_path)
    assert "shape" in line


def test_empty_label(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Path) -> None:
    label_path = _replace_label(broken, "spleen_5", lambda shape: np.zeros(shape, dtype=np.uint8))
    out = tmp_path / "manifest.json"
    line = assert_bad_input(capsys, ["select", broken, "--method", "random", "--budget", "2", "--out", out], names=[str(label_path)], out=out, root=tmp_path)
    assert "empty" in line


def test_budget_larger_than_cases(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "manifest.json"
    line = assert_bad_input(capsys, ["select", dataset, "--method", "mi", "--budget", str(N_CASES + 1), "--out", out], names=["dataset.json"], out=out, root=tmp_path)
    assert f"at most {N_CASES}" in line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["select", "{data}", "--method", "mi", "--budget", "1", "--out", "{out}"], "--budget"),
        (["select", "{data}", "--method", "mi", "--budget", "2", "--patch", "4", "--out", "{out}"], "--patch"),
        (["similarity", "{data}", "--metric", "ncc", "--patch", "4", "--out", "{out}"], "--patch"),
        (["select", "{data}", "--method", "random", "--budget", "2", "--val-fraction", "1.5", "--out", "{out}"], "--val-fraction"),
        (["select", "{data}", "--method", "random", "--budget", "2", "--val-fraction", "0", "--out", "{out}"], "--val-fraction"),
    ],
)
def test_invalid_option_value(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path, argv: list[str], option: str) -> None:
    out = tmp_path / "out"
    argv = [a.format(data=dataset, out=out) for a in argv]
    line = assert_bad_input(capsys, argv, names=[f"error: {option}:", "got"], out=out, root=tmp_path)
    assert f"pass a valid {option}" in line


def test_output_path_blocked_by_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    out = blocker / "manifest.json"
    assert_bad_input(capsys, ["select", dataset, "--method", "random", "--budget", "2", "--out", out], names=[str(blocker)], out=None, root=tmp_path)
    assert blocker.read_text() == "a file where a folder should be"
    assert_bad_input(capsys, ["similarity", dataset, "--metric", "mi", "--patch", PATCH, "--out", blocker], names=[str(blocker)], out=None, root=tmp_path)


def test_run_with_unknown_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": str(tmp_path / "d")}, "trainig": {"epochs": 2}}))
    line = assert_bad_input(capsys, ["run", config], names=[str(config), "trainig"], out=None, root=tmp_path)
    assert "unknown key" in line


def test_run_with_nested_unknown_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": "d"}, "search": {"rounds": 2, "proposal_per_round": 4}}))
    assert_bad_input(capsys, ["run", config], names=[str(config), "search.proposal_per_round"], out=None, root=tmp_path)


def test_run_with_invalid_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("name: s\ndata: {dataset: d\nsearch:\n  rounds: [1, 2\n")
    line = assert_bad_input(capsys, ["run", config], names=[str(config)], out=None, root=tmp_path)
    assert "YAML" in line


def test_run_with_missing_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "nope.yaml"
    assert_bad_input(capsys, ["run", config], names=[str(config)], out=None, root=tmp_path)


# --- train ---------------------------------------------------------------------------------------------------


def _trial_plan(tmp_path: Path, data: Path, **extra: object) -> Path:
    entries = [{"image": str(data / e["image"]), "label": str(data / e["label"])} for e in dataset_entries(data)]
    trials = [
        TrialSpec(trial_id="t-adam", hyperparameters=HyperParameters(lr=1e-3, optimizer="adam", intensity_shift_prob=0.5), network=NetworkConfig.proxy(3), seed=1, data_label="mi-2"),
        TrialSpec(trial_id="t-rmsprop", hyperparameters=HyperParameters(lr=3e-4, optimizer="rmsprop", intensity_shift_prob=0.0), network=NetworkConfig.proxy(3), seed=2, data_label="mi-2"),
    ]
    plan = {
        "recipe": tiny_recipe(),
        "train": entries[:2],
        "val": entries[2:],
        "epochs": 1,
        "batch_size": 2,
        "device": "cpu",
        "num_workers": 0,
        "trials": [trial.model_dump(mode="json") for trial in trials],
        **extra,
    }
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train-data") / "spleen"
    write_synthetic_dataset("spleen", folder, cases=4, size=32, seed=3)
    return folder


def test_train_logs_each_trial_to_mlflow(capsys: pytest.CaptureFixture[str], tmp_path: Path, train_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cli-train")
    plan = _trial_plan(tmp_path, train_data)
    out = tmp_path / "results" / "trial.results.json"
    code, stdout, stderr = run_cli(capsys, "train", plan, "--out", out)
    assert code == 0, stderr
    assert str(out) in stdout
    results = json.loads(out.read_text())["results"]
    assert [r["trial_id"] for r in results] == ["t-adam", "t-rmsprop"]
    assert all(r["state"] == "COMPLETE" and r["epochs_run"] == 1 and 0.0 <= r["final_val_dice"] <= 1.0 for r in results)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cli-train")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"t-adam", "t-rmsprop"}
    for result in results:
        run = runs[result["trial_id"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags[names.ROLE_TAG] == names.ROLE_TRIAL
        params = run.data.params
        assert float(params["lr"]) == result["hyperparameters"]["lr"]
        assert params["optimizer"] == result["hyperparameters"]["optimizer"]
        assert float(params["intensity_shift_prob"]) == result["hyperparameters"]["intensity_shift_prob"]
        assert float(params["weight_decay"]) == result["hyperparameters"]["weight_decay"]  # a stand-alone plan logs every hyper-parameter
        assert (params[names.NETWORK_PARAM], params[names.DATA_PARAM]) == ("proxy-L3", "mi-2")
        metrics = run.data.metrics
        assert metrics[names.VAL_DICE] == pytest.approx(result["final_val_dice"])
        assert metrics[names.GPU_HOURS] == pytest.approx(result["gpu_hours"])
        assert metrics[names.PROCESS_HOURS] == pytest.approx(result["process_hours"]) and "cpu_hours" not in metrics
        assert metrics[names.WALL_SECONDS] == pytest.approx(result["wall_seconds"]) and metrics[names.WALL_SECONDS] > 0
        assert [m.step for m in client.get_metric_history(run.info.run_id, names.VAL_DICE)] == [1]


def test_train_without_mlflow_writes_results_beside_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path, train_data: Path) -> None:
    plan = _trial_plan(tmp_path, train_data, trials=[
        TrialSpec(trial_id="solo", hyperparameters=HyperParameters(lr=1e-3), network=NetworkConfig.proxy(3)).model_dump(mode="json")
    ])
    code, stdout, stderr = run_cli(capsys, "train", plan)
    assert code == 0, stderr
    out = tmp_path / "trial.results.json"
    assert str(out) in stdout
    assert [r["trial_id"] for r in json.loads(out.read_text())["results"]] == ["solo"]
    assert not (tmp_path / "proxyhpo-home" / "mlflow.db").exists()  # no MLFLOW_TRACKING_URI: nothing tracked


def test_train_with_unknown_key(capsys: pytest.CaptureFixture[str], tmp_path: Path, train_data: Path) -> None:
    plan = _trial_plan(tmp_path, train_data, epoch=3)
    out = tmp_path / "results.json"
    line = assert_bad_input(capsys, ["train", plan, "--out", out], names=[str(plan), "epoch"], out=out, root=tmp_path)
    assert not (tmp_path / "trial.results.json").exists()
    assert "not known" in line or "unknown" in line


def test_train_with_bad_value(capsys: pytest.CaptureFixture[str], tmp_path: Path, train_data: Path) -> None:
    plan = _trial_plan(tmp_path, train_data)
    document = yaml.safe_load(plan.read_text())
    document["trials"][0]["hyperparameters"]["lr"] = -1
    plan.write_text(yaml.safe_dump(document))
    out = tmp_path / "results.json"
    assert_bad_input(capsys, ["train", plan, "--out", out], names=[str(plan), "trials.0.hyperparameters.lr"], out=out, root=tmp_path)


# --- end to end, as a real process ---------------------------------------------------------------------------


def test_subprocess_exit_codes(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "manifest.json"
    ok = subprocess.run(
        [sys.executable, "-m", "proxyhpo", "select", str(dataset), "--method", "random", "--budget", "2", "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["budget"] == 2

    bad_out = tmp_path / "bad.json"
    missing = tmp_path / "missing"
    bad = subprocess.run(
        [sys.executable, "-m", "proxyhpo", "select", str(missing), "--method", "mi", "--budget", "2", "--out", str(bad_out)],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert str(missing) in lines[0] and "fix:" in lines[0]
    assert "Traceback" not in bad.stderr
    assert not bad_out.exists()
