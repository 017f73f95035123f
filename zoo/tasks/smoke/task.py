"""Training on the smoke-plume Rotation set (Wang, Walters & Yu 2022; SMOKE.md).

From 10 velocity frames, predict the next 6 autoregressively (each prediction is fed back);
the loss is the MSE of every predicted frame, summed over the frames as in the authors'
``train_epoch``. Validation: RMSE over 6 frames on later windows of the training simulations.
Test: RMSE over 20 frames on the "Future" windows (same simulations, later times) and on the
"Domain" simulations (held-out buoyancies), the paper's Table 2 columns. RMSE is the square root
of the mean squared error over samples, frames, components and pixels (the authors average
per-batch MSEs before the root: the same number up to the last, smaller batch).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch

from zoo.symmetry import sample_generator
from zoo.tasks.base import RootMeanSquare, Task, equivariance_errors_on
from zoo.tasks.smoke.card import SmokeCard
from zoo.train.recipe_schema import CappedSplitsData, LossSection

if TYPE_CHECKING:
    from zoo.train.recipe_schema import Recipe


class SmokeData(CappedSplitsData):
    """Optional caps on the number of windows per split."""

    dataset: Literal["smoke-rotation"] = "smoke-rotation"


class RolloutLoss(LossSection):
    """MSE of the rolled-out frames, summed or averaged over frames."""

    kind: Literal["mse"] = "mse"
    frames: Literal["sum", "mean"] = "sum"


def rotate_samples(model, inputs: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
                   seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn every sample by its own random quarter turn (a pure function of seed, epoch and
    sample index), inputs and targets alike."""
    turns = [int(torch.randint(4, (1,), generator=sample_generator(seed, epoch, int(i))))
             for i in index]
    out_x, out_y = inputs.clone(), targets.clone()
    for k in range(1, 4):
        chosen = [n for n, t in enumerate(turns) if t == k]
        if chosen:
            out_x[chosen] = model.input_rep.rotate(inputs[chosen], k)
            out_y[chosen] = model.output_rep.rotate(targets[chosen], k)
    return out_x, out_y


@torch.no_grad()
def rollout_rmse(model, data, batch_size: int = 16) -> float:
    """RMSE of autoregressive predictions over a windowed split (every target frame)."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    dtype = next(model.parameters()).dtype
    squared, count = 0.0, 0
    for inputs, targets, _ in loader:
        predictions = model.rollout(inputs.to(dtype), targets.shape[1])
        error = predictions.double() - targets.double()
        squared += float(error.pow(2).sum())
        count += error.numel()
    return math.sqrt(squared / count)


def _limit(data, n: int | None):
    if n is None or n >= len(data):
        return data
    return torch.utils.data.Subset(data, range(n))


def _splits(root: str | None, dtype: torch.dtype, names: tuple[str, ...]):
    from zoo.data.smoke import SMOKE_SPLITS, load_frames, load_smoke

    simulations = sorted({k for name in names for k, _ in SMOKE_SPLITS[name].tasks})
    frames = load_frames(simulations, root, dtype)
    return {name: load_smoke(name, dtype=dtype, frames=frames) for name in names}


class SmokeRotationTask(Task):
    """The smoke-plume Rotation set: 10 frames in, autoregressive velocity prediction."""

    dataset = "smoke-rotation"
    data_model = SmokeData
    loss_model = RolloutLoss
    defaults = {
        "model": {"architecture": "smoke-rsteer", "preset": "smoke", "args": {}},
        "relaxation": {"form": "conv"},
        "optimizer": {"name": "adam", "lr": 1.0e-3, "weight_decay": 4.0e-4},
        "schedule": {"name": "step", "warmup_epochs": 0, "step_size": 1, "gamma": 0.95},
        "training": {"batch_size": 16, "eval_batch_size": 16, "augment_rotations": False,
                     "keep": "best"},
    }
    primary_metric = "rmse_future"
    higher_is_better = False
    validation_curve = "val/rmse"
    comparison_columns = [("rmse_future", "test RMSE, Future", ".3f"),
                          ("rmse_domain", "test RMSE, Domain", ".3f")]
    card = SmokeCard()

    def load_splits(self, recipe: Recipe, dtype: torch.dtype):
        d = recipe.data
        s = _splits(d.root, dtype, ("train", "val", "future", "domain"))
        test = {name: _limit(s[name], d.max_test) for name in ("future", "domain")}
        return _limit(s["train"], d.max_train), _limit(s["val"], d.max_val), test

    def load_test(self, data: dict[str, Any], root: str | None, dtype: torch.dtype):
        s = _splits(root, dtype, ("future", "domain"))
        return {name: _limit(s[name], data.get("max_test")) for name in s}

    def training_loss(self, model, batch, recipe: Recipe, epoch: int):
        """Autoregressive MSE over the target frames, plus RSteer's own weight constraint."""
        inputs, targets, index = batch
        if recipe.training.augment_rotations:
            inputs, targets = rotate_samples(model, inputs, targets, index, recipe.seed, epoch)
        predictions = model.rollout(inputs, targets.shape[1])
        per_frame = (predictions - targets).pow(2).mean(dim=(0, 2, 3, 4))
        loss = per_frame.sum() if recipe.loss.frames == "sum" else per_frame.mean()
        logs = {"train/mse": per_frame.mean().detach()}
        constraint = getattr(model, "weight_constraint", None)
        if constraint is not None:
            value = constraint()
            loss = loss + value
            logs["train/weight_constraint"] = value.detach()
        return loss, logs

    def model_inputs(self, batch):
        return batch[0]  # (input window, target frames, index): one step's input

    def validation_metrics(self, model, batch):
        inputs, targets, _ = batch
        error = (model.rollout(inputs, targets.shape[1]) - targets).detach()
        return {
            "val/mse": error.pow(2).mean(),
            "val/rmse": RootMeanSquare(
                error.double().pow(2).sum(),
                torch.tensor(float(error.numel()), dtype=torch.float64, device=error.device),
            ),
        }

    def evaluate(self, model, data, batch_size: int) -> dict[str, Any]:
        return {
            "rmse_future": round(rollout_rmse(model, data["future"], batch_size), 6),
            "rmse_domain": round(rollout_rmse(model, data["domain"], batch_size), 6),
            "n_future": len(data["future"]),
            "n_domain": len(data["domain"]),
        }

    def equivariance_errors(self, model, data) -> dict[str, float]:
        inputs = torch.stack([data["domain"][i][0] for i in range(2)])
        return equivariance_errors_on(model, inputs)

    def config_extra(self, recipe: Recipe, results: dict[str, Any]) -> dict[str, Any]:
        test = results["test"]
        return {
            "units": {"velocity": "grid cells per simulation step"},
            "dataset": "smoke plume, Rotation set (Wang et al. 2022), PhiFlow 3.4 re-simulation",
            "metrics": {k: test[k] for k in ("rmse_future", "rmse_domain")},
            "test_samples": {"future": test["n_future"], "domain": test["n_domain"]},
            "input_frames": 10,
        }
