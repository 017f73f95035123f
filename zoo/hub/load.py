"""``zoo.load``: a model name or folder in, a verified, ready-to-use model out."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.hub.checkpoint import cast, model_from_checkpoint, read_checkpoint
from zoo.hub.download import evict_if_cached, resolve
from zoo.hub.errors import CheckpointError, CorruptFileError, ZooError

# Keys of a config's "relaxation" recipe that describe training, not the branches to attach.
RECIPE_ONLY_KEYS = frozenset({"training", "notes"})


def load(
    name_or_path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    relaxed: bool = False,
    level: float | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> nn.Module:
    """Load a published model by name, or a checkpoint folder.

    Parameters
    ----------
    name_or_path
        A registered model name or alias (see :func:`zoo.list_models`), or a checkpoint folder
        written by :func:`zoo.save_pretrained`. Names are looked up in the bundled
        ``model_cards/``, then the Hugging Face cache, then the Hub (``HF_ENDPOINT`` chooses a
        mirror, ``HF_TOKEN`` a token, ``HF_HUB_OFFLINE=1`` forbids downloads).
    device
        Where to put the model; ``None`` keeps the CPU.
    dtype
        Floating dtype of the model; ``None`` keeps the checkpoint's. Torch's default dtype is
        never changed.
    relaxed
        Attach fresh relaxation branches (:func:`zoo.relax.relax`) following the recipe the model
        was trained with (CR for a model trained without relaxation), for fine-tuning; the model
        computes the same function until trained, since each branch's output layer starts at
        zero. The branches start at a positive level (``level``), so they receive gradients
        from the first step. What sets the levels afterwards is up to the training loop: keep
        them constant, or drive them with a controller (``c = zoo.relax.make_controller("cr",
        cooldown_epochs=1); c.attach(model)``, then ``c.on_epoch_start(epoch, n_epochs)`` every
        epoch and ``c.on_before_optimizer_step()`` after ``backward``), and call
        ``zoo.relax.project(model)`` at the end for an exactly equivariant model.
    level
        Starting level of the branches (``relaxed=True``); ``None``: :data:`RELAXED_LEVEL` for CR
        (a level of 0 would give the branches exactly zero gradient), the method's own start
        for ACE and RECM (1, a learnable level).
    revision
        Hub branch, tag or commit sha of a registered model; ``None`` is the registry's pinned
        commit.
    cache_dir
        Hugging Face cache folder; ``None`` is huggingface_hub's default.
    local_files_only
        Never use the network.

    Returns
    -------
    torch.nn.Module
        The model in eval mode, with ``model.zoo_info`` = ``{"name", "folder", "revision",
        "config"}``.

    Raises
    ------
    UnknownModelError, InvalidNameError
        The name is neither registered nor a folder, or looks like a path that does not exist.
    CorruptFileError
        A file differs from its recorded sha256 or size (removed from the cache if it came from
        there).
    IncompatibleVersionError
        The model needs a newer zoo.
    OfflineError, DownloadError
        The files are not cached and cannot be downloaded.
    """
    resolved = resolve(
        name_or_path,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        # Read at call time, not at huggingface_hub's import: a mirror set later still counts.
        endpoint=os.environ.get("HF_ENDPOINT") or None,
    )
    try:
        config, tensors = read_checkpoint(resolved.folder, resolved.expected_sha256)
    except CorruptFileError as err:
        evict_if_cached(resolved, err)
        raise
    entry = resolved.entry
    if entry is not None and config["architecture"] != entry.architecture:
        raise CheckpointError(
            f"{resolved.folder} holds architecture {config['architecture']!r}, but the registry "
            f"says model {entry.name!r} is {entry.architecture!r}"
        )
    model = model_from_checkpoint(config, tensors)
    del tensors  # the model holds its own copies; free the file's before casting or relaxing
    if relaxed:
        model = _relax(model, config, level)
    cast(model, dtype=dtype, device=device).eval()
    model.zoo_info = {
        "name": resolved.name,
        "folder": str(resolved.folder),
        "revision": resolved.revision,
        "config": config,
    }
    return model


def relax_recipe(config: dict[str, Any], relax_fn: Any) -> dict[str, Any]:
    """The keyword arguments for ``relax_fn`` from a config's relaxation recipe.

    Training-only keys (:data:`RECIPE_ONLY_KEYS`) are dropped, as is anything ``relax_fn`` does
    not accept when it takes no ``**options``; a model trained without relaxation gets ``"cr"``.
    """
    recipe = {
        k: v for k, v in dict(config.get("relaxation") or {}).items() if k not in RECIPE_ONLY_KEYS
    }
    if recipe.get("method", "none") == "none":
        recipe["method"] = "cr"
    parameters = inspect.signature(relax_fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        recipe = {k: v for k, v in recipe.items() if k in parameters}
    return recipe


#: Starting level of CR branches attached by ``zoo.load(..., relaxed=True)``: positive, so that
#: the branches learn from the first step; small, so that the branches start as a perturbation.
RELAXED_LEVEL = 0.1


def _relax(model: nn.Module, config: dict[str, Any], level: float | None) -> nn.Module:
    try:
        from zoo.relax import relax
    except ImportError as err:
        raise ZooError("relaxed=True needs zoo.relax, which could not be imported") from err
    recipe = relax_recipe(config, relax)
    if level is not None:
        recipe["level"] = level
    elif recipe["method"] == "cr":
        recipe["level"] = RELAXED_LEVEL
    return relax(model, **recipe)
