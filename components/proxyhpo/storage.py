"""Local files and S3/MinIO objects, read and written atomically.

Everything that outlives a run goes through this module. Local writes go to a temporary file in the
target's folder and are moved into place with :func:`os.replace`, so a reader never sees a partial
file. S3 objects are written with one ``put_object``/``fput_object`` call, which the server makes
visible only once complete.

Credentials come only from the environment (:class:`S3Settings`): ``PROXYHPO_S3_ENDPOINT`` (or
``MLFLOW_S3_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``. They are never
written to configs, logs or MLflow.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from proxyhpo.errors import StorageError

__all__ = [
    "S3Settings",
    "is_s3_url",
    "split_s3_url",
    "s3_client",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save_npy",
    "read_bytes",
    "write_bytes",
    "upload_file",
    "download_file",
    "upload_dir",
    "download_prefix",
]


class S3Settings(BaseSettings):
    """Where the S3 server is and how to log in, read from the environment only.

    Example:
        >>> import os; os.environ["PROXYHPO_S3_ENDPOINT"] = "http://127.0.0.1:8333"
        >>> S3Settings().secure
        False
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    endpoint: str = Field(
        default="", validation_alias=AliasChoices("PROXYHPO_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL")
    )
    access_key: SecretStr = Field(default=SecretStr(""), validation_alias="AWS_ACCESS_KEY_ID")
    secret_key: SecretStr = Field(default=SecretStr(""), validation_alias="AWS_SECRET_ACCESS_KEY")
    region: str | None = Field(default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))

    @property
    def secure(self) -> bool:
        """Whether the endpoint uses TLS (``https://``)."""
        return urlparse(self.endpoint).scheme == "https"

    @property
    def host(self) -> str:
        """``host:port`` of the endpoint, as the minio client wants it."""
        parsed = urlparse(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        return parsed.netloc


def is_s3_url(location: str | os.PathLike[str]) -> bool:
    """Return whether ``location`` is an ``s3://bucket/key`` URL."""
    return isinstance(location, str) and location.startswith("s3://")


def split_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key/parts`` into ``("bucket", "key/parts")``.

    Raises:
        StorageError: when ``url`` is not an s3:// URL with a bucket.
    """
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(url, "is not an s3://bucket/key URL", "write it as s3://<bucket>/<key>")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(settings: S3Settings | None = None):
    """Return a ``minio.Minio`` client for the configured endpoint.

    Raises:
        StorageError: when no endpoint or no credentials are set in the environment.
    """
    from minio import Minio  # imported lazily: the local path never needs it

    settings = settings or S3Settings()
    if not settings.endpoint:
        raise StorageError(
            "PROXYHPO_S3_ENDPOINT",
            "no S3 endpoint is set",
            "export PROXYHPO_S3_ENDPOINT=http://host:port (or MLFLOW_S3_ENDPOINT_URL)",
        )
    if not settings.access_key.get_secret_value() or not settings.secret_key.get_secret_value():
        raise StorageError(
            settings.endpoint,
            "no S3 credentials are set",
            "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    return Minio(
        endpoint=settings.host,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=settings.secure,
        region=settings.region,
    )


def _new_file_mode() -> int:
    # os.umask can only be read by setting it: done once, at import, before any thread of ours runs
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place only if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_output("out.txt") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("done")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp makes the file private (0600); give it a new file's mode
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save ``array`` in ``.npy`` format to ``path`` atomically and return the path."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def _s3_error(url: str, exc: Exception, action: str) -> StorageError:
    code = getattr(exc, "code", type(exc).__name__)
    return StorageError(url, f"could not {action} ({code})", "check the URL, the bucket and the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")


def read_bytes(location: str | os.PathLike[str], settings: S3Settings | None = None) -> bytes:
    """Read a whole local file or S3 object.

    Raises:
        StorageError: when it does not exist or cannot be read.
    """
    if is_s3_url(location):
        bucket, key = split_s3_url(str(location))
        client = s3_client(settings)
        response = None
        try:
            response = client.get_object(bucket_name=bucket, object_name=key)
            return response.read()
        except Exception as exc:  # minio raises S3Error, urllib3 errors, ...
            raise _s3_error(str(location), exc, "read the object") from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()
    try:
        return Path(location).read_bytes()
    except OSError as exc:
        raise StorageError(location, f"cannot be read ({exc.strerror})", "check that the file exists and is readable") from exc


def write_bytes(location: str | os.PathLike[str], data: bytes, settings: S3Settings | None = None) -> None:
    """Write ``data`` to a local file or an S3 object, atomically."""
    if is_s3_url(location):
        bucket, key = split_s3_url(str(location))
        client = s3_client(settings)
        try:
            client.put_object(bucket_name=bucket, object_name=key, data=io.BytesIO(data), length=len(data))
        except Exception as exc:
            raise _s3_error(str(location), exc, "write the object") from exc
        return
    atomic_write_bytes(location, data)


def upload_file(local: str | os.PathLike[str], url: str, settings: S3Settings | None = None) -> None:
    """Upload one local file to ``s3://bucket/key``."""
    bucket, key = split_s3_url(url)
    client = s3_client(settings)
    try:
        client.fput_object(bucket_name=bucket, object_name=key, file_path=os.fspath(local))
    except Exception as exc:
        raise _s3_error(url, exc, "upload the file") from exc


def download_file(url: str, local: str | os.PathLike[str], settings: S3Settings | None = None) -> Path:
    """Download ``s3://bucket/key`` to ``local`` atomically and return the local path."""
    bucket, key = split_s3_url(url)
    client = s3_client(settings)
    with atomic_output(local) as tmp:
        try:
            client.fget_object(bucket_name=bucket, object_name=key, file_path=os.fspath(tmp))
        except Exception as exc:
            raise _s3_error(url, exc, "download the object") from exc
    return Path(local)


def upload_dir(local_dir: str | os.PathLike[str], url_prefix: str, settings: S3Settings | None = None) -> list[str]:
    """Upload every file below ``local_dir`` under ``url_prefix``; return the object URLs."""
    bucket, prefix = split_s3_url(url_prefix.rstrip("/") + "/")
    root = Path(local_dir)
    urls = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        key = str(PurePosixPath(prefix) / file.relative_to(root).as_posix())
        upload_file(file, f"s3://{bucket}/{key}", settings)
        urls.append(f"s3://{bucket}/{key}")
    return urls


def download_prefix(url_prefix: str, local_dir: str | os.PathLike[str], settings: S3Settings | None = None) -> list[Path]:
    """Download every object under ``url_prefix`` into ``local_dir`` (keys relative to the prefix)."""
    bucket, prefix = split_s3_url(url_prefix.rstrip("/") + "/")
    client = s3_client(settings)
    try:
        objects = list(client.list_objects(bucket_name=bucket, prefix=prefix, recursive=True))
    except Exception as exc:
        raise _s3_error(url_prefix, exc, "list the objects") from exc
    paths = []
    for obj in objects:
        relative = obj.object_name[len(prefix):]
        paths.append(download_file(f"s3://{bucket}/{obj.object_name}", Path(local_dir) / relative, settings))
    return paths
