"""Storage contract: the same behaviour on local disk and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from proxyhpo import storage
from proxyhpo.errors import StorageError


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/store"


def test_write_then_read_roundtrip(location: str) -> None:
    storage.write_bytes(f"{location}/a/b.bin", b"\x00payload\xff")
    assert storage.read_bytes(f"{location}/a/b.bin") == b"\x00payload\xff"


def test_missing_object_is_a_storage_error(location: str) -> None:
    with pytest.raises(StorageError) as info:
        storage.read_bytes(f"{location}/nothing-here")
    assert "nothing-here" in str(info.value) and "fix:" in str(info.value)


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with storage.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_writers(tmp_path: Path) -> None:
    storage.atomic_write_json(tmp_path / "x.json", {"a": 1})
    storage.atomic_save_npy(tmp_path / "m.npy", np.eye(3))
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), np.eye(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "x.json"]


def test_upload_and_download_dir(s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "one.txt").write_text("1")
    (source / "sub" / "two.txt").write_text("2")
    urls = storage.upload_dir(source, f"s3://{s3_bucket}/tree")
    assert urls == [f"s3://{s3_bucket}/tree/one.txt", f"s3://{s3_bucket}/tree/sub/two.txt"]
    paths = storage.download_prefix(f"s3://{s3_bucket}/tree", tmp_path / "dst")
    assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in paths) == ["one.txt", "sub/two.txt"]
    assert (tmp_path / "dst" / "sub" / "two.txt").read_text() == "2"


def test_wrong_credentials_are_refused(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.write_bytes(f"s3://{s3_bucket}/secret.txt", b"x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError) as info:
        storage.read_bytes(f"s3://{s3_bucket}/secret.txt")
    assert "wrong-secret" not in str(info.value)


def test_data_sets_are_read_with_the_readers_keys_and_nothing_else_is(s3_bucket: str, s3_env: dict[str, str], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart's split (s3.datasetUser): the reader's keys for reads under PROXYHPO_DATASETS_ROOT, the results keys
    # for every write and every other read. Here only the reader's keys are valid, so each call shows which it used.
    storage.write_bytes(f"s3://{s3_bucket}/datasets/spleen/case.txt", b"case")
    storage.write_bytes(f"s3://{s3_bucket}/studies/result.txt", b"result")
    monkeypatch.setenv("PROXYHPO_DATASETS_ROOT", f"s3://{s3_bucket}/datasets")
    monkeypatch.setenv("PROXYHPO_DATASETS_ACCESS_KEY_ID", s3_env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("PROXYHPO_DATASETS_SECRET_ACCESS_KEY", s3_env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "results-key-not-valid-here")
    assert storage.read_bytes(f"s3://{s3_bucket}/datasets/spleen/case.txt") == b"case"
    assert storage.exists(f"s3://{s3_bucket}/datasets/spleen/case.txt")
    assert [p.name for p in storage.download_prefix(f"s3://{s3_bucket}/datasets/spleen", tmp_path / "staged")] == ["case.txt"]
    with pytest.raises(StorageError):
        storage.read_bytes(f"s3://{s3_bucket}/studies/result.txt")  # not a data set: the results keys
    with pytest.raises(StorageError):
        storage.write_bytes(f"s3://{s3_bucket}/datasets/spleen/new.txt", b"x")  # a write: the results keys
    with pytest.raises(StorageError):
        storage.read_bytes(f"s3://{s3_bucket}/datasets-old/case.txt")  # a sibling prefix is not under the root


def test_a_refused_reader_key_names_the_readers_variables(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a wrong data set reader key (Secret proxyhpo-s3-datasets) must not send the user to fix the results keys
    storage.write_bytes(f"s3://{s3_bucket}/datasets/spleen/case.txt", b"case")
    monkeypatch.setenv("PROXYHPO_DATASETS_ROOT", f"s3://{s3_bucket}/datasets")
    monkeypatch.setenv("PROXYHPO_DATASETS_ACCESS_KEY_ID", "proxyhpo-datasets")
    monkeypatch.setenv("PROXYHPO_DATASETS_SECRET_ACCESS_KEY", "reader-key-not-valid")
    with pytest.raises(StorageError) as info:
        storage.read_bytes(f"s3://{s3_bucket}/datasets/spleen/case.txt")
    assert "PROXYHPO_DATASETS_ACCESS_KEY_ID and PROXYHPO_DATASETS_SECRET_ACCESS_KEY" in str(info.value)
    assert "reader-key-not-valid" not in str(info.value)


def test_missing_endpoint_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROXYHPO_S3_ENDPOINT", raising=False)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    with pytest.raises(StorageError, match="PROXYHPO_S3_ENDPOINT"):
        storage.read_bytes("s3://bucket/key")


def test_bad_url() -> None:
    with pytest.raises(StorageError, match="s3://<bucket>/<key>"):
        storage.split_s3_url("s3:///no-bucket")


def test_atomic_files_get_a_new_files_mode(tmp_path) -> None:
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    path = storage.atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def test_exists_and_remove(location: str) -> None:
    target = f"{location}/dir/file.json"
    assert not storage.exists(target)
    storage.write_bytes(target, b"{}")
    assert storage.exists(target)
    storage.remove(target)
    assert not storage.exists(target)
    storage.remove(target)  # removing what is not there is no error
