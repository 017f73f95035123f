"""The Lightning modules of the N-body, ModelNet40 and smoke-plume training families.

Each family's ``make_task`` imports its task from here when training starts (rMD17's is
:class:`zoo.train.task.EnergyForceTask`). They live apart from the family modules so that
evaluating a published model (``zoo verify``, which uses a family's ``load_test`` and
``evaluate``) never imports Lightning.
"""

from __future__ import annotations

import torch

from zoo.symmetry import sample_rotations
from zoo.train.nbody import rotate_nbody_batch
from zoo.train.pointclouds import training_clouds
from zoo.train.smoke import rotate_samples
from zoo.train.task import RelaxedTask

__all__ = ["NBodyTask", "PointCloudTask", "SmokeTask"]


class NBodyTask(RelaxedTask):
    """Mean squared error of the predicted positions (per coordinate, as EGNN and SEGNN)."""

    def _squared_error(self, batch) -> torch.Tensor:
        return (self.model(batch)["pos"] - batch.target).pow(2)

    def task_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.recipe["training"]["augment_rotations"]:
            rotations = sample_rotations(
                batch.sample, self.current_epoch, int(self.recipe["seed"]), batch.pos.dtype
            )
            batch = rotate_nbody_batch(batch, rotations)
        mse = self._squared_error(batch).mean()
        return mse, {"train/mse": mse}

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        return {"val/mse": self._squared_error(batch).detach().mean()}


class PointCloudTask(RelaxedTask):
    """Cross-entropy classification (optionally label-smoothed, as the DGCNN reference)."""

    def task_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        points, labels, index = batch
        clouds = training_clouds(
            points, index, int(self.recipe["data"]["n_points"]), int(self.recipe["seed"]),
            self.current_epoch, bool(self.recipe["training"]["augment_rotations"]),
        )
        logits = self.model(clouds)["logits"]
        loss = torch.nn.functional.cross_entropy(
            logits, labels, label_smoothing=float(self.recipe["loss"]["label_smoothing"])
        )
        accuracy = (logits.detach().argmax(-1) == labels).float().mean()
        return loss, {"train/accuracy": accuracy}

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        clouds, labels, _ = batch
        logits = self.model(clouds)["logits"]
        return {
            "val/accuracy": (logits.argmax(-1) == labels).float().mean(),
            "val/loss": torch.nn.functional.cross_entropy(logits, labels),
        }


class SmokeTask(RelaxedTask):
    """Autoregressive MSE over the target frames, plus RSteer's own weight constraint."""

    def task_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, targets, index = batch
        if self.recipe["training"]["augment_rotations"]:
            inputs, targets = rotate_samples(self.model, inputs, targets, index,
                                             int(self.recipe["seed"]), self.current_epoch)
        predictions = self.model.rollout(inputs, targets.shape[1])
        per_frame = (predictions - targets).pow(2).mean(dim=(0, 2, 3, 4))
        frames = self.recipe["loss"]["frames"]
        loss = per_frame.sum() if frames == "sum" else per_frame.mean()
        logs = {"train/mse": per_frame.mean().detach()}
        constraint = getattr(self.model, "weight_constraint", None)
        if constraint is not None:
            value = constraint()
            loss = loss + value
            logs["train/weight_constraint"] = value.detach()
        return loss, logs

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._squared = torch.zeros((), dtype=torch.float64, device=self.device)
        self._count = torch.zeros((), dtype=torch.float64, device=self.device)

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        inputs, targets, _ = batch
        error = (self.model.rollout(inputs, targets.shape[1]) - targets).detach()
        self._squared += error.double().pow(2).sum()
        self._count += error.numel()
        return {"val/mse": error.pow(2).mean()}

    def on_validation_epoch_end(self) -> None:
        squared = self.trainer.strategy.reduce(self._squared, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._count, reduce_op="sum")
        self.log("val/rmse", (squared / count.clamp_min(1)).sqrt().float(), prog_bar=True)
        super().on_validation_epoch_end()
