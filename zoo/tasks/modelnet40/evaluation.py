"""How ModelNet40 models are evaluated: fixed rotations of the evaluation clouds, predicted
classes, overall and class-mean accuracy, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch

# Seed of the fixed per-shape rotations of the validation and test clouds.
EVALUATION_ROTATION_SEED = 20210412


@torch.no_grad()
def predict_labels(model, clouds: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Predicted class of every cloud (``[S, n, 3]``)."""
    dtype = next(model.parameters()).dtype
    return torch.cat([
        model(clouds[i:i + batch_size].to(dtype))["logits"].argmax(-1)
        for i in range(0, clouds.shape[0], batch_size)
    ])


def classification_metrics(predicted: torch.Tensor, labels: torch.Tensor,
                           n_classes: int) -> dict[str, Any]:
    """Overall and class-mean accuracy (rounded for the card)."""
    correct = predicted == labels
    per_class = [correct[labels == c].float().mean() for c in range(n_classes)
                 if bool((labels == c).any())]
    return {
        "accuracy": round(float(correct.float().mean()), 6),
        "balanced_accuracy": round(float(torch.stack(per_class).mean()), 6),
        "n_shapes": int(labels.numel()),
    }


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, n_classes: int):
    """``[true, predicted]`` counts."""
    matrix = torch.zeros(n_classes, n_classes, dtype=torch.long)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return matrix
