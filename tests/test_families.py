"""Training families beyond rMD17: N-body and ModelNet40 recipes train, export, publish, verify.

Tiny presets and a few dozen samples: these check the plumbing (data -> Lightning -> relaxation
controller -> best-epoch selection -> projection -> card -> multi-seed comparison -> verify), not
accuracy.
"""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo.hub.checkpoint import file_hashes
from zoo.hub.pretrained import read_index
from zoo.tasks import get_task, list_datasets
from zoo.train.compare import publish_family
from zoo.train.export import read_metrics
from zoo.train.recipe import load_recipe, recipe_defaults, validate
from zoo.train.run import train
from zoo.verify import verify


def nbody_recipe(method: str, controller: dict | None = None) -> dict:
    return {
        **recipe_defaults("nbody"),
        "name": f"egnn-nbody-test.{method}",
        "data": {"dataset": "nbody", "n_train": 48, "n_val": 24, "n_test": 24, "root": None},
        "model": {"architecture": "egnn", "preset": "tiny", "args": {}},
        "relaxation": {"method": "none" if method == "standard" else method, "form": "linear",
                       "hidden_factor": 4, "lambda_reg": 0.01, "controller": controller or {}},
        "training": {**recipe_defaults("nbody")["training"], "epochs": 2, "batch_size": 16,
                     "eval_batch_size": 24, "keep": "best"},
    }


@pytest.fixture(scope="module")
def nbody_runs(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("nbody-runs")
    runs = []
    for method, seed in (("standard", 0), ("standard", 1), ("ace", 0), ("recm", 0)):
        runs.append(train(nbody_recipe(method), root / f"{method}-{seed}", progress=False,
                          overrides={"seed": seed}))
    return runs


def test_recipe_defaults_come_from_the_family():
    assert list_datasets() == ["modelnet40", "nbody", "rmd17", "smoke-rotation"]
    nbody = recipe_defaults("nbody")
    assert nbody["loss"] == {"kind": "mse"} and nbody["training"]["batch_size"] == 100
    assert "molecule" not in nbody["data"]
    assert recipe_defaults("rmd17")["data"]["molecule"] == "aspirin"
    assert load_recipe("egnn-nbody.ace")["relaxation"]["controller"]["eta_p"] == 9.0e-4
    with pytest.raises(ValueError, match="data.dataset 'qm9' is not supported"):
        get_task("qm9")
    with pytest.raises(ValueError, match=r"data\.molecule: unknown key"):
        load_recipe("egnn-nbody.cr", {"data": {"molecule": "aspirin"}})
    with pytest.raises(ValueError, match=r"training\.keep: Input should be 'last' or 'best'"):
        load_recipe("egnn-nbody.cr", {"training": {"keep": "first"}})


def test_nbody_run_exports_the_best_epoch(nbody_runs):
    config = json.loads((nbody_runs[2] / "export" / "config.json").read_text())
    assert config["dataset"] == "charged N-body (5 particles)"
    assert config["relaxation"]["method"] == "ace"
    assert set(config["relaxation"]["training"]["final_levels"]) == {
        f"level/{i}" for i in range(len(zoo.create_model("egnn", "tiny").relaxation_sites()))
    }
    assert config["training"]["selected_epoch"] in (0, 1)
    # The validation recorded is that of the exported (selected) epoch: seeds are chosen on it.
    logged = dict(read_metrics(nbody_runs[2] / "logs" / "metrics.csv")["val/mse"])
    assert config["validation"]["val/mse"] == logged[config["training"]["selected_epoch"]]
    assert logged[config["training"]["selected_epoch"]] == min(logged.values())
    assert config["metrics_before_projection"]["mse"] > 0
    assert config["equivariance_error"]["float64"] < 1e-12
    model = zoo.load(str(nbody_runs[2] / "export"))
    assert not zoo.relax.branches(model)
    result = verify(model)
    assert result["metrics_match"], result


def test_nbody_family_comparison_has_mean_and_std(nbody_runs, tmp_path):
    summary = publish_family("egnn-nbody-test", nbody_runs, tmp_path, command="the command")
    assert set(summary["variants"]) == {"egnn-nbody-test.standard", "egnn-nbody-test.ace",
                                        "egnn-nbody-test.recm"}
    standard = summary["variants"]["egnn-nbody-test.standard"]
    assert standard["seeds"] == [0, 1]
    mean, std = standard["mean_std"]["mse"]
    seeds_mse = [json.loads((r / "export" / "config.json").read_text())["metrics"]["mse"]
                 for r in nbody_runs[:2]]
    assert mean == pytest.approx(sum(seeds_mse) / 2)
    assert std == pytest.approx(abs(seeds_mse[0] - seeds_mse[1]) / 2 ** 0.5)
    # The published variant is the seed with the better validation MSE.
    validations = [json.loads((r / "export" / "config.json").read_text())["validation"]["val/mse"]
                   for r in nbody_runs[:2]]
    assert standard["published_seed"] == int(validations[1] < validations[0])
    best = summary["best"]
    card = (tmp_path / best / "README.md").read_text()
    assert "± " in card and "Reproduce: `the command`" in card
    assert (tmp_path / best / "comparison.png").exists()
    assert card.count(f"`{best}` (published as the plain name)") == 1
    # The plain name is an alias of the best variant in the index, not a copy of its folder.
    assert "Also published as `egnn-nbody-test`" in card
    assert not (tmp_path / "egnn-nbody-test").exists()
    entries = {e.name: e for e in read_index(tmp_path / "index.json")}
    assert set(entries) == set(summary["variants"])
    assert entries[best].aliases == ("egnn-nbody-test",)
    assert dict(entries[best].sha256) == file_hashes(tmp_path / best)


def test_nbody_models_are_equivariant_on_real_trajectories(nbody_runs):
    task = get_task("nbody")
    model = zoo.load(str(nbody_runs[0] / "export"))
    _, _, test = task.load_splits(validate(nbody_recipe("standard")), torch.float64)
    errors = task.equivariance_errors(model, test)
    assert errors["float64"] < 1e-12 and errors["float32"] < 1e-4


# --------------------------------------------------------------------------- ModelNet40


def modelnet_recipe(method: str) -> dict:
    defaults = recipe_defaults("modelnet40")
    return {
        **defaults,
        "name": f"vn-pointnet-test.{method}",
        "data": {**defaults["data"], "n_points": 32, "max_train": 48, "max_val": 16,
                 "max_test": 24},
        "model": {"architecture": "vn-pointnet", "preset": "tiny", "args": {}},
        "relaxation": {"method": "none" if method == "standard" else method, "form": "linear",
                       "hidden_factor": 4, "lambda_reg": 0.01, "controller": {}},
        # The tiny preset's running statistics stay frozen (mean 0, variance 1), so its eval
        # predictions do not depend on the batching; one evaluation batch is simply fastest.
        # The CR run trains on aligned clouds (I/SO(3)), the standard one on rotated clouds.
        "training": {**defaults["training"], "epochs": 2, "batch_size": 16,
                     "eval_batch_size": 32, "augment_rotations": method == "standard"},
    }


@pytest.fixture(scope="module")
def modelnet_runs(tmp_path_factory) -> list:
    from zoo.data.paths import data_root

    if not (data_root() / "modelnet40" / "train.npz").exists():
        pytest.skip(f"ModelNet40 not found under {data_root()} (set ZOO_DATA_DIR)")
    root = tmp_path_factory.mktemp("modelnet-runs")
    return [train(modelnet_recipe(m), root / m, progress=False) for m in ("standard", "cr")]


def test_modelnet40_runs_export_verify_and_compare(modelnet_runs, tmp_path):
    config = json.loads((modelnet_runs[1] / "export" / "config.json").read_text())
    assert config["dataset"].startswith("ModelNet40")
    assert len(config["classes"]) == 40 and config["classes"][0] == "airplane"
    assert 0.0 <= config["metrics"]["accuracy"] <= 1.0
    assert "accuracy" in config["metrics_before_projection"]
    assert config["equivariance_error"]["float64"] < 1e-9
    assert (modelnet_runs[1] / "export" / "confusion_matrix.png").exists()
    card = (modelnet_runs[1] / "export" / "README.md").read_text()
    assert "confusion_matrix.png" in card and "Before projection" in card
    assert "**this model**, I/SO(3)" in card and "un-rotated (aligned, z up" in card
    standard_card = (modelnet_runs[0] / "export" / "README.md").read_text()
    assert "**this model**, SO(3)/SO(3)" in standard_card
    assert "changes nothing but rounding" in standard_card
    # How to classify one's own cloud, with the number of points the model was trained on.
    name = modelnet_recipe("cr")["name"]
    points = modelnet_recipe("cr")["data"]["n_points"]
    assert f"zoo predict {name} cloud.ply --top 3" in card
    assert f"a random subset of {points} points" in card
    model = zoo.load(str(modelnet_runs[1] / "export"))
    result = verify(model)
    assert result["metrics_match"], result
    summary = publish_family("vn-pointnet-test", modelnet_runs, tmp_path)
    assert summary["selected_on"] == "validation"
    assert "before projection" in summary["table"]


def test_training_clouds_are_deterministic_rotated_subsets():
    from zoo.tasks.modelnet40.task import training_clouds

    points = torch.randn(3, 50, 3) + 0.5
    a = training_clouds(points, torch.arange(3), 20, seed=0, epoch=1, rotate=True)
    b = training_clouds(points, torch.arange(3), 20, seed=0, epoch=1, rotate=True)
    c = training_clouds(points, torch.arange(3), 20, seed=0, epoch=2, rotate=True)
    assert a.shape == (3, 20, 3) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.mean(1).abs().max()) < 1e-6  # re-centred, like the evaluation clouds
    assert float(a.norm(dim=-1).amax(1).sub(1).abs().max()) < 1e-5
