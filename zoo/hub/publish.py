"""``zoo.publish``: upload a verified checkpoint folder to the Hub and pin the commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.hub.checkpoint import build_model, file_hashes, read_checkpoint, verify_folder


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

    Returns
    -------
    str
        The commit sha to pin as the registry entry's ``revision``. A ready-to-paste registry
        block is printed too.
    """
    folder = Path(folder)
    config = verify_folder(folder, exact=True)
    # A folder that verifies but whose weights do not fit its architecture would be published
    # broken: rebuild it once before anything leaves the machine.
    build_model(*read_checkpoint(folder))
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
    print(registry_block(folder.resolve().name, repo_id, sha, config, hashes))
    return sha


def registry_block(
    name: str, repo_id: str, revision: str, config: dict[str, Any], sha256: dict[str, str]
) -> str:
    """Source of the ``register_pretrained`` block for :mod:`zoo.hub.pretrained`."""
    files = json.dumps(sha256, indent=8, sort_keys=True).replace("\n}", "\n    }")
    return (
        "register_pretrained(PretrainedEntry(\n"
        f"    name={name!r},\n"
        f"    architecture={config['architecture']!r},\n"
        f"    repo_id={repo_id!r},\n"
        f"    revision={revision!r},\n"
        f"    sha256={files},\n"
        f"    dataset={config.get('dataset', '')!r},\n"
        "    licence='',\n"
        f"    min_zoo_version={config.get('min_zoo_version', '0.1.0')!r},\n"
        "    metrics={},\n"
        "))"
    )
