"""Download a file over http(s), verified, and copy streams: shared by every dataset downloader.

:func:`fetch_url` streams one URL into a temporary sibling of the target and renames it into
place only once size, sha256 and md5 (those given) match; :func:`fetch_first` tries several URLs
(mirrors) in turn. A failed, truncated or corrupted download never leaves a file that looks
valid. Everything raises :class:`DownloadError`, the zoo's one download error (also raised for
the Hugging Face Hub, see :mod:`zoo.hub.errors`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from zoo.data.cache import atomic_writer
from zoo.hub.errors import DownloadError

__all__ = [
    "CHUNK",
    "DownloadError",
    "copy_atomically",
    "fetch_first",
    "fetch_url",
    "file_digests",
    "verify_digests",
]

CHUNK = 1 << 20
_USER_AGENT = "zoo-model-zoo (python urllib)"  # figshare rejects some requests without one


def file_digests(path: str | os.PathLike[str]) -> tuple[str, str, int]:
    """The sha256 (hex), md5 (hex) and size in bytes of a file, in one pass."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def verify_digests(
    sha256: str,
    md5: str,
    size: int,
    expected_sha256: str | None,
    expected_md5: str | None,
    expected_size: int | None,
) -> None:
    """Raise :class:`DownloadError` naming the first measured value that differs from its
    expected one (``None`` skips that check)."""
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"size mismatch: got {size} bytes, expected {expected_size}")
    if expected_sha256 is not None and sha256 != expected_sha256.lower():
        raise DownloadError(f"sha256 mismatch: got {sha256}, expected {expected_sha256}")
    if expected_md5 is not None and md5 != expected_md5.lower():
        raise DownloadError(f"md5 mismatch: got {md5}, expected {expected_md5}")


def fetch_url(
    url: str,
    target: Path,
    *,
    expected_sha256: str | None,
    expected_md5: str | None,
    expected_size: int | None,
    progress: bool,
    timeout: float,
) -> None:
    """Stream ``url`` into a temporary file next to ``target``; rename only once verified.

    Parameters
    ----------
    url
        An ``http://`` or ``https://`` URL.
    target
        The file to write (its folder must exist).
    expected_sha256, expected_md5, expected_size
        Checks of the downloaded bytes; ``None`` skips one.
    progress
        Show a tqdm progress bar.
    timeout
        Socket timeout in seconds.

    Raises
    ------
    DownloadError
        A refused URL, a size announced or received that differs, or a checksum mismatch.
        Network errors pass through as ``OSError`` / ``http.client.HTTPException``.
    """
    from tqdm.auto import tqdm

    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"only http(s) URLs are supported, got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with atomic_writer(target) as out, urllib.request.urlopen(request, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        if announced is not None and expected_size is not None and announced != expected_size:
            raise DownloadError(f"server announces {announced} bytes, expected {expected_size}")
        sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
        with tqdm(
            total=announced or expected_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=target.name,
            disable=not progress,
        ) as bar:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        if announced is not None and size != announced:
            raise DownloadError(f"truncated download: got {size} of {announced} bytes")
        verify_digests(
            sha.hexdigest(), md5.hexdigest(), size, expected_sha256, expected_md5, expected_size
        )


def fetch_first(urls: Sequence[str], target: Path, *, what: str, **checks: object) -> None:
    """:func:`fetch_url` from the first of ``urls`` that delivers a verified file.

    Parameters
    ----------
    urls
        URLs tried in turn (mirrors of the same bytes).
    target
        The file to write.
    what
        What is downloaded, for the error message (e.g. ``"the rMD17 archive"``).
    **checks
        The keyword arguments of :func:`fetch_url` (expected digests, progress, timeout).

    Raises
    ------
    DownloadError
        No URL worked; the message lists every URL's error.
    """
    errors = []
    for url in urls:
        try:
            fetch_url(url, target, **checks)  # type: ignore[arg-type]
            return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise DownloadError(f"could not download {what}:\n  " + "\n  ".join(errors))


def copy_atomically(src: BinaryIO, dest: Path) -> None:
    """Copy a readable binary stream (e.g. an archive member) into ``dest`` atomically,
    creating ``dest``'s folder if needed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(dest) as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
