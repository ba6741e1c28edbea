"""Staging on a cluster, against a real S3 server (SeaweedFS): a pack stages only its cases into the task's home
(the emptyDir the compiled tasks mount), and the relayed fan-in of a loop for KFP backends before 2.14."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo import paths, storage
from proxyhpo.data.msd import load_dataset, push_dataset
from proxyhpo.data.synthetic import write_synthetic_dataset


@pytest.fixture
def pushed_dataset(s3_bucket: str, tmp_path: Path) -> str:
    """Six 32^2 phantoms pushed to the test bucket, as `proxyhpo data push` does."""
    local = write_synthetic_dataset("spleen", tmp_path / "phantoms", cases=6, size=32, seed=0)
    return push_dataset(local, f"s3://{s3_bucket}/datasets/phantoms")


def _staged_files(root: Path) -> set[str]:
    return {f"{path.parent.name}/{path.name}" for path in root.rglob("*.nii.gz")}


def test_a_pack_stages_only_its_cases(pushed_dataset: str, isolated_home: Path) -> None:
    everything = load_dataset(pushed_dataset)
    ids = sorted(case.case_id for case in everything.cases)
    staged_root = paths.data_dir() / "s3"
    assert len(_staged_files(staged_root)) == 2 * len(ids)
    # a new pod: an empty home (the emptyDir), a pack of two cases
    for file in staged_root.rglob("*.nii.gz"):
        file.unlink()
    pack = load_dataset(pushed_dataset, cases={ids[0], ids[3]})
    assert [case.case_id for case in pack.cases] == [ids[0], ids[3]]
    assert _staged_files(staged_root) == {f"{folder}/{case_id}.nii.gz" for case_id in (ids[0], ids[3]) for folder in ("imagesTr", "labelsTr")}
    assert all(Path(case.image).is_file() and Path(case.label).is_file() for case in pack.cases)


def test_a_loops_outputs_are_relayed_to_the_task_after_it(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo.relay import gathered, put, relay_folder

    monkeypatch.setenv("PROXYHPO_CHECKPOINT_ROOT", f"s3://{s3_bucket}/checkpoints")
    folder = relay_folder("parent-1", pipeline_run="run-7", group="round-1-packs")
    assert folder == f"s3://{s3_bucket}/checkpoints/parent-1/relay/run-7/round-1-packs"
    for index in range(3):
        output = tmp_path / f"results-{index}.json"
        output.write_text(f'{{"pack": {index}}}')
        put(output, folder, item=f'{{"pack_index": {index}}}')
    put(tmp_path / "results-1.json", folder, item='{"pack_index": 1}')  # a retry of pack 1 overwrites its own
    put(tmp_path / "results-0.json", relay_folder("parent-1", pipeline_run="run-6", group="round-1-packs"), item="x")  # an earlier start
    files = gathered("parent-1", pipeline_run="run-7", group="round-1-packs")
    assert sorted(path.read_text() for path in files) == ['{"pack": 0}', '{"pack": 1}', '{"pack": 2}']
    assert gathered("parent-1", pipeline_run="run-7", group="round-2-packs") == []  # a loop none of whose packs finished
    assert storage.exists(f"{folder}/{files[0].name}")


def test_staging_takes_the_files_the_shared_cache_holds_and_downloads_the_others(
    pushed_dataset: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minio import Minio

    from proxyhpo.data.cache import CACHE_ENV

    phantoms = tmp_path / "phantoms"  # what pushed_dataset pushed: the admin's copy that fills the cache
    cases = sorted(path.name for path in (phantoms / "imagesTr").iterdir())
    cache = tmp_path / "data-cache"
    for name in cases[:2]:  # the cache holds two cases' images and labels under the data root's relative paths
        for folder in ("imagesTr", "labelsTr"):
            (cache / "phantoms" / folder).mkdir(parents=True, exist_ok=True)
            (cache / "phantoms" / folder / name).write_bytes((phantoms / folder / name).read_bytes())
    stale = cache / "phantoms" / "imagesTr" / cases[2]  # same size, other bytes: a cache older than the data set
    stale.write_bytes(bytes(len((phantoms / "imagesTr" / cases[2]).read_bytes())))
    monkeypatch.setenv("PROXYHPO_DATASETS_ROOT", f"s3://{s3_bucket}/datasets")
    monkeypatch.setenv(CACHE_ENV, str(cache))
    fetched: list[str] = []
    real_get = Minio.get_object

    def counting_get(self, bucket_name: str, object_name: str, *args, **kwargs):  # the real GET, counted
        fetched.append(object_name.rsplit("/", 2)[-2] + "/" + object_name.rsplit("/", 1)[-1])
        return real_get(self, bucket_name, object_name, *args, **kwargs)

    monkeypatch.setattr(Minio, "get_object", counting_get)
    dataset = load_dataset(pushed_dataset)
    every_file = {f"{folder}/{name}" for name in cases for folder in ("imagesTr", "labelsTr")}
    cached = {f"{folder}/{name}" for name in cases[:2] for folder in ("imagesTr", "labelsTr")}
    assert set(fetched) - {"datasets/phantoms", "phantoms/dataset.json"} == every_file - cached  # the stale one too
    assert sorted(fetched).count(f"imagesTr/{cases[2]}") == 1
    for case in dataset.cases:  # every staged file holds the data set's bytes, wherever it came from
        for file in (Path(case.image), Path(case.label)):
            assert file.read_bytes() == (phantoms / file.parent.name / file.name).read_bytes()


def test_a_cached_file_is_not_taken_for_an_object_that_records_no_checksum(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An object another tool uploaded in parts (aws s3 sync, mc mirror) has no sha256 metadata and a multipart ETag: the
    # cache's file cannot be checked, and a same-sized one (an uncompressed NIfTI of the same geometry) may be stale.
    import io

    from proxyhpo.data.cache import CACHE_ENV, take_or_download

    size = 5 * 1024 * 1024 + 1  # two parts of S3's smallest part size
    truth = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    storage.s3_client().put_object(bucket_name=s3_bucket, object_name="datasets/raw/imagesTr/a.nii", data=io.BytesIO(truth),
                                   length=size, part_size=5 * 1024 * 1024)
    url = f"s3://{s3_bucket}/datasets/raw/imagesTr/a.nii"
    assert storage.object_checksum(url) is None  # the case: nothing to check the cached bytes against
    cached = tmp_path / "data-cache" / "raw" / "imagesTr" / "a.nii"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bytes(size))  # same size, other bytes
    monkeypatch.setenv("PROXYHPO_DATASETS_ROOT", f"s3://{s3_bucket}/datasets")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "data-cache"))
    target = tmp_path / "staged" / "a.nii"
    assert take_or_download(url, target) == "s3"
    assert target.read_bytes() == truth
