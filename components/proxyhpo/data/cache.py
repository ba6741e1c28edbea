"""A read-only shared data cache: data set files a task takes from a mounted folder (a PVC) instead of S3.

The cache holds files at the same relative paths as under the data root (``PROXYHPO_DATASETS_ROOT``): object
``s3://proxyhpo/datasets/spleen/imagesTr/a.nii.gz`` is ``<PROXYHPO_DATA_CACHE>/spleen/imagesTr/a.nii.gz``. A
cached file is used when its size is the object's and its bytes hash, while being copied, to the checksum the object
records (sha256 metadata or a single-part ETag's MD5, read with the same HEAD request); anything else is downloaded
as before, an object without a checksum included (another tool's multipart upload): its size alone cannot tell a
stale file of the same size, such as an uncompressed volume of the same geometry. The compiled tasks set ``PROXYHPO_DATA_CACHE`` where the study sets ``resources.data_cache``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from proxyhpo import storage

__all__ = ["CACHE_ENV", "cached_path", "take_from_cache", "take_or_download"]

#: The variable naming the cache's mount path in a task's pod (unset: no cache).
CACHE_ENV = "PROXYHPO_DATA_CACHE"


def cached_path(object_url: str) -> Path | None:
    """Where the cache would hold ``object_url``: None without a cache, or for an object outside the data root."""
    cache = os.environ.get(CACHE_ENV, "")
    root = storage.S3Settings().datasets_root.rstrip("/")
    if not cache or not root or not object_url.startswith(root + "/"):
        return None
    relative = PurePosixPath(object_url[len(root) + 1 :])
    if relative.is_absolute() or ".." in relative.parts:
        return None
    return Path(cache, *relative.parts)


class _Stale(Exception):
    """The cached file's bytes are not the object's (a cache older than the data set)."""


def take_from_cache(object_url: str, target: str | os.PathLike[str]) -> bool:
    """Copy ``object_url``'s file from the cache to ``target`` when the cache holds the object's bytes.

    Returns:
        True when ``target`` now holds them (no download); False when the cache has no file of the object's size,
        or the object records no checksum to check the file against.

    Raises:
        _Stale: when the cached file's bytes do not hash to the object's checksum (``target`` is left as it was).
        StorageError: when the object cannot be reached (its size and checksum are read with one HEAD request).
    """
    source = cached_path(object_url)
    if source is None or not source.is_file():
        return False
    size, expected = storage.object_size_and_checksum(object_url)
    if expected is None or source.stat().st_size != size:  # unverifiable: S3's copy is the only one known to be right
        return False
    digest = hashlib.new(expected[0])
    with storage.atomic_output(target) as partial, open(source, "rb") as reader, open(partial, "wb") as writer:
        for chunk in iter(lambda: reader.read(1 << 20), b""):
            digest.update(chunk)  # hashed while copied: no second read
            writer.write(chunk)
        if digest.hexdigest() != expected[1]:
            raise _Stale()
    return True


def take_or_download(object_url: str, target: str | os.PathLike[str]) -> str:
    """Stage ``object_url`` at ``target``: from the cache when it holds the object, else from S3.

    Returns:
        ``"cache"`` or ``"s3"``, where the bytes came from.
    """
    try:
        if take_from_cache(object_url, target):
            return "cache"
    except _Stale:
        pass  # atomic_output removed the partial copy; S3 holds the truth
    storage.download_file(object_url, target)
    return "s3"

