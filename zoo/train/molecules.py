"""Energy/force training on rMD17: data, normalisation fit, deterministic rotations, family."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch_geometric.data import Data

from zoo.errors import InputError
from zoo.models.graph import scatter_sum
from zoo.train.family import (
    TrainingFamily,
    equivariance_errors_on,
    register_family,
)
from zoo.train.recipe_schema import DataSection, LossSection
from zoo.units import EV_TO_MEV


def rows_to_data(dataset: Any, dtype: torch.dtype) -> list[Data]:
    """PyG graphs from rMD17 rows; ``energy`` stays float64 (totals of ~1e4 eV), and every graph
    carries its ``sample`` index (for deterministic per-sample augmentation)."""
    graphs = []
    for i, row in enumerate(dataset):
        graphs.append(Data(
            z=torch.as_tensor(row["z"], dtype=torch.long),
            pos=torch.as_tensor(row["pos"], dtype=dtype).reshape(-1, 3),
            energy=torch.as_tensor([row["energy"]], dtype=torch.float64),
            forces=torch.as_tensor(row["forces"], dtype=dtype).reshape(-1, 3),
            sample=torch.tensor([i]),
        ))
    return graphs


def fit_normalization(graphs: list[Data], max_atomic_number: int) -> dict[str, Any]:
    """Per-element reference energies (least squares on composition) and the force RMS as scale.

    With one molecule the composition never changes, so the minimum-norm least-squares solution
    spreads the mean energy over the elements in proportion to their counts: what matters is that
    the reference absorbs the mean, leaving the network the (small) fluctuations.
    """
    atomic_energies = fit_atomic_energies(
        [g.z.numpy() for g in graphs], [float(g.energy) for g in graphs], max_atomic_number
    )
    forces = torch.cat([g.forces.double() for g in graphs])
    scale = float(forces.pow(2).mean().sqrt())
    return {"atomic_energies": atomic_energies, "energy_scale": scale, "energy_shift": 0.0}


def fit_atomic_energies(
    numbers: list[np.ndarray], energies: list[float], max_atomic_number: int
) -> dict[int, float]:
    """Per-element reference energies: least squares of the total energies on the composition
    (minimum norm where the compositions do not determine them, see :func:`fit_normalization`).
    """
    counts = np.zeros((len(numbers), max_atomic_number + 1))
    for i, z in enumerate(numbers):
        counts[i] = np.bincount(np.asarray(z, dtype=np.int64), minlength=max_atomic_number + 1)
    present = counts.sum(0) > 0
    solution, *_ = np.linalg.lstsq(counts[:, present], np.asarray(energies, dtype=np.float64),
                                   rcond=None)
    return {int(z): float(e) for z, e in zip(np.nonzero(present)[0], solution, strict=True)}


def refit_reference_energies(
    model: Any, frames: Any, *, energy_key: str = "energy"
) -> dict[int, float]:
    """Refit a model's per-element reference energies on new frames, in place.

    Fine-tuning a published model on other data (another molecule, another level of theory)
    without this keeps the old references: the energy offset, often keV, then dominates the loss,
    and in relaxed fine-tuning the branches learn it and take it away at projection. Only the
    constant per-element offsets change; forces are unaffected.

    Parameters
    ----------
    model
        An energy model with per-element references (``set_atomic_energies``, ``elements``),
        e.g. from ``zoo.load("equiformer-md17-aspirin")``.
    frames
        ``ase.Atoms`` frames with their energy under ``energy_key``, PyG graphs with ``z`` and
        ``energy``, or rows (:func:`zoo.data.load_rmd17`, :func:`zoo.data.labelled.read_labelled`).
    energy_key
        Where ``ase.Atoms`` frames keep their energy (eV).

    Returns
    -------
    dict
        ``{atomic number: reference energy (eV)}``, which also become ``model.elements``.

    Raises
    ------
    UnseenElementsError
        The frames hold elements the model was never trained on: fine-tuning cannot teach a
        model an element it has no embedding for (train such a model from scratch).
    """
    if not hasattr(model, "set_atomic_energies"):
        raise TypeError(
            f"{type(model).__name__} has no per-element reference energies to refit "
            "(an energy model such as equiformer has)"
        )
    numbers, energies = _compositions_and_energies(frames, energy_key)
    if not numbers:
        raise ValueError("refit_reference_energies needs at least one frame")
    name = getattr(model, "zoo_info", {}).get("name") or getattr(
        model, "architecture", type(model).__name__)
    check_known_elements(model.elements, numbers, name)
    # The references absorb what the network does not predict: fit them to the residual of the
    # network's own energy (without references). Fitting to the raw energies would leave the
    # network's offset on the new molecule (eV, from environments it learned on another one).
    residual = np.asarray(energies) - _network_energies(model, frames, numbers)
    fitted = fit_atomic_energies(numbers, residual.tolist(), model.max_atomic_number)
    model.set_atomic_energies(fitted)
    return fitted


@torch.no_grad()
def _network_energies(model: Any, frames: Any, numbers: list, batch_size: int = 32) -> np.ndarray:
    """The model's energy of every frame minus its current per-element references (eV)."""
    from ase import Atoms
    from torch_geometric.data import Batch

    dtype = next(model.parameters()).dtype
    graphs = []
    for frame, z in zip(frames, numbers, strict=True):
        if isinstance(frame, Atoms):
            pos = frame.get_positions()
        elif isinstance(frame, Data):
            pos = frame.pos.detach().cpu().numpy()
        else:
            pos = np.asarray(frame["pos"])
        graphs.append(Data(z=torch.as_tensor(np.asarray(z), dtype=torch.long),
                           pos=torch.as_tensor(np.asarray(pos), dtype=dtype).reshape(-1, 3)))
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start:start + batch_size])
            energy = model(batch)["energy"].detach().double()
            references = scatter_sum(model._atomic_energies[batch.z], batch.batch,
                                     int(batch.num_graphs))
            out.append((energy - references).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


class UnseenElementsError(InputError):
    """Frames with elements a model was never trained on (it cannot be fine-tuned on them)."""


def check_known_elements(known: Any, numbers: Any, name: str = "the model") -> None:
    """Raise :class:`UnseenElementsError` where ``numbers`` (atomic numbers per frame) hold an
    element outside ``known`` (a model's ``elements``; ``None``, a model without references,
    accepts any)."""
    if known is None:
        return
    present = sorted({int(z) for zs in numbers for z in np.asarray(zs).tolist()})
    unseen = [z for z in present if z not in {int(k) for k in known}]
    if unseen:
        raise UnseenElementsError(
            f"the data holds {_formula(unseen)}, which {name} never saw in training (it knows "
            f"{_formula(known)} only): fine-tuning cannot teach a model new elements; remove "
            "those frames or train a model from scratch (zoo train)"
        )


def _formula(numbers: Any) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


def _compositions_and_energies(frames: Any, energy_key: str) -> tuple[list, list[float]]:
    from ase import Atoms

    numbers, energies = [], []
    for i, frame in enumerate(frames):
        if isinstance(frame, Atoms):
            from zoo.data.labelled import frame_labels

            energy, _ = frame_labels(frame, energy_key, forces_key=None, where=f"frame {i}")
            numbers.append(frame.numbers)
            energies.append(energy)
        elif isinstance(frame, Data):
            numbers.append(frame.z.cpu().numpy())
            energies.append(float(frame.energy))
        else:  # a row
            numbers.append(np.asarray(frame["z"]))
            energies.append(float(frame["energy"]))
    return numbers, energies


def rotate_batch(batch: Any, rotations: torch.Tensor) -> Any:
    """Rotate positions and forces of every graph of a batch by its own rotation."""
    out = batch.clone()
    per_atom = rotations.to(batch.pos.device)[batch.batch]
    out.pos = torch.einsum("nij,nj->ni", per_atom, batch.pos)
    out.forces = torch.einsum("nij,nj->ni", per_atom, batch.forces)
    return out




def evaluate_energy_forces(model, graphs: list, batch_size: int = 32) -> dict[str, float]:
    """Energy MAE (meV) and force MAE (meV/Å, per component) of ``model`` on ``graphs``."""
    from torch_geometric.loader import DataLoader

    energy_abs, forces_abs, n_frames, n_components = 0.0, 0.0, 0, 0
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        out = model(batch)
        energy_abs += float((out["energy"].detach() - batch.energy).abs().sum())
        forces_abs += float((out["forces"].detach() - batch.forces).abs().sum())
        n_frames += int(batch.num_graphs)
        n_components += batch.forces.numel()
    return {
        "energy_mae": round(energy_abs / n_frames * EV_TO_MEV, 4),
        "forces_mae": round(forces_abs / n_components * EV_TO_MEV, 4),
        "n_frames": n_frames,
    }


class RMD17Data(DataSection):
    """Which rMD17 molecule, and the split (frames of train.xyz: train + validation); or the
    user's own labelled frames (``train_file``), for energy/force models of any molecule.

    With ``train_file`` (any file ``ase.io.read`` reads; energies in eV and forces in eV/Å under
    ``energy_key`` and ``forces_key``), ``molecule``, ``n_train`` and ``n_val`` are not used: the
    validation frames are ``val_file``, or a seeded ``val_fraction`` (default 0.1) of the train
    file; the test frames are ``test_file``, or else the validation frames (the card says so).
    """

    dataset: Literal["rmd17"] = "rmd17"
    molecule: str | None = "aspirin"
    n_train: int = Field(950, ge=1)
    n_val: int = Field(50, ge=1)
    split_seed: int = Field(0, ge=0)
    max_test_frames: int | None = Field(None, ge=1)
    root: str | None = None
    train_file: str | None = None
    val_file: str | None = None
    val_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    test_file: str | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"

    @model_validator(mode="after")
    def _one_source(self) -> RMD17Data:
        if self.train_file is None:
            given = [k for k in ("val_file", "val_fraction", "test_file") if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)} need(s) data.train_file")
            if self.molecule is None:
                raise ValueError("name an rMD17 molecule (data.molecule) or a data.train_file")
        if self.val_file is not None and self.val_fraction is not None:
            raise ValueError("give data.val_file or data.val_fraction, not both")
        return self


class EnergyForceLoss(LossSection):
    """Weighted energy (total, eV) and force (eV/Å) errors."""

    kind: Literal["l1", "mse", "huber"] = "l1"
    energy_weight: float = Field(1.0, ge=0.0)
    forces_weight: float = Field(80.0, ge=0.0)
    huber_delta: float = Field(0.01, gt=0.0)


@register_family
class RMD17Family(TrainingFamily):
    """Energy/force regression on revised MD17 (the Equiformer MD17 protocol by default)."""

    dataset = "rmd17"
    data_model = RMD17Data
    loss_model = EnergyForceLoss
    defaults = {"model": {"architecture": "equiformer", "preset": "small", "args": {}}}
    primary_metric = "forces_mae"
    higher_is_better = False
    validation_curve = "val/forces_mae_mev"
    # The published MD17 families (v1) were selected on test force MAE with one seed per
    # method; kept so that training/publish_md17.py reproduces their cards.
    select_on = "test"
    comparison_columns = [("energy_mae", "test energy MAE (meV)", ".2f"),
                          ("forces_mae", "test force MAE (meV/Å)", ".2f")]

    def load_data(self, recipe: dict[str, Any], dtype: torch.dtype):
        from zoo.data import load_rmd17

        d = recipe["data"]
        if d["train_file"] is not None:
            splits = load_file_splits(d)
            return tuple(rows_to_data(splits[k], dtype) for k in ("train", "val", "test"))
        common = dict(root=d["root"], seed=d["split_seed"], n_train=d["n_train"],
                      n_val=d["n_val"])
        train = rows_to_data(load_rmd17(d["molecule"], "train", **common), dtype)
        val = rows_to_data(load_rmd17(d["molecule"], "val", **common), dtype)
        test = rows_to_data(
            load_rmd17(d["molecule"], "test", max_frames=d["max_test_frames"], **common), dtype
        )
        return train, val, test

    def build_model(self, recipe: dict[str, Any], train: list, init_from: Any):
        from zoo._registry import create_model

        if init_from is not None:
            model = base_model(init_from).train()
            # New data, new reference energies: without a refit, the energy offset between
            # molecules (keV) dominates the loss and, in relaxed fine-tuning, the branches learn
            # it and take it away at projection. Elements the model never saw are refused.
            if hasattr(model, "set_atomic_energies"):
                refit_reference_energies(model, train)
            return model
        cfg = recipe["model"]
        probe = create_model(cfg["architecture"], cfg["preset"], **cfg["args"])
        normalization = fit_normalization(train, probe.max_atomic_number)
        return create_model(cfg["architecture"], cfg["preset"], **{**normalization,
                                                                    **cfg["args"]})

    def make_task(self, model, recipe: dict[str, Any], train: list, val: list):
        from zoo.train.task import EnergyForceTask

        return EnergyForceTask(model, recipe, train, val)

    def evaluate(self, model, data: list, batch_size: int) -> dict[str, Any]:
        return evaluate_energy_forces(model, data, batch_size)

    def equivariance_errors(self, model, data: list) -> dict[str, float]:
        from torch_geometric.data import Batch

        inputs = Batch.from_data_list([Data(z=g.z, pos=g.pos) for g in data[:3]])
        return equivariance_errors_on(model, inputs)

    def load_test(self, data_cfg: dict[str, Any], root: str | None, dtype: torch.dtype):
        from zoo.data import load_rmd17

        if data_cfg.get("train_file"):
            return rows_to_data(load_file_splits(data_cfg)["test"], dtype)
        test = load_rmd17(
            data_cfg["molecule"], "test", root=root, seed=data_cfg.get("split_seed", 0),
            n_train=data_cfg.get("n_train", 950), n_val=data_cfg.get("n_val", 50),
            max_frames=data_cfg.get("max_test_frames"),
        )
        return rows_to_data(test, dtype)

    def render_card(self, recipe, results, info, curves, model) -> str:
        from zoo.train.card import render_card, render_file_data_card

        if recipe["data"]["train_file"] is not None:
            return render_file_data_card(recipe, results, info, curves, model,
                                         describe_data_files(recipe["data"]))
        return render_card(recipe, results["test"], results["equivariance"], info, curves, model)

    def config_extra(self, recipe: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        test = results["test"]
        d = recipe["data"]
        extra = {
            "units": {"energy": "eV", "forces": "eV/Å", "positions": "Å"},
            "dataset": f"rMD17 {d['molecule']}",
            "metrics": {k: test[k] for k in ("energy_mae", "forces_mae")},
            "test_frames": test["n_frames"],
        }
        if d["train_file"] is not None:
            files = describe_data_files(d)
            extra["dataset"] = f"own data: {Path(d['train_file']).name}"
            extra["data_files"] = files
            # What the "metrics" were measured on: held-out test frames, or (without a test
            # file) the validation frames, which also steered training.
            extra["metrics_split"] = "test" if d["test_file"] else "validation"
        return extra


DEFAULT_VAL_FRACTION = 0.1


def load_file_splits(data: Any) -> dict[str, list[dict[str, Any]]]:
    """Train, validation and test rows of a ``data`` section with a ``train_file``.

    Validation: ``val_file``, or a seeded ``val_fraction`` (default 0.1, at least one frame) of
    the train file, the rest training. Test: ``test_file``, or else the validation frames.
    """
    from zoo.data.labelled import read_labelled
    from zoo.data.rmd17 import InvalidFrameError

    keys = (data.get("energy_key", "energy"), data.get("forces_key", "forces"))
    train_file = data["train_file"]
    rows = read_labelled(train_file, *keys)
    if data.get("val_file"):
        train, val = rows, read_labelled(data["val_file"], *keys)
    else:
        fraction = data.get("val_fraction") or DEFAULT_VAL_FRACTION
        n_val = max(1, round(fraction * len(rows)))
        if len(rows) - n_val < 1:
            raise InvalidFrameError(
                f"{train_file} holds {len(rows)} frame(s): too few to hold out {n_val} for "
                "validation and train on the rest; give more frames or a validation file"
            )
        perm = np.random.default_rng(data.get("split_seed", 0)).permutation(len(rows))
        val = [rows[i] for i in np.sort(perm[:n_val])]
        train = [rows[i] for i in np.sort(perm[n_val:])]
    test = read_labelled(data["test_file"], *keys) if data.get("test_file") else val
    if data.get("max_test_frames"):
        test = test[: data["max_test_frames"]]
    return {"train": train, "val": val, "test": test}


def describe_data_files(data: Any) -> dict[str, dict[str, Any]]:
    """``{role: {"path", "sha256"}}`` of the files of a ``train_file`` data section."""
    from zoo.hub.checkpoint import sha256_file

    files = {}
    for role in ("train_file", "val_file", "test_file"):
        path = data.get(role)
        if path:
            files[role.removesuffix("_file")] = {"path": str(path), "sha256": sha256_file(path)}
    return files


def base_model(init_from: Any):
    """The model a fine-tuning run starts from: a published name or folder (loaded), or a model
    object (an independent copy: the caller's model is left as it was)."""
    from torch import nn

    if not isinstance(init_from, nn.Module):
        from zoo.hub.load import load

        return load(init_from)
    from zoo import relax

    if relax.branches(init_from):
        raise ValueError(
            "the model to fine-tune still has relaxation branches: pass the projected model "
            "(zoo.load(name), or zoo.relax.project(model)); fine-tuning attaches fresh ones"
        )
    model = init_from.clone() if hasattr(init_from, "clone") else copy.deepcopy(init_from)
    if hasattr(init_from, "zoo_info"):
        model.zoo_info = dict(init_from.zoo_info)
    return model
