"""``zoo.publish``: upload a verified checkpoint folder to the Hub and pin the commit in the
registry (``index.json``, see :mod:`zoo.hub.index`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.hub.checkpoint import file_hashes, model_from_checkpoint, read_checkpoint, verify_folder
from zoo.hub.index import record_model
from zoo.hub.pretrained import index_path


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    revision_tag: str | None = None,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
    index: str | Path | None = None,
    name: str | None = None,
) -> str:
    """Upload a checkpoint folder to a Hub model repository.

    The folder is verified first: it must hold exactly ``README.md``, ``config.json`` and the
    weights its config records, with matching checksums, and the weights must load strictly
    into the architecture the config names.

    Parameters
    ----------
    folder
        Checkpoint folder written by :func:`zoo.save_pretrained`.
    repo_id
        ``"org/name"``; created if it does not exist.
    revision_tag
        Tag to put on the new commit, e.g. ``"v1"``.
    token
        Hub token with write access; ``None`` is huggingface_hub's default.
    private
        Create the repository as private (an existing one keeps its visibility).
    endpoint
        Hub URL; ``None`` is huggingface_hub's default.
    commit_message
        Message of the upload commit.
    api
        An ``HfApi``-like object (tests); ``None`` builds ``HfApi(endpoint=..., token=...)``.
    index
        The registry file to record the upload in; ``None``: the bundled
        ``model_cards/index.json`` (:func:`zoo.hub.pretrained.index_path`).
    name
        Registry name; ``None``: the config's ``name``, else the folder's name.

    Returns
    -------
    str
        The commit sha, pinned as the entry's ``revision`` in ``index`` (with the sha256 and
        size of every uploaded file; see :func:`zoo.hub.index.record_model`).
    """
    folder = Path(folder)
    verify_folder(folder, exact=True)
    # A folder that verifies but whose weights do not fit its architecture would be published
    # broken: rebuild it once before anything leaves the machine.
    model_from_checkpoint(*read_checkpoint(folder))
    hashes = file_hashes(folder)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        allow_patterns=sorted(hashes),
        commit_message=commit_message or f"Upload {folder.resolve().name} with zoo",
        token=token,
    )
    sha = str(commit.oid)
    if revision_tag is not None:
        api.create_tag(repo_id, tag=revision_tag, revision=sha, token=token)
    print(
        f"published {folder} to {repo_id} at commit {sha}"
        + (f" (tag {revision_tag})" if revision_tag else "")
    )
    if file_hashes(folder) != hashes:  # the registry must pin exactly what was uploaded
        raise RuntimeError(f"{folder} changed while it was uploaded; publish it again")
    target = Path(index) if index is not None else index_path()
    entry = record_model(folder, index=target, name=name, repo_id=repo_id, revision=sha)
    print(f"recorded {entry.name} at {sha} in {target}")
    return sha
