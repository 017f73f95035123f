"""The zoo's cache folder, and files and folders written so that no reader ever sees half of one.

- :func:`cache_root` / :func:`cache_dir`: ``$ZOO_CACHE_DIR`` (or ``~/.cache/zoo``) and a named
  dataset folder under it;
- :func:`atomic_writer`, :func:`atomic_write_bytes`, :func:`atomic_write_text`,
  :func:`atomic_write_json`: write a temporary sibling, then rename it over the target;
- :func:`atomic_folder`: fill a temporary sibling folder, then swap it in place of the target;
- :func:`read_manifest` / :func:`write_manifest`: a cache folder's ``manifest.json``.

This module imports nothing from zoo and nothing heavy: every part of zoo may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "CACHE_ENV_VAR",
    "MANIFEST_NAME",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "cache_dir",
    "cache_root",
    "read_manifest",
    "replace_folder",
    "write_manifest",
]

CACHE_ENV_VAR = "ZOO_CACHE_DIR"
MANIFEST_NAME = "manifest.json"


def cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder under which generated and downloaded data is cached.

    Parameters
    ----------
    root
        An explicit root; ``None``: ``$ZOO_CACHE_DIR`` when set and not empty, else
        ``~/.cache/zoo``.

    Returns
    -------
    pathlib.Path
        The root, ``~`` expanded and absolute. It need not exist.
    """
    if root is None:
        env = os.environ.get(CACHE_ENV_VAR, "").strip()
        root = env if env else Path.home() / ".cache" / "zoo"
    return Path(root).expanduser().resolve()


def cache_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``cache_root(root) / name``: the folder of one cached dataset version (need not exist)."""
    return cache_root(root) / name


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str],
    mode: Literal["wb", "w"] = "wb",
    *,
    encoding: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    A reader (or a crash) never sees a half-written file: on any exception, interrupts
    included, the temporary file is removed and ``path`` keeps its old content (or stays
    absent). The parent folder must exist.

    Parameters
    ----------
    path
        The file to write.
    mode
        ``"wb"`` (bytes) or ``"w"`` (text).
    encoding
        Text encoding for ``mode="w"``.
    fsync
        Flush the data to disk before the rename.

    Yields
    ------
    file object
        The open temporary file (named ``.<name>.<random>.part``, next to ``path``).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as out:
            yield out
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; these files are meant to be read
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as out:
        out.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, "w", encoding=encoding) as out:
        out.write(text)


def atomic_write_json(
    path: str | os.PathLike[str], data: Any, *, indent: int = 2, sort_keys: bool = False
) -> None:
    """Write ``data`` as JSON (with a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


# --------------------------------------------------------------------------- folders


def replace_folder(
    source: Path, folder: Path, *, accept_existing: Callable[[Path], bool] | None = None
) -> None:
    """Rename ``source`` to ``folder``, replacing a folder already there.

    A folder cannot be renamed onto a non-empty one: the old one is moved aside first and
    removed after the rename.

    Parameters
    ----------
    source
        The complete new folder (on the same file system as ``folder``).
    folder
        Where it goes.
    accept_existing
        Called when the final rename fails (another process put a folder there first): if it
        returns true for the folder now in place, that one is kept and no error is raised.
    """
    old = None
    try:
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old / folder.name)
        try:
            os.replace(source, folder)
        except OSError:
            if accept_existing is None or not accept_existing(folder):
                raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(
    folder: str | os.PathLike[str], *, accept_existing: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Fill a temporary sibling of ``folder``; on success it replaces ``folder`` in one rename.

    On any exception the temporary folder is removed and ``folder`` is left as it was: never a
    half-written cache.

    Parameters
    ----------
    folder
        The folder to (re)create; its parent is created if needed.
    accept_existing
        See :func:`replace_folder`.

    Yields
    ------
    pathlib.Path
        The empty temporary folder (``.<name>.tmp-<random>``) to write into.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; a cache is ordinary shared data
        replace_folder(tmp, folder, accept_existing=accept_existing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(folder: str | os.PathLike[str]) -> Any:
    """The parsed ``manifest.json`` of a cache folder (``OSError``/``ValueError`` if unreadable)."""
    return json.loads((Path(folder) / MANIFEST_NAME).read_text())


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Write a cache folder's ``manifest.json`` (indented, key order kept)."""
    atomic_write_json(Path(folder) / MANIFEST_NAME, manifest)
