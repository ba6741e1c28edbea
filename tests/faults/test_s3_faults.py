"""S3 outages and corrupt copies, against the real SeaweedFS server (through a TCP forwarder that is cut and restored)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from tcp_proxy import TcpProxy

from proxyhpo import storage
from proxyhpo.errors import StorageError

pytestmark = pytest.mark.s3


@pytest.fixture
def cut_s3(s3_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch):
    """The test server behind a forwarder: ``PROXYHPO_S3_ENDPOINT`` points at the forwarder."""
    host, port = s3_env["PROXYHPO_S3_ENDPOINT"].removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.up()
    monkeypatch.setenv("PROXYHPO_S3_ENDPOINT", proxy.url)
    yield proxy
    proxy.down()


def test_an_unreachable_server_ends_in_one_error_in_bounded_time(cut_s3: TcpProxy, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_s3.down()
    local = tmp_path / "a.bin"
    local.write_bytes(b"x" * 100)
    started = time.monotonic()
    with pytest.raises(StorageError, match="did not answer .* in 5 attempts"):
        storage.upload_file(local, f"s3://{s3_bucket}/a.bin")
    assert time.monotonic() - started < sum(storage.S3_RETRY_DELAYS_S) + 5
    monkeypatch.setenv("PROXYHPO_S3_RETRIES", "1")  # the download fails alike, after one wait instead of four
    with pytest.raises(StorageError, match="did not answer .* in 2 attempts"):
        storage.download_file(f"s3://{s3_bucket}/a.bin", tmp_path / "b.bin")
    assert not (tmp_path / "b.bin").exists()


def test_a_server_back_within_the_retries_completes_the_transfer(cut_s3: TcpProxy, s3_bucket: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400
    url = f"s3://{s3_bucket}/dir/blob.bin"
    cut_s3.down()
    threading.Timer(1.2, cut_s3.up).start()  # back after the first two attempts
    storage.write_bytes(url, data)
    cut_s3.down()
    threading.Timer(1.2, cut_s3.up).start()
    target = storage.download_file(url, tmp_path / "blob.bin")
    assert target.read_bytes() == data
    assert storage.object_checksum(url) == ("sha256", hashlib.sha256(data).hexdigest())


def test_client_errors_are_not_retried(s3_env: dict[str, str], s3_bucket: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StorageError, match="NoSuchKey"):
        storage.download_file(f"s3://{s3_bucket}/missing.bin", tmp_path / "m.bin")
    assert time.monotonic() - started < 1.5


def test_wrong_credentials_are_not_retried(s3_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    started = time.monotonic()
    with pytest.raises(StorageError, match="credentials"):
        storage.read_bytes(f"s3://{s3_bucket}/anything.bin")
    assert time.monotonic() - started < 1.5


def test_a_staged_file_is_reused_only_when_its_checksum_matches(s3_env: dict[str, str], s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "case.nii.gz"
    source.write_bytes(b"volume bytes" * 1000)
    url = f"s3://{s3_bucket}/data/case.nii.gz"
    storage.upload_file(source, url)
    staged = storage.download_file(url, tmp_path / "staged" / "case.nii.gz")
    assert storage.matches(url, staged)
    staged.write_bytes(b"volume bytez" * 1000)  # overwritten (a crash mid-copy, a disk error, a user)
    assert not storage.matches(url, staged)
    assert not storage.matches(url, tmp_path / "staged" / "absent.nii.gz")


def test_objects_without_a_recorded_sha256_are_checked_by_their_etag(s3_env: dict[str, str], s3_bucket: str, tmp_path: Path) -> None:
    import io

    client = storage.s3_client()
    data = b"written by another tool"
    client.put_object(bucket_name=s3_bucket, object_name="other.bin", data=io.BytesIO(data), length=len(data))
    url = f"s3://{s3_bucket}/other.bin"
    assert storage.object_checksum(url) == ("md5", hashlib.md5(data).hexdigest())
    assert storage.read_bytes(url) == data
    local = tmp_path / "other.bin"
    local.write_bytes(data)
    assert storage.matches(url, local)
