"""Where a checkpoint comes from: a local folder, the bundled cards, the Hugging Face cache or Hub.

:func:`resolve` turns what the user passed to :func:`zoo.load` into a folder, in this order:

1. a path (anything that is not a plain model name) naming an existing folder;
2. a registered model whose folder is bundled with the project, ``model_cards/<name>/``;
3. the Hugging Face cache, then
4. the Hub (or the mirror named by ``HF_ENDPOINT``), both through ``huggingface_hub``, which
   handles tokens, offline mode, file locks between processes and progress bars.

A plain name that is not registered but names an existing folder is loaded from that folder too;
a registered name always goes through the registry, so a stray folder in the working directory
cannot stand in for a published model. The checksums that apply to the folder travel with it in
:class:`Resolved`; :mod:`zoo.hub.checkpoint` checks them while reading.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zoo.hub.checkpoint import CONFIG_NAME, check_zoo_version, verify_folder
from zoo.hub.errors import CorruptFileError, DownloadError, InvalidNameError, OfflineError
from zoo.hub.pretrained import SAFE_NAME, PretrainedEntry, get_pretrained, is_registered
from zoo.resources import model_cards_dir as bundled_model_cards_dir

#: Folder of the bundled model cards. ``None``: ``$ZOO_MODEL_CARDS_DIR`` if set, else the one
#: shipped with zoo (:func:`zoo.resources.model_cards_dir`: the checkout's ``model_cards/``, or
#: the installed package's copy).
MODEL_CARDS_DIR: Path | None = None

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Resolved:
    """A checkpoint folder and what is known about where it came from.

    Attributes
    ----------
    folder
        The checkpoint folder.
    source
        ``"local"`` (a folder the user named), ``"bundled"`` (``model_cards/<name>``) or
        ``"hub"`` (the Hugging Face cache, downloaded if needed).
    name
        Registry name, or the folder's name for a local folder.
    revision
        Commit sha of the files, where known.
    expected_sha256
        Checksums from the registry that apply to these files (empty when none do).
    entry
        The registry entry, for registered models.
    """

    folder: Path
    source: Literal["local", "bundled", "hub"]
    name: str
    revision: str | None = None
    expected_sha256: Mapping[str, str] = field(default_factory=dict)
    entry: PretrainedEntry | None = None


def model_cards_dir() -> Path:
    """The folder holding the bundled model cards (see :data:`MODEL_CARDS_DIR`)."""
    if MODEL_CARDS_DIR is not None:
        return Path(MODEL_CARDS_DIR)
    env = os.environ.get("ZOO_MODEL_CARDS_DIR")
    if env:
        return Path(env)
    return bundled_model_cards_dir()


def offline_from_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set now (huggingface_hub itself reads it only at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can be a model name: ``[A-Za-z0-9._-]``, not starting with a dot."""
    return bool(SAFE_NAME.fullmatch(name))


def resolve(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Resolved:
    """Find (downloading if needed) the checkpoint folder of a model name or path.

    Parameters
    ----------
    name_or_path
        Registered model name or alias, or a checkpoint folder.
    revision
        Hub branch, tag or commit of a registered model; ``None`` is the registry's pinned commit.
    cache_dir
        Hugging Face cache folder; ``None`` is huggingface_hub's (``HF_HUB_CACHE``).
    local_files_only
        Never touch the network.
    endpoint
        Hub URL; ``None`` is huggingface_hub's default (``HF_ENDPOINT`` at its import).
    token
        Hub token; ``None`` is huggingface_hub's default (``HF_TOKEN``, the stored login).

    Returns
    -------
    Resolved

    Raises
    ------
    InvalidNameError
        A path-like name that is not an existing folder.
    UnknownModelError
        A plain name that is neither registered nor an existing folder.
    """
    if isinstance(name_or_path, os.PathLike) or not is_plain_name(str(name_or_path)):
        folder = _expanduser(Path(name_or_path))
        _refuse_a_file(folder)
        if not str(name_or_path) or not folder.is_dir():  # "" would be the working directory
            raise InvalidNameError(
                f"{str(name_or_path)!r} is neither a model name ([A-Za-z0-9._-], not starting "
                "with a dot) nor an existing folder"
            )
        return _local(folder, revision)
    name = str(name_or_path)
    if not is_registered(name) and Path(name).is_dir():
        return _local(Path(name), revision)
    if not is_registered(name):
        _refuse_a_file(Path(name))
    entry = get_pretrained(name)  # raises UnknownModelError with suggestions
    check_zoo_version(entry.min_zoo_version, f"model {entry.name!r}")
    if revision is None or revision == entry.revision:
        bundled = model_cards_dir() / entry.name
        if bundled.is_dir():
            return Resolved(bundled, "bundled", entry.name, entry.revision, entry.sha256, entry)
    return fetch(
        entry,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        endpoint=endpoint,
        token=token,
    )


# Suffixes of files people pass where a checkpoint folder is expected.
_WEIGHT_FILE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".pkl", ".safetensors"})


def _refuse_a_file(path: Path) -> None:
    """A clear error for a weights file (``model.pt``) passed where a folder belongs."""
    if path.is_dir() or not (path.is_file() or path.suffix.lower() in _WEIGHT_FILE_SUFFIXES):
        return
    where = "is a file" if path.is_file() else "looks like a file name"
    hint = (
        f"; pass its folder {str(path.parent)!r} if it holds a config.json"
        if path.suffix.lower() == ".safetensors"
        else "; pickled .pt/.ckpt files are never loaded (unpickling runs code): export the "
        "model with zoo.save_pretrained, or train it with `zoo train`, which writes a folder"
    )
    raise InvalidNameError(
        f"{str(path)!r} {where}, but zoo.load takes a registered model name or a checkpoint "
        f"folder (config.json + model.safetensors, written by zoo.save_pretrained){hint}"
    )


def _expanduser(path: Path) -> Path:
    try:
        return path.expanduser()
    except RuntimeError:  # "~someone" without such a user: not a folder, and refused as a name
        return path


def _local(folder: Path, revision: str | None) -> Resolved:
    if revision is not None:
        raise ValueError("revision= applies to registered models, not to a local folder")
    return Resolved(folder, "local", folder.resolve().name)


def fetch(
    entry: PretrainedEntry,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Resolved:
    """Get a registered model's files from the Hugging Face cache, downloading what is missing.

    Parameters are those of :func:`resolve`. The files are not verified here (see
    :func:`download` or :func:`zoo.hub.checkpoint.read_checkpoint`).

    Raises
    ------
    OfflineError
        Downloads are off and the files are not cached.
    DownloadError
        The Hub or mirror could not deliver a file.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    import zoo

    offline = local_files_only or offline_from_env()
    wanted = revision or entry.revision
    if wanted is None:
        bundled = model_cards_dir() / entry.name
        raise OfflineError(
            f"model {entry.name!r} is not on the Hub yet (no pinned revision): it is served from "
            f"the bundled folder {bundled}, which this installation lacks. Use a full clone of "
            "the zoo repository (or set ZOO_MODEL_CARDS_DIR to its model_cards folder), or name "
            "a Hub branch or tag (--revision on the command line, revision= in Python)."
        )
    # config.json first: its snapshot folder names the commit that `wanted` resolved to, and the
    # other files are then fetched from that same commit even if a branch moves meanwhile.
    filenames = [CONFIG_NAME, *sorted(f for f in entry.sha256 if f != CONFIG_NAME)]
    commit = wanted
    folder: Path | None = None
    for filename in filenames:
        try:
            path = Path(
                hf_hub_download(
                    entry.repo_id,
                    filename,
                    revision=commit,
                    cache_dir=cache_dir,
                    local_files_only=offline,
                    endpoint=endpoint,
                    token=token,
                    library_name="zoo",
                    library_version=zoo.__version__,
                )
            )
        except LocalEntryNotFoundError as err:
            if offline:
                raise OfflineError(
                    f"model {entry.name!r} ({entry.repo_id} at {wanted}) is not in the Hugging "
                    "Face cache and downloads are off (HF_HUB_OFFLINE=1 or local_files_only). "
                    f"Run `zoo download {entry.name}` while online, or set HF_ENDPOINT to a "
                    "reachable mirror."
                ) from err
            raise _download_error(entry, wanted, filename, endpoint, err) from err
        except Exception as err:  # huggingface_hub's HTTP, repository and consistency errors
            if not _is_transfer_error(err):
                raise
            raise _download_error(entry, wanted, filename, endpoint, err) from err
        if folder is None:
            folder = path.parent
            if _COMMIT_SHA.fullmatch(folder.name):
                commit = folder.name
    assert folder is not None
    resolved_commit = commit if _COMMIT_SHA.fullmatch(commit) else None
    expected = entry.sha256 if resolved_commit == entry.revision else {}
    if resolved_commit != entry.revision:
        pinned = (
            f"the registry's pinned commit {entry.revision}"
            if entry.revision is not None
            else "a commit the registry vouches for (it pins none: the model is bundled)"
        )
        warnings.warn(
            f"{entry.name}: revision {wanted!r} ({resolved_commit or 'unresolved'}) is not "
            f"{pinned}; its files are checked only against the checksums recorded in its own "
            "config.json",
            stacklevel=3,
        )
    return Resolved(folder, "hub", entry.name, resolved_commit, expected, entry)


def _is_transfer_error(err: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    # huggingface_hub lets its HTTP client's errors through after its own retries; they all live
    # in that client's package, which we do not import by name.
    module = type(err).__module__.split(".")[0]
    return isinstance(err, (HfHubHTTPError, OSError)) or module.startswith("httpx")


def _download_error(
    entry: PretrainedEntry, revision: str, filename: str, endpoint: str | None, err: Exception
) -> DownloadError:
    from huggingface_hub import constants

    where = endpoint or constants.ENDPOINT
    reason = str(err).rstrip(".")
    return DownloadError(
        f"could not download {filename} of model {entry.name!r} ({entry.repo_id} at {revision}) "
        f"from {where}: {type(err).__name__}: {reason}. Check the connection, or set "
        "HF_ENDPOINT to a reachable mirror; an interrupted download leaves nothing in the "
        "cache, so retrying is safe."
    )


def remove_from_cache(path: str | Path) -> None:
    """Remove a cached file: its snapshot entry and the blob it points to.

    Only called on a checksum mismatch. Concurrent loaders of the same model may race here;
    that is harmless: both remove the same bad blob (``missing_ok``), and a good copy never has
    the bad copy's blob name (blobs are named by the server's hash of their content).
    """
    path = Path(path)
    blob = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)


def download(
    name: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Download a registered model into the Hugging Face cache and verify it (``zoo download``).

    Parameters
    ----------
    name
        Registered model name or alias.
    revision, cache_dir, endpoint, token
        As in :func:`resolve`.

    Returns
    -------
    pathlib.Path
        The verified snapshot folder; for a model that is bundled and not on the Hub
        (no pinned revision, none asked for), the verified bundled folder: nothing to download.

    Raises
    ------
    CorruptFileError
        A downloaded file differs from its checksum; it is removed from the cache.
    """
    entry = get_pretrained(name)
    check_zoo_version(entry.min_zoo_version, f"model {entry.name!r}")
    bundled = model_cards_dir() / entry.name
    if revision is None and entry.revision is None and bundled.is_dir():
        verify_folder(bundled, entry.sha256)
        return bundled
    resolved = fetch(entry, revision=revision, cache_dir=cache_dir, endpoint=endpoint, token=token)
    verify_resolved(resolved)
    return resolved.folder


def verify_resolved(resolved: Resolved) -> None:
    """Verify a resolved folder's files; a corrupt file from the cache is removed from it."""
    try:
        verify_folder(resolved.folder, resolved.expected_sha256)
    except CorruptFileError as err:
        evict_if_cached(resolved, err)
        raise


def evict_if_cached(resolved: Resolved, err: CorruptFileError) -> None:
    """Remove the file named by ``err`` from the Hugging Face cache if it came from there."""
    if resolved.source == "hub":
        remove_from_cache(err.path)
        err.removed = True
