"""Training on ModelNet40 point-cloud classification (the Vector Neurons protocol).

``n_points`` per shape (300 in the relaxation paper); training draws a fresh random subset of the
1024 stored points (re-centred and scaled into the unit sphere) per shape and epoch, with a
Haar-random rotation when ``training.augment_rotations`` is set (SO(3)/SO(3)) and none otherwise
(aligned training shapes, I/SO(3)); both are pure functions of seed, epoch and shape index, so
resumed and distributed runs see the same data. Validation and test use the first ``n_points`` of
each shape under a fixed random rotation per shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from zoo.symmetry import random_rotation, sample_generator
from zoo.tasks.base import Task, equivariance_errors_on
from zoo.tasks.modelnet40.card import ModelNet40Card
from zoo.tasks.modelnet40.evaluation import (
    EVALUATION_ROTATION_SEED,
    classification_metrics,
    predict_labels,
)
from zoo.train.recipe_schema import CappedSplitsData, LossSection

if TYPE_CHECKING:
    from zoo.train.recipe_schema import Recipe


class ModelNet40Data(CappedSplitsData):
    """Points per cloud and optional caps on the number of clouds per split."""

    dataset: Literal["modelnet40"] = "modelnet40"
    n_points: int = Field(300, ge=1)


class ClassificationLoss(LossSection):
    """Cross-entropy with optional label smoothing."""

    kind: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


def training_clouds(points: torch.Tensor, index: torch.Tensor, n_points: int, seed: int,
                    epoch: int, rotate: bool) -> torch.Tensor:
    """A random subset of ``n_points`` per shape, re-centred and scaled into the unit sphere
    (as the evaluation clouds), then (optionally) a Haar-random rotation."""
    from zoo.data.modelnet40 import sample_points

    out = []
    for cloud, i in zip(points, index.tolist(), strict=True):
        generator = sample_generator(seed, epoch, i)
        chosen = sample_points(cloud[None], n_points, generator)[0]
        if rotate:
            rotation = random_rotation(generator, torch.float64).to(cloud.dtype)
            chosen = chosen @ rotation.T
        out.append(chosen)
    return torch.stack(out)


def _split(split: str, root: str | None, limit: int | None, dtype: torch.dtype,
           n_points: int | None, rotation_seed: int | None = None):
    from zoo.data.modelnet40 import modelnet40_tensors

    points, labels = modelnet40_tensors(split, root=root, n_points=n_points,
                                        rotation_seed=rotation_seed)
    if limit is not None:
        points, labels = points[:limit], labels[:limit]
    return points.to(dtype), labels.long()


class ModelNet40Task(Task):
    """ModelNet40 classification, 300 points, SO(3) augmentation, rotated test shapes."""

    dataset = "modelnet40"
    data_model = ModelNet40Data
    loss_model = ClassificationLoss
    defaults = {
        "model": {"architecture": "vn-pointnet", "preset": "modelnet40", "args": {}},
        "optimizer": {"name": "adam", "lr": 1.0e-3, "weight_decay": 1.0e-4},
        "schedule": {"name": "step", "warmup_epochs": 0, "step_size": 20, "gamma": 0.7},
        "training": {"batch_size": 32, "eval_batch_size": 64, "augment_rotations": True},
    }
    primary_metric = "accuracy"
    higher_is_better = True
    validation_curve = "val/accuracy"
    comparison_columns = [("accuracy", "test accuracy", ".4f"),
                          ("balanced_accuracy", "test class-mean accuracy", ".4f")]
    card = ModelNet40Card()

    def load_splits(self, recipe: Recipe, dtype: torch.dtype):
        d = recipe.data
        train_points, train_labels = _split("train", d.root, d.max_train, dtype, None)
        train = TensorDataset(train_points, train_labels, torch.arange(len(train_labels)))
        evaluation = []
        for split, limit in (("val", d.max_val), ("test", d.max_test)):
            # The first n points of each shape, each under its own fixed rotation.
            clouds, labels = _split(split, d.root, limit, dtype, d.n_points,
                                    EVALUATION_ROTATION_SEED)
            evaluation.append(TensorDataset(clouds, labels, torch.arange(len(labels))))
        return train, evaluation[0], evaluation[1]

    def load_test(self, data: dict[str, Any], root: str | None, dtype: torch.dtype):
        clouds, labels = _split("test", root, data.get("max_test"), dtype,
                                int(data.get("n_points", 300)), EVALUATION_ROTATION_SEED)
        return TensorDataset(clouds, labels, torch.arange(len(labels)))

    def training_loss(self, model, batch, recipe: Recipe, epoch: int):
        points, labels, index = batch
        clouds = training_clouds(points, index, recipe.data.n_points, recipe.seed, epoch,
                                 recipe.training.augment_rotations)
        logits = model(clouds)["logits"]
        loss = torch.nn.functional.cross_entropy(
            logits, labels, label_smoothing=recipe.loss.label_smoothing
        )
        accuracy = (logits.detach().argmax(-1) == labels).float().mean()
        return loss, {"train/accuracy": accuracy}

    def model_inputs(self, batch):
        return batch[0]  # (clouds, labels, index)

    def validation_metrics(self, model, batch):
        clouds, labels, _ = batch
        logits = model(clouds)["logits"]
        return {
            "val/accuracy": (logits.argmax(-1) == labels).float().mean(),
            "val/loss": torch.nn.functional.cross_entropy(logits, labels),
        }

    def evaluate(self, model, data, batch_size: int) -> dict[str, Any]:
        clouds, labels, _ = data.tensors
        predicted = predict_labels(model, clouds, batch_size)
        return classification_metrics(predicted, labels, int(model.num_classes))

    def equivariance_errors(self, model, data) -> dict[str, float]:
        clouds = data.tensors[0][:2]
        return equivariance_errors_on(model, clouds)

    def config_extra(self, recipe: Recipe, results: dict[str, Any]) -> dict[str, Any]:
        from zoo.data.modelnet40 import MODELNET40_CLASSES

        test = results["test"]
        return {
            "units": {"points": "unit sphere (centred, scaled)"},
            "dataset": f"ModelNet40, {recipe.data.n_points} points, SO(3)-rotated",
            "metrics": {k: test[k] for k in ("accuracy", "balanced_accuracy")},
            "test_shapes": test["n_shapes"],
            "classes": list(MODELNET40_CLASSES),
        }
