"""The smoke-rotation task end to end, on a tiny synthetic cache (8 x 8 frames that
move smoothly in time): data -> Lightning -> CR with conv branches -> projection -> export.
It checks the plumbing, not accuracy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from zoo import create_model
from zoo.data import smoke
from zoo.tasks import get_task
from zoo.tasks.smoke.task import rollout_rmse, rotate_samples
from zoo.train.recipe import load_recipe
from zoo.train.run import train


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """36 synthetic 'simulations' of 309 frames of 8 x 8 travelling waves."""
    folder = tmp_path_factory.mktemp("smoke-fake")
    t = np.arange(smoke.N_FRAMES, dtype=np.float64)[:, None, None, None]
    c = np.arange(2)[None, :, None, None]
    y = np.arange(8)[None, None, :, None]
    x = np.arange(8)[None, None, None, :]
    sims = {k: np.sin(0.3 * x + 0.2 * y + 0.05 * k * t + c).astype(np.float32)
            for k in range(1, 37)}
    smoke.write_cache(smoke.smoke_cache_dir(folder), sims, {"note": "synthetic"})
    return str(folder)


def test_rsteer_cr_recipe_trains_and_exports(root: str, tmp_path) -> None:
    """The rsteer-cr recipe with the tiny preset: levels follow the triangle, the export is the
    projected model with Future/Domain RMSEs and a measured (non-zero) C4 error."""
    recipe = load_recipe("rsteer-smoke-rotation.rsteer-cr", {
        "data": {"root": root, "max_train": 16, "max_val": 8, "max_test": 8},
        "model": {"preset": "tiny"},
        "training": {"epochs": 2, "batch_size": 8, "eval_batch_size": 8},
    })
    run = train(recipe, tmp_path / "run", progress=False)
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["architecture"] == "smoke-rsteer"
    assert config["relaxation"]["method"] == "cr" and config["relaxation"]["form"] == "conv"
    metrics = config["metrics"]
    assert set(metrics) == {"rmse_future", "rmse_domain"}
    assert all(math.isfinite(v) and v > 0 for v in metrics.values())
    assert config["test_samples"] == {"future": 8, "domain": 8}
    assert config["equivariance_error"]["float64"] > 1e-3  # RSteer: approximate by design
    assert config["metrics_before_projection"]["rmse_future"] > 0
    assert config["training"]["selected_epoch"] in (0, 1)
    card = (run / "export" / "README.md").read_text()
    assert "**not** exactly equivariant" in card and "RSteer + CR" in card
    assert (run / "export" / "rollout.png").is_file()
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    for column in ("val/rmse", "train/mse", "train/weight_constraint", "train/reg_lie"):
        assert column in header


def test_family_metrics_and_equivariance_on_the_cache(root: str) -> None:
    """Splits from the cache, RMSE from rollouts, and the exact model's C4 error on real
    inputs at rounding level."""
    task = get_task("smoke-rotation")
    recipe = load_recipe("rsteer-smoke-rotation.equiv", {
        "data": {"root": root, "max_train": 4, "max_val": 4, "max_test": 6},
        # Running statistics: evaluation must not depend on how samples are batched.
        "model": {"preset": "tiny", "args": {"running_stats": True}}})
    train_data, val, test = task.load_splits(recipe, torch.float64)
    assert (len(train_data), len(val), len(test["future"]), len(test["domain"])) == (4, 4, 6, 6)
    model = task.initial_model(recipe, train_data, None).double().eval()
    result = task.evaluate(model, test, batch_size=4)
    inputs, targets, _ = test["domain"][0]
    squared = sum((model.rollout(test["domain"][i][0][None], 20) - test["domain"][i][1][None])
                  .pow(2).sum().item() for i in range(6))
    assert result["rmse_domain"] == pytest.approx(math.sqrt(squared / (6 * targets.numel())),
                                                  rel=1e-5)
    assert rollout_rmse(model, test["future"], 5) == pytest.approx(result["rmse_future"],
                                                                   rel=1e-5)
    errors = task.equivariance_errors(model, test)
    assert errors["float64"] < 1e-12 and errors["float32"] < 1e-4


def test_rotation_augmentation_turns_inputs_and_targets_alike() -> None:
    """Augmented samples are the C4 images of the originals (seeded per sample and epoch)."""
    model = create_model("smoke-equiv", "tiny")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 20, 8, 8, generator=generator)
    y = torch.randn(6, 3, 2, 8, 8, generator=generator)
    index = torch.arange(6)
    rx, ry = rotate_samples(model, x, y, index, seed=0, epoch=1)
    again = rotate_samples(model, x, y, index, seed=0, epoch=1)
    assert torch.equal(rx, again[0]) and torch.equal(ry, again[1])
    for i in range(6):
        matches = [k for k in range(4) if torch.equal(model.input_rep.rotate(x[i], k), rx[i])]
        assert len(matches) == 1
        assert torch.equal(model.output_rep.rotate(y[i], matches[0]), ry[i])
