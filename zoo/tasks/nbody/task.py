"""Training and evaluation on the charged N-body task: predict positions 1000 simulator steps
ahead (mean squared error per coordinate, as EGNN and SEGNN)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch_geometric.data import Batch

from zoo.symmetry import sample_rotations
from zoo.tasks.base import Task, equivariance_errors_on
from zoo.tasks.nbody.card import NBodyCard
from zoo.train.recipe_schema import DataSection, LossSection

if TYPE_CHECKING:
    from zoo.train.recipe_schema import Recipe


class NBodyData(DataSection):
    """Numbers of simulated train / validation / test trajectories."""

    dataset: Literal["nbody"] = "nbody"
    n_train: int = Field(3000, ge=1)
    n_val: int = Field(2000, ge=1)
    n_test: int = Field(2000, ge=1)
    root: str | None = None


class NBodyLoss(LossSection):
    """Mean squared error of the predicted positions."""

    kind: Literal["mse"] = "mse"


def rotate_nbody_batch(batch: Any, rotations: torch.Tensor) -> Any:
    """Rotate positions, velocities and targets of every graph by its own rotation."""
    out = batch.clone()
    per_node = rotations.to(batch.pos.device)[batch.batch]
    for key in ("pos", "vel", "target"):
        setattr(out, key, torch.einsum("nij,nj->ni", per_node, getattr(batch, key)))
    return out


def evaluate_nbody(model, graphs: list, batch_size: int = 100) -> dict[str, Any]:
    """Test MSE (per coordinate) of ``model`` on N-body graphs."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start:start + batch_size])
            error = model(batch)["pos"].double() - batch.target.double()
            total += float(error.pow(2).sum())
            count += error.numel()
    return {"mse": float(f"{total / count:.6g}"), "n_trajectories": len(graphs)}


def _squared_error(model, batch) -> torch.Tensor:
    return (model(batch)["pos"] - batch.target).pow(2)


class NBodyTask(Task):
    """The charged 5-particle system of EGNN/SEGNN (Kipf et al. 2018 simulator)."""

    dataset = "nbody"
    data_model = NBodyData
    loss_model = NBodyLoss
    defaults = {
        "model": {"architecture": "egnn", "preset": "nbody", "args": {}},
        "optimizer": {"name": "adam", "lr": 5.0e-4, "weight_decay": 1.0e-12},
        "schedule": {"name": "constant", "warmup_epochs": 0},
        "training": {"batch_size": 100, "eval_batch_size": 500, "augment_rotations": False},
    }
    primary_metric = "mse"
    higher_is_better = False
    validation_curve = "val/mse"
    comparison_columns = [("mse", "test MSE", ".5f")]
    card = NBodyCard()

    def load_splits(self, recipe: Recipe, dtype: torch.dtype):
        from zoo.data.nbody import load_nbody, nbody_to_data_list

        d = recipe.data
        sizes = {"train": d.n_train, "val": d.n_val, "test": d.n_test}
        return tuple(
            nbody_to_data_list(load_nbody(split, root=d.root, max_samples=n), dtype)
            for split, n in sizes.items()
        )

    def load_test(self, data: dict[str, Any], root: str | None, dtype: torch.dtype):
        from zoo.data.nbody import load_nbody, nbody_to_data_list

        rows = load_nbody("test", root=root, max_samples=data.get("n_test", 2000))
        return nbody_to_data_list(rows, dtype)

    def training_loss(self, model, batch, recipe: Recipe, epoch: int):
        if recipe.training.augment_rotations:
            rotations = sample_rotations(batch.sample, epoch, recipe.seed, batch.pos.dtype)
            batch = rotate_nbody_batch(batch, rotations)
        mse = _squared_error(model, batch).mean()
        return mse, {"train/mse": mse}

    def validation_metrics(self, model, batch):
        return {"val/mse": _squared_error(model, batch).detach().mean()}

    def evaluate(self, model, data: list, batch_size: int) -> dict[str, Any]:
        return evaluate_nbody(model, data, batch_size)

    def equivariance_errors(self, model, data: list) -> dict[str, float]:
        inputs = Batch.from_data_list(
            [g.__class__(pos=g.pos, vel=g.vel, charge=g.charge) for g in data[:3]]
        )
        return equivariance_errors_on(model, inputs)

    def config_extra(self, recipe: Recipe, results: dict[str, Any]) -> dict[str, Any]:
        return {
            "units": {"positions": "simulator units", "velocities": "simulator units",
                      "charge": "±1"},
            "dataset": "charged N-body (5 particles)",
            "metrics": {"mse": results["test"]["mse"]},
            "test_trajectories": results["test"]["n_trajectories"],
        }
