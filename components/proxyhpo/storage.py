"""Local files and S3/MinIO objects, read and written atomically.

Everything that outlives a run goes through this module. Local writes go to a temporary file in the
target's folder and are moved into place with :func:`os.replace`, so a reader never sees a partial
file. S3 objects are written with one ``put_object``/``fput_object`` call, which the server makes
visible only once complete.

Faults: every S3 call is retried with back-off (:data:`S3_RETRY_DELAYS_S`, about 8 s in all) on connection
errors, timeouts and 5xx answers, never on 4xx answers (a missing object, wrong credentials), then ends
in one :class:`StorageError` naming the endpoint. ``PROXYHPO_S3_RETRIES`` (default 4: five attempts, at most 10),
``PROXYHPO_S3_CONNECT_TIMEOUT`` (seconds, default 5) and ``PROXYHPO_S3_READ_TIMEOUT`` (seconds, default 120) bound
how long an unreachable or hung server is waited for (:mod:`proxyhpo.settings`). Every object written here carries the sha256 of its bytes in its metadata
(``x-amz-meta-sha256``); downloads are checked against it (objects written by other tools: against a
single-part ETag, the MD5 of the bytes) and a mismatch is retried like a broken connection.
:func:`matches` tells whether a staged local file still equals its object.

Credentials come only from the environment (:class:`S3Settings`): ``PROXYHPO_S3_ENDPOINT`` (or
``MLFLOW_S3_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``. They are never
written to configs, logs or MLflow.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK
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
    "check_endpoint",
    "atomic_output",
    "naming_failed_writes",
    "check_regular_target",
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
    "object_size_and_checksum",
    "matches",
    "object_checksum",
    "exists",
    "remove",
    "S3_RETRY_DELAYS_S",
]

logger = logging.getLogger(__name__)

# waits between attempts of one S3 call: five attempts, 7.5 s of waiting in all
S3_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 120.0  # PROXYHPO_S3_READ_TIMEOUT's default; the bounds live in proxyhpo.settings
CHECKSUM_META = "sha256"  # stored as x-amz-meta-sha256
# the variables of the results keys, and of the data set reader's (S3Settings.reading), named in a refusal's fix
RESULTS_KEY_VARIABLES = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
READER_KEY_VARIABLES = "PROXYHPO_DATASETS_ACCESS_KEY_ID and PROXYHPO_DATASETS_SECRET_ACCESS_KEY"


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
    #: The data sets' folder (``s3://bucket/prefix``) and the read-only keys to read it with (the chart's
    #: ``s3.datasetUser``); reads elsewhere, and every write, use the keys above.
    datasets_root: str = Field(default="", validation_alias="PROXYHPO_DATASETS_ROOT")
    datasets_access_key: SecretStr = Field(default=SecretStr(""), validation_alias="PROXYHPO_DATASETS_ACCESS_KEY_ID")
    datasets_secret_key: SecretStr = Field(default=SecretStr(""), validation_alias="PROXYHPO_DATASETS_SECRET_ACCESS_KEY")

    def reading(self, location: str | os.PathLike[str]) -> S3Settings:
        """These settings for reading ``location``: the data set reader's keys under :attr:`datasets_root`, when set.

        Example:
            >>> settings = S3Settings(PROXYHPO_DATASETS_ROOT="s3://b/datasets", PROXYHPO_DATASETS_ACCESS_KEY_ID="reader",
            ...                       PROXYHPO_DATASETS_SECRET_ACCESS_KEY="reader-key", AWS_ACCESS_KEY_ID="writer")
            >>> settings.reading("s3://b/datasets/spleen/x.nii.gz").access_key.get_secret_value()
            'reader'
            >>> settings.reading("s3://b/studies/x.json").access_key.get_secret_value()
            'writer'
        """
        root = self.datasets_root.rstrip("/")
        if not (root and self.datasets_access_key.get_secret_value() and self.datasets_secret_key.get_secret_value()):
            return self
        if str(location) != root and not str(location).startswith(root + "/"):
            return self
        return self.model_copy(update={"access_key": self.datasets_access_key, "secret_key": self.datasets_secret_key})

    @property
    def key_variables(self) -> str:
        """The variables the keys in use come from, for a refusal's fix: the data set reader's after :meth:`reading`."""
        reader = self.datasets_access_key.get_secret_value() and (self.access_key, self.secret_key) == (self.datasets_access_key, self.datasets_secret_key)
        return READER_KEY_VARIABLES if reader else RESULTS_KEY_VARIABLES

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


def retry_delays() -> tuple[float, ...]:
    """The waits between the attempts of one S3 call: ``PROXYHPO_S3_RETRIES`` of them (default 4), from :data:`S3_RETRY_DELAYS_S`."""
    from proxyhpo.settings import proxyhpo_settings

    retries = proxyhpo_settings().s3_retries
    return tuple(S3_RETRY_DELAYS_S[min(i, len(S3_RETRY_DELAYS_S) - 1)] for i in range(retries))


def check_endpoint(endpoint: str) -> None:
    """Refuse an S3 endpoint that is not ``http(s)://host[:port]``, before any connection.

    Raises:
        StorageError: naming ``PROXYHPO_S3_ENDPOINT`` (never its user or password) and the fix.
    """
    from proxyhpo.errors import scrub_credentials

    fix = "set PROXYHPO_S3_ENDPOINT to http://host:port or https://host:port (credentials go in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
    shown = scrub_credentials(endpoint)[:80]
    try:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        port = parsed.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise StorageError("PROXYHPO_S3_ENDPOINT", f"is not a URL ({shown!r}: {exc})", fix) from None
    if parsed.username or parsed.password:
        raise StorageError("PROXYHPO_S3_ENDPOINT", f"holds a user or password ({shown!r})", fix)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path.strip("/") or parsed.query or port == 0:
        raise StorageError("PROXYHPO_S3_ENDPOINT", f"is not http(s)://host[:port] ({shown!r})", fix)


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
    check_endpoint(settings.endpoint)
    if not settings.access_key.get_secret_value() or not settings.secret_key.get_secret_value():
        raise StorageError(
            settings.endpoint,
            "no S3 credentials are set",
            "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    import certifi
    import urllib3

    from proxyhpo.settings import proxyhpo_settings

    bounds = proxyhpo_settings()  # a hung server costs at most (retries + 1) x (connect + read timeout)

    # minio's own client retries 5 times inside each call; the retries here are ours (_retrying), bounded
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=bounds.s3_connect_timeout, read=bounds.s3_read_timeout),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=0, redirect=0, raise_on_status=False),
    )
    return Minio(
        endpoint=settings.host,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=settings.secure,
        region=settings.region,
        http_client=http,
    )


def _new_file_mode() -> int:
    # os.umask can only be read by setting it: done once, at import, before any thread of ours runs
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_NEW_FILE_MODE = _new_file_mode()


def _kind_of(mode: int) -> str:
    """What a non-regular file is, in the words of ``ls -l``'s first column."""
    kinds = ((S_ISDIR, "a folder"), (S_ISCHR, "a character device"), (S_ISBLK, "a block device"), (S_ISFIFO, "a FIFO (named pipe)"), (S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular_target(path: str | os.PathLike[str]) -> None:
    """Refuse to write over ``path`` when it exists and is not a regular file (followed through links).

    The atomic writer renames a new file over its target: over a device (``/dev/null`` as root), a FIFO,
    a socket, a folder, or a link to one (``/proc/self/fd/1``), that would replace the special file
    itself with a regular one. A missing target, a regular file, or a dangling link is fine.

    Raises:
        StorageError: naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise StorageError(path, f"cannot be examined ({exc.strerror})", "give an output path in a folder you can read and write") from exc
    if not S_ISREG(mode):
        link = " (through a symbolic link)" if os.path.islink(path) else ""
        raise StorageError(path, f"is {_kind_of(mode)}{link}, not a regular file: it would be replaced", "give the path of a regular file, or of one that does not exist yet")


@contextlib.contextmanager
def naming_failed_writes(path: str | os.PathLike[str], *aliases: str) -> Iterator[None]:
    """Make an :class:`OSError` raised inside the block name ``path`` when it names no file, or one of ``aliases``.

    A full disk (ENOSPC, EFBIG) fails a ``write()`` that names no file; the CLI's one line then says which file.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is None or exc.filename in aliases:
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it into place only if the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was; an :class:`OSError` that
    names no file (a full disk) names ``path``.

    Example:
        >>> with atomic_output("out.txt") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("done")
    """
    target = Path(path)
    check_regular_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with naming_failed_writes(target, tmp_name):  # the file being written, as the caller named it
            yield tmp
            os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp makes the file private (0600); give it a new file's mode
            os.replace(tmp, target)
    except RuntimeError as exc:
        if "inline_container" not in str(exc):
            raise
        # torch.save's zip writer reports a failed write as "[enforce fail at inline_container.cc] unexpected pos":
        # the same failure as an OSError that names the file, and the disk's state when there is no room left
        full = shutil.disk_usage(target.parent).free < 1 << 20
        raise OSError(errno.ENOSPC if full else errno.EIO, "No space left on device" if full else "the write failed (torch.save)", str(target)) from exc
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


class _ChecksumMismatch(Exception):
    """Downloaded bytes that differ from the object's recorded checksum (retried like a broken transfer)."""


def _transient(exc: BaseException) -> bool:
    """Whether an S3 call that raised ``exc`` may succeed if tried again: connection errors, timeouts, 5xx."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", 0) or 0
        return status >= 500 or exc.code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
    if isinstance(exc, ServerError):
        return exc.status_code >= 500
    if isinstance(exc, InvalidResponseError):  # a non-XML answer: a proxy's 502/503 page
        return True
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | _ChecksumMismatch)


_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}


def _s3_error(url: str, exc: BaseException, action: str, *, endpoint: str, attempts: int = 1, seconds: float = 0.0,
              keys: str = RESULTS_KEY_VARIABLES) -> StorageError:
    if isinstance(exc, _ChecksumMismatch):
        return StorageError(url, f"could not {action}: {exc} in {attempts} attempts", "upload the object again; it may be corrupt in the store")
    code = getattr(exc, "code", None) or type(exc).__name__
    if _transient(exc):
        tries = f"{attempts} attempts over {seconds:.0f} s" if attempts > 1 else "1 attempt"
        return StorageError(
            url,
            f"could not {action}: the S3 server at {endpoint} (PROXYHPO_S3_ENDPOINT) did not answer ({code}) in {tries}",
            "check that the server is up and reachable from here, or correct PROXYHPO_S3_ENDPOINT, then run again",
        )
    if code in _CREDENTIAL_CODES:
        return StorageError(
            url,
            f"could not {action}: the S3 server at {endpoint} refused the credentials ({code})",
            f"set {keys} to a key that server accepts",
        )
    return StorageError(url, f"could not {action} ({code})", "check the URL, the bucket and the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")


def _retrying(url: str, action: str, call, *, endpoint: str, keys: str = RESULTS_KEY_VARIABLES):
    """Run ``call()``, retrying transient failures with back-off (:func:`retry_delays`); any failure ends in one :class:`StorageError`."""
    started = time.monotonic()
    for attempt, delay in enumerate((*retry_delays(), None), start=1):
        try:
            return call()
        except Exception as exc:
            if delay is None or not _transient(exc):
                raise _s3_error(url, exc, action, endpoint=endpoint, attempts=attempt, seconds=time.monotonic() - started, keys=keys) from exc
            logger.info("%s: could not %s (%s); trying again in %.1f s", url, action, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _sha256_file(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(stat: Any) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` an object's bytes must have: its recorded sha256, else a single-part ETag's MD5."""
    metadata = stat.metadata or {}
    for key, value in metadata.items():
        if key.lower() == f"x-amz-meta-{CHECKSUM_META}":
            return "sha256", str(value).lower()
    etag = (stat.etag or "").strip('"').lower()
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):  # a multipart ETag has a "-N" suffix
        return "md5", etag
    return None


def _stat(url: str, action: str, settings: S3Settings | None):
    """Object ``url``'s metadata from one HEAD request (the data set reader's keys under its root)."""
    bucket, key = split_s3_url(url)
    settings = settings or S3Settings().reading(url)
    client = s3_client(settings)
    return _retrying(url, action, lambda: client.stat_object(bucket_name=bucket, object_name=key), endpoint=settings.endpoint, keys=settings.key_variables)


def object_checksum(url: str, settings: S3Settings | None = None) -> tuple[str, str] | None:
    """The checksum recorded for object ``url``: ``("sha256", hex)`` or ``("md5", etag)``; None when it has none.

    Raises:
        StorageError: when the object cannot be reached.
    """
    return _expected(_stat(url, "read the object's checksum", settings))


def object_size_and_checksum(url: str, settings: S3Settings | None = None) -> tuple[int, tuple[str, str] | None]:
    """Object ``url``'s size in bytes and recorded checksum (as :func:`object_checksum`), from one HEAD request.

    Raises:
        StorageError: when the object cannot be reached.
    """
    stat = _stat(url, "read the object's size", settings)
    return int(stat.size), _expected(stat)


def matches(url: str, local_path: str | os.PathLike[str], settings: S3Settings | None = None) -> bool:
    """Whether ``local_path`` holds the bytes of object ``url`` (its recorded checksum): a staged file may be reused.

    False when the file is missing, differs, or the object has no checksum to compare with.

    Raises:
        StorageError: when the object does not exist or cannot be reached.
    """
    if not Path(local_path).is_file():
        return False
    expected = object_checksum(url, settings)
    return expected is not None and _sha256_file(local_path, expected[0]) == expected[1]


def _get_verified(client: Any, bucket: str, key: str, sink: Any) -> None:
    """Stream an object into ``sink`` (a binary file), checking its bytes against the recorded checksum."""
    stat = client.stat_object(bucket_name=bucket, object_name=key)
    expected = _expected(stat)
    digest = hashlib.new(expected[0] if expected else "sha256")
    sink.seek(0)
    sink.truncate()
    response = client.get_object(bucket_name=bucket, object_name=key)
    try:
        for chunk in response.stream(1 << 20):
            sink.write(chunk)
            digest.update(chunk)
    finally:
        response.close()
        response.release_conn()
    if expected is not None and digest.hexdigest() != expected[1]:
        raise _ChecksumMismatch(f"the downloaded bytes do not match the object's {expected[0]} {expected[1][:12]}...")


def read_bytes(location: str | os.PathLike[str], settings: S3Settings | None = None) -> bytes:
    """Read a whole local file or S3 object (checked against its recorded checksum).

    Raises:
        StorageError: when it does not exist or cannot be read.
    """
    if is_s3_url(location):
        bucket, key = split_s3_url(str(location))
        settings = settings or S3Settings().reading(location)
        client = s3_client(settings)
        buffer = io.BytesIO()
        _retrying(str(location), "read the object", lambda: _get_verified(client, bucket, key, buffer), endpoint=settings.endpoint, keys=settings.key_variables)
        return buffer.getvalue()
    try:
        return Path(location).read_bytes()
    except OSError as exc:
        raise StorageError(location, f"cannot be read ({exc.strerror})", "check that the file exists and is readable") from exc


def write_bytes(location: str | os.PathLike[str], data: bytes, settings: S3Settings | None = None) -> None:
    """Write ``data`` to a local file or an S3 object (with its sha256 in the metadata), atomically."""
    if is_s3_url(location):
        bucket, key = split_s3_url(str(location))
        settings = settings or S3Settings()
        client = s3_client(settings)
        metadata = {CHECKSUM_META: hashlib.sha256(data).hexdigest()}
        _retrying(
            str(location),
            "write the object",
            lambda: client.put_object(bucket_name=bucket, object_name=key, data=io.BytesIO(data), length=len(data), metadata=metadata),
            endpoint=settings.endpoint,
        )
        return
    atomic_write_bytes(location, data)


def upload_file(local: str | os.PathLike[str], url: str, settings: S3Settings | None = None) -> None:
    """Upload one local file to ``s3://bucket/key``, with its sha256 in the object's metadata."""
    bucket, key = split_s3_url(url)
    settings = settings or S3Settings()
    client = s3_client(settings)
    metadata = {CHECKSUM_META: _sha256_file(local)}
    _retrying(url, "upload the file", lambda: client.fput_object(bucket_name=bucket, object_name=key, file_path=os.fspath(local), metadata=metadata), endpoint=settings.endpoint)


def download_file(url: str, local: str | os.PathLike[str], settings: S3Settings | None = None) -> Path:
    """Download ``s3://bucket/key`` to ``local`` atomically, checked against the object's checksum, and return the local path."""
    bucket, key = split_s3_url(url)
    settings = settings or S3Settings().reading(url)
    client = s3_client(settings)
    with atomic_output(local) as tmp:
        with open(tmp, "wb") as handle:
            _retrying(url, "download the object", lambda: _get_verified(client, bucket, key, handle), endpoint=settings.endpoint,
                      keys=settings.key_variables)
            handle.flush()
            os.fsync(handle.fileno())
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
    settings = settings or S3Settings().reading(url_prefix)
    client = s3_client(settings)
    objects = _retrying(url_prefix, "list the objects", lambda: list(client.list_objects(bucket_name=bucket, prefix=prefix, recursive=True)), endpoint=settings.endpoint,
                         keys=settings.key_variables)
    paths = []
    for obj in objects:
        relative = obj.object_name[len(prefix):]
        paths.append(download_file(f"s3://{bucket}/{obj.object_name}", Path(local_dir) / relative, settings))
    return paths


def exists(location: str | os.PathLike[str], settings: S3Settings | None = None) -> bool:
    """Whether a local file or an S3 object exists (a missing bucket: no).

    Raises:
        StorageError: when the S3 server cannot be reached or refuses the request.
    """
    if not is_s3_url(location):
        return Path(location).is_file()
    from minio.error import S3Error

    bucket, key = split_s3_url(str(location))
    settings = settings or S3Settings().reading(location)
    client = s3_client(settings)

    def stat() -> bool:
        try:
            client.stat_object(bucket_name=bucket, object_name=key)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchBucket", "ResourceNotFound"}:
                return False
            raise
        return True

    return _retrying(str(location), "look for the object", stat, endpoint=settings.endpoint, keys=settings.key_variables)


def remove(location: str | os.PathLike[str], settings: S3Settings | None = None) -> None:
    """Delete a local file or an S3 object; one that does not exist is no error."""
    if not is_s3_url(location):
        Path(location).unlink(missing_ok=True)
        return
    bucket, key = split_s3_url(str(location))
    settings = settings or S3Settings()
    client = s3_client(settings)
    _retrying(str(location), "delete the object", lambda: client.remove_object(bucket_name=bucket, object_name=key), endpoint=settings.endpoint)
