"""The model a fine-tuning run starts from: its config, its identity, its relaxation.

``zoo train --init-from`` and :func:`zoo.finetune` read the parent's ``config.json`` before any
run folder exists (a bad name fails first), record the parent in the new model's config and card
(name, revision, sha256 of its weights) and, by default, re-enable the relaxation it was trained
with (or CR for a model trained without one).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

__all__ = ["base_config", "inherited_relaxation", "parent_record", "training_lineage"]


def _resolve(init_from: str | os.PathLike[str]):
    from zoo.hub.download import resolve

    return resolve(init_from, endpoint=os.environ.get("HF_ENDPOINT") or None)


def base_config(init_from: str | os.PathLike[str] | nn.Module) -> dict[str, Any]:
    """The ``config.json`` of a published model, a model folder, or a loaded model (``{}`` for
    a model built in memory)."""
    if isinstance(init_from, nn.Module):
        return dict(getattr(init_from, "zoo_info", {}).get("config") or {})
    from zoo.hub.checkpoint import read_config

    resolved = _resolve(init_from)
    return read_config(resolved.folder, resolved.expected_sha256)


def _weights_sha256(model: nn.Module) -> str:
    from safetensors.torch import save

    from zoo.hub.checkpoint import _tensors_for_saving, sha256_bytes

    # The bytes save_pretrained would write: equal to the file's for an unchanged loaded model.
    return sha256_bytes(save(_tensors_for_saving(model), metadata={"format": "pt"}))


def parent_record(init_from: str | os.PathLike[str] | nn.Module) -> dict[str, Any]:
    """``{"name", "revision", "sha256", ...}`` of the model a run is fine-tuned from.

    ``sha256`` is that of its ``model.safetensors``; a model object changed (or cast) after it
    was loaded gets the sha256 of its current weights and ``"modified": True``. Registered
    models add their ``repo_id``, local folders their absolute ``folder``.
    """
    from zoo.hub.checkpoint import WEIGHTS_NAME, read_config

    if isinstance(init_from, nn.Module):
        info = getattr(init_from, "zoo_info", None) or {}
        current = _weights_sha256(init_from)
        config = info.get("config") or {}
        recorded = (config.get("files") or {}).get(WEIGHTS_NAME, {}).get("sha256")
        kind = getattr(init_from, "architecture", None) or type(init_from).__name__
        record: dict[str, Any] = {
            "name": info.get("name") or f"in-memory {kind} model",
            "revision": info.get("revision"),
            "sha256": current,
        }
        if recorded != current:
            record["modified"] = True
        return record
    resolved = _resolve(init_from)
    config = read_config(resolved.folder, resolved.expected_sha256)  # resolved once, not twice
    # A local folder is named by the model its config says it holds, not by the folder (an
    # export folder such as ``run/export`` would otherwise name the parent "export").
    name = (config.get("name") or resolved.name) if resolved.source == "local" else resolved.name
    record = {
        "name": name,
        "revision": resolved.revision,
        "sha256": config["files"][WEIGHTS_NAME]["sha256"],
    }
    if resolved.entry is not None:
        record["repo_id"] = resolved.entry.repo_id
    if resolved.source == "local":
        record["folder"] = str(resolved.folder.resolve())
    if str(init_from) != name:
        record["requested"] = str(init_from)
    lineage = training_lineage(config, name)
    if lineage:
        record["lineage"] = lineage
    return record


def training_lineage(config: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The training stages that made the model of ``config``, oldest first: its parent's
    lineage, then its own run (name, epochs, CPU-hours, segments and, where recorded, the
    per-epoch validation curve). ``[]`` where the config
    records no training cost (e.g. a model converted from elsewhere)."""
    training = config.get("training") or {}
    if training.get("cpu_hours") is None:
        return []
    earlier = list((training.get("parent") or {}).get("lineage") or [])
    segments = training.get("segments") or [{"command": training.get("command")}]
    own = {"name": name, "epochs": training.get("epochs"), "cpu_hours": training["cpu_hours"],
           "segments": segments}
    if training.get("validation_curve"):
        own["validation_curve"] = training["validation_curve"]  # a later stage's history plot
    return [*earlier, own]


def inherited_relaxation(config: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """The recipe ``relaxation`` section that re-enables relaxation on a parent model.

    Parameters
    ----------
    config
        The parent's ``config.json`` (:func:`base_config`).
    method
        ``"cr"``, ``"ace"``, ``"recm"`` or ``"none"``; ``None``: the method the parent was
        trained with, or CR for a parent trained without relaxation.

    Returns
    -------
    dict
        ``{"method", ...}``: with the parent's recorded branch form, regulariser weight and
        controller settings where the method is the parent's own; recipe defaults otherwise.
    """
    recorded = dict(config.get("relaxation") or {})
    own = recorded.get("method", "none")
    if method is None:
        method = own if own != "none" else "cr"
    section: dict[str, Any] = {"method": method, "controller": {}}
    if method == "none" or method != own:
        return section
    for key in ("form", "hidden_factor", "rank", "penalty_rows", "penalty_every", "init_scale"):
        if key in recorded:
            section[key] = recorded[key]
    training = recorded.get("training") or {}
    if "lambda_reg" in training:
        section["lambda_reg"] = training["lambda_reg"]
    section["controller"] = dict(training.get("controller") or {})
    return section
