"""Tests of ``zoo train``: the smoke recipe end to end, kill-and-resume, DDP, the card, recipes.

The smoke recipe (tiny Equiformer, 16 aspirin frames, CR) runs once per module and is shared by
the tests of its export, its card, resumption and DDP; they need the real rMD17 data and skip
with a message where it is missing. The recipe tests need no data.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo import relax
from zoo.cli import main as cli_main
from zoo.data import data_root
from zoo.hub.checkpoint import sha256_file
from zoo.relax.controllers import triangle_level
from zoo.tasks import get_task
from zoo.tasks.rmd17.task import evaluate_energy_forces as evaluate
from zoo.testing import equivariance_error
from zoo.train.export import read_metrics
from zoo.train.recipe import load_recipe, recipe_defaults, validate
from zoo.train.recipe_schema import RecipeError
from zoo.train.run import RunFolderError, train

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "training" / "recipes" / "smoke.yaml")
EPOCHS = 2  # enough for the CR triangle to go 0 -> peak, a warm-up and a cosine epoch
PER_EPOCH = ("train/loss", "train/task_loss", "train/reg_norm", "train/reg_lie", "level/0",
             "branch/0", "val/forces_mae_mev", "val/energy_mae_mev")

# Run as a script (not `python -c`): Lightning's DDP launcher starts rank 1 by running the same
# file again, and a killed run must be a real process dying, not an exception.
KILLED_SCRIPT = """
import os, signal, sys
from zoo.train.module import TrainingModule
from zoo.train.run import train

_step = TrainingModule.training_step


def _step_or_die(self, batch, batch_idx):
    # SIGKILL like an OOM kill or a pre-empted job: mid-epoch 1, after two of its optimiser steps
    # (in-memory state already past the epoch-0 checkpoint), no cleanup, no flushing.
    if self.current_epoch == 1 and batch_idx == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(self, batch, batch_idx)


TrainingModule.training_step = _step_or_die
train(sys.argv[1], sys.argv[2], epochs=int(sys.argv[3]), export=False, progress=False)
"""

DDP_SCRIPT = """
import sys
from zoo.train.run import train

if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2], epochs=int(sys.argv[3]), devices=2, export=False,
          progress=False)
"""


def _require_rmd17() -> None:
    path = data_root() / "rmd17" / "aspirin"
    if not ((path / "train.xyz").is_file() or (path / "all.xyz").is_file()):
        pytest.skip(f"rMD17 data not found at {path}; set ZOO_DATA_DIR")


def _run_script(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(source)
    # A clean launch: no DDP rank variables from the caller's environment.
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def _steps_per_epoch() -> int:
    recipe = load_recipe(SMOKE)
    return math.ceil(recipe["data"]["n_train"] / recipe["training"]["batch_size"])


def _ckpt(run: Path) -> dict:
    # A file this test session wrote itself; weights_only keeps the load pickle-free anyway.
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    _require_rmd17()
    run = tmp_path_factory.mktemp("training") / "smoke"
    assert train(SMOKE, run, epochs=EPOCHS, progress=False) == run
    return run


# --------------------------------------------------------------------------- end to end


@pytest.mark.data
def test_smoke_run_exports_a_verified_model(smoke_run):
    folder = smoke_run / "export"
    config = json.loads((folder / "config.json").read_text())
    recipe = yaml.safe_load((smoke_run / "recipe.yaml").read_text())
    assert recipe["training"]["epochs"] == EPOCHS  # the override reached the run
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()

    model = zoo.load(str(folder))
    assert relax.branches(model) == []
    assert not any("branch" in key for key in model.state_dict())
    assert equivariance_error(model) < 1e-10

    # The loaded model reproduces the test metrics the in-memory model was exported with.
    _, _, test_graphs = get_task("rmd17").load_splits(validate(recipe), torch.float32)
    measured = evaluate(model, test_graphs, recipe["training"]["eval_batch_size"])
    assert measured["n_frames"] == config["test_frames"] == recipe["data"]["max_test_frames"]
    for key in ("energy_mae", "forces_mae"):
        assert measured[key] == pytest.approx(config["metrics"][key], abs=2e-4), key

    # config.json: what was trained and how, the weights' hash, the measured equivariance.
    assert config["name"] == "equiformer-smoke"
    assert config["relaxation"]["method"] == "cr"
    assert config["relaxation"]["training"]["lambda_reg"] == recipe["relaxation"]["lambda_reg"]
    for key in ("penalty_rows", "penalty_every"):  # zoo.load(relaxed=True) re-attaches them
        assert config["relaxation"][key] == validate(recipe).relaxation[key]
    assert config["files"]["model.safetensors"]["sha256"] == sha256_file(
        folder / "model.safetensors"
    )
    assert set(config["equivariance_error"]) == {"float32", "float64"}
    assert config["equivariance_error"]["float64"] < 1e-10
    assert config["equivariance_error"]["float32"] < 1e-4
    assert config["training"]["epochs"] == EPOCHS

    # metrics.csv: every per-epoch metric for every epoch; the controller drove the levels.
    header = (smoke_run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(PER_EPOCH) <= set(header)
    metrics = read_metrics(smoke_run / "logs" / "metrics.csv")
    for key in PER_EPOCH:
        assert [epoch for epoch, _ in metrics[key]] == list(range(EPOCHS)), key
        assert all(math.isfinite(value) for _, value in metrics[key]), key
    peak = recipe["relaxation"]["controller"]["peak"]
    levels = [value for _, value in metrics["level/0"]]
    assert levels == pytest.approx([triangle_level(e, EPOCHS, peak) for e in range(EPOCHS)])
    assert metrics["train/reg_norm"][0][1] == 0.0  # level 0: the branches are off
    assert metrics["train/reg_norm"][-1][1] > 0.0  # relaxed: the regulariser is active
    assert config["relaxation"]["training"]["final_levels"]["level/0"] == pytest.approx(levels[-1])
    # Per-layer diagnostics: the branch's share of its layer's output follows the level (none at
    # level 0), and each layer's symmetry-violation term is logged where it was computed.
    sites = sorted(k for k in metrics if k.startswith("branch/"))
    assert sites and sites == sorted(k.replace("lie/", "branch/") for k in metrics
                                     if k.startswith("lie/"))
    assert metrics["branch/0"][0][1] == 0.0 and metrics["branch/0"][-1][1] > 0.0
    assert metrics["lie/0"][-1][0] == EPOCHS - 1 and metrics["lie/0"][-1][1] > 0.0


@pytest.mark.data
def test_smoke_card_renders(smoke_run):
    from huggingface_hub import ModelCard

    folder = smoke_run / "export"
    config = json.loads((folder / "config.json").read_text())
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "zoo"
    assert data.license == "mit"
    assert {"equivariant", "equiformer", "rmd17", "relaxation-cr"} <= set(data.tags)
    assert data.datasets == ["rmd17"]
    assert data.metrics == ["mae"]
    (entry,) = data.to_dict()["model-index"]
    assert entry["name"] == config["name"]
    (result,) = entry["results"]
    values = {m["name"]: m["value"] for m in result["metrics"]}
    assert values == {
        "Energy MAE (meV)": config["metrics"]["energy_mae"],
        "Force MAE (meV/Å)": config["metrics"]["forces_mae"],
    }
    assert sorted(r.metric_value for r in data.eval_results) == sorted(values.values())

    body = card.text
    assert "| Equiformer (L_max=2), MD17 | Liao & Smidt 2023 | 5.3 | 7.2 |" in body
    measured = config["metrics"]
    assert f"**{measured['energy_mae']:.2f}** | **{measured['forces_mae']:.2f}**" in body
    errors = config["equivariance_error"]
    assert f"float64 {errors['float64']:.2e}, float32 {errors['float32']:.2e}" in body
    assert "](training_curves.png)" in body
    # The smoke recipe keeps its last epoch: the card says which weights those are.
    assert f"Published weights: the last epoch, {EPOCHS - 1} (0-based" in body
    png = (folder / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


# --------------------------------------------------------------------------- resume and DDP


@pytest.mark.data
def test_kill_and_resume_matches_uninterrupted_run(smoke_run, tmp_path):
    run = tmp_path / "killed"
    proc = _run_script(tmp_path, KILLED_SCRIPT, SMOKE, str(run), str(EPOCHS))
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-4000:]
    steps = _steps_per_epoch()
    killed = _ckpt(run)
    assert (killed["epoch"], killed["global_step"]) == (0, steps)  # written at epoch 0's end
    assert killed["cpu_seconds"] > 0 and killed["wall_seconds"] > 0
    assert 1 in dict(read_metrics(run / "logs" / "metrics.csv")["loss"])  # died inside epoch 1

    train(SMOKE, run, epochs=EPOCHS, resume=True, export=False, progress=False)
    a, b = _ckpt(smoke_run), _ckpt(run)
    assert a["global_step"] == b["global_step"] == EPOCHS * steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    tensors = [(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]]
    for pa, pb in zip(a["optimizer_states"][0]["state"].values(),
                      b["optimizer_states"][0]["state"].values(), strict=True):
        tensors += [(pa[k], pb[k]) for k in pa]
    diff = max(float((x.double() - y.double()).abs().max()) for x, y in tensors)
    print(f"resume: max |uninterrupted - resumed| over weights and Adam moments = {diff:.3g}")
    assert diff <= 1e-6
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == EPOCHS
    assert a["callbacks"]["RelaxationCallback"] == b["callbacks"]["RelaxationCallback"]

    # The killed session's epochs stay in metrics.csv (Lightning would delete them on resume).
    ma = read_metrics(smoke_run / "logs" / "metrics.csv")
    mb = read_metrics(run / "logs" / "metrics.csv")
    for key in PER_EPOCH:
        assert [e for e, _ in mb[key]] == [e for e, _ in ma[key]] == list(range(EPOCHS)), key
        assert [v for _, v in mb[key]] == pytest.approx([v for _, v in ma[key]], rel=1e-6), key
    assert not (run / "logs" / "metrics.earlier.csv").exists()
    # Both segments are recorded, and the card's wall time covers the killed segment too.
    segments = json.loads((run / "segments.json").read_text())
    assert [seg["resumed"] for seg in segments] == [False, True]
    assert b["wall_seconds"] > killed["wall_seconds"] and b["cpu_seconds"] > killed["cpu_seconds"]

    # Training into the finished run again without resume is refused before anything is touched.
    before = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="resume=True"):
        train(SMOKE, run, epochs=EPOCHS, export=False, progress=False)
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before


@pytest.mark.data
def test_ddp_on_two_processes_matches_one(smoke_run, tmp_path):
    run = tmp_path / "ddp"
    proc = _run_script(tmp_path, DDP_SCRIPT, SMOKE, str(run), str(EPOCHS))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert yaml.safe_load((run / "recipe.yaml").read_text())["training"]["devices"] == 2
    # The recipe's batch is global: each of the 2 ranks takes half, the step count is unchanged.
    assert _ckpt(run)["global_step"] == EPOCHS * _steps_per_epoch()

    # Same seed, same global batches: the epoch means of 2 ranks equal the 1-device run's.
    ddp = read_metrics(run / "logs" / "metrics.csv")
    (segment,) = json.loads((run / "segments.json").read_text())  # one, not one per rank
    assert segment["hardware"].endswith("2 process(es)")
    single = read_metrics(smoke_run / "logs" / "metrics.csv")
    for key in ("train/loss", "train/task_loss", "val/forces_mae_mev", "val/energy_mae_mev"):
        assert [e for e, _ in ddp[key]] == list(range(EPOCHS)), key
        print(f"ddp {key}: {[v for _, v in ddp[key]]} vs 1 device {[v for _, v in single[key]]}")
        assert [v for _, v in ddp[key]] == pytest.approx([v for _, v in single[key]], rel=1e-5), key


# --------------------------------------------------------------------------- recipes


def test_recipe_overrides_and_defaults(tmp_path, capsys):
    recipe = load_recipe(SMOKE, {"training": {"epochs": 7}})
    assert recipe["training"]["epochs"] == 7
    assert recipe["training"]["batch_size"] == 4  # from the file
    # from the defaults
    assert recipe["optimizer"]["lr"] == recipe_defaults("rmd17")["optimizer"]["lr"]
    assert load_recipe("smoke")["name"] == "equiformer-smoke"  # by name, from training/recipes
    # train() applies its overrides before anything runs: a bad one fails at once.
    with pytest.raises(ValueError, match=r"training\.epochs: .*greater than or equal to 1"):
        train(SMOKE, tmp_path / "zero", epochs=0)
    assert not (tmp_path / "zero").exists()
    # The command line passes --epochs through, and reports bad input in one line.
    assert cli_main(["train", SMOKE, "--output", str(tmp_path / "cli"), "--epochs", "0"]) == 2
    assert "zoo train: error: invalid recipe: training.epochs:" in capsys.readouterr().err
    assert cli_main(["train", "no-such-model", "--output", str(tmp_path / "cli")]) == 2
    assert "no recipe named 'no-such-model'" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def test_recipe_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no recipe named 'no-such-model'.*'smoke'"):
        load_recipe("no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nepochs: 3\n")
    with pytest.raises(ValueError, match=r"epochs: unknown key"):
        load_recipe(bad)
    with pytest.raises(ValueError, match=r"training\.epoch: unknown key"):
        load_recipe(SMOKE, {"training": {"epoch": 3}})
    with pytest.raises(ValueError, match=r"relaxation\.method: .*'magic'"):
        load_recipe(SMOKE, {"relaxation": {"method": "magic"}})
    with pytest.raises(ValueError, match="'magic'"):
        train(SMOKE, tmp_path / "run", overrides={"relaxation": {"method": "magic"}})


def test_existing_run_folder_needs_resume(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"an earlier run")
    with pytest.raises(FileExistsError, match="resume=True"):
        train(SMOKE, run, epochs=1, progress=False)
    assert not (run / "recipe.yaml").exists()  # refused before writing anything
    assert cli_main(["train", SMOKE, "--output", str(run), "--epochs", "1"]) == 2
    assert "pass resume=True (--resume)" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(SMOKE, tmp_path / "fresh", epochs=1, resume=True, progress=False)


# --------------------------------------------------------------------------- typed recipes


def _write_recipe(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(Path(SMOKE).read_text() + text)
    return path


def test_recipe_values_are_coerced_to_their_types(tmp_path):
    from zoo.cli import _parse_overrides

    # YAML 1.1 reads 1e-3 as a string; --set values arrive as YAML scalars too.
    recipe = load_recipe(SMOKE, _parse_overrides(["optimizer.lr=1e-3", "training.epochs=3"]))
    assert recipe.optimizer.lr == 0.001 and isinstance(recipe.optimizer.lr, float)
    assert recipe.training.epochs == 3
    path = _write_recipe(tmp_path, "\noptimizer: {name: adamw, lr: 2e-3}\n")
    assert load_recipe(path).optimizer.lr == 0.002
    # The controller's own keys are typed too.
    recipe = load_recipe(SMOKE, {"relaxation": {"method": "cr", "controller": {"peak": "0.5"}}})
    assert recipe.relaxation.controller["peak"] == 0.5


@pytest.mark.parametrize(("override", "key"), [
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr"),
    ({"optimizer": {"lr": -1e-3}}, "optimizer.lr"),
    ({"training": {"batch_size": 0}}, "training.batch_size"),
    ({"training": {"epochs": 2.7}}, "training.epochs"),
    ({"training": {"epochs": "ten"}}, "training.epochs"),
    ({"loss": {"kind": "l3"}}, "loss.kind"),
    ({"relaxation": {"method": "cr", "controller": {"schedul": "triangle"}}},
     "relaxation.controller.schedul"),
])
def test_bad_recipe_values_name_their_key_before_any_run_folder(tmp_path, override, key):
    run = tmp_path / "run"
    with pytest.raises(RecipeError, match=re.escape(key)):
        train(SMOKE, run, overrides=override, progress=False)
    assert not run.exists()  # nothing was written


def test_bad_yaml_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntraining: {epochs: 3\n  batch_size: [\n")
    with pytest.raises(RecipeError, match="not valid YAML at line"):
        load_recipe(path)
    assert cli_main(["train", str(path), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "Traceback" not in err


@pytest.mark.data
def test_resume_with_another_recipe_is_refused_before_touching_the_run(smoke_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(smoke_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError, match=r"model\.preset.*differ") as error:
        train(SMOKE, run, resume=True, progress=False,
              overrides={"model": {"preset": "small"}, "optimizer": {"lr": 0.01}})
    assert "optimizer.lr" in str(error.value)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # recipe.yaml, metrics.csv and checkpoints untouched


@pytest.mark.data
def test_ctrl_c_says_how_to_resume_and_keeps_the_run(tmp_path, monkeypatch):
    from zoo.train.module import TrainingModule
    from zoo.train.run import TrainingInterrupted

    def interrupt(self, outputs, batch, batch_idx):
        if self.current_epoch == 1:  # after epoch 0's checkpoint, as a user's Ctrl-C would
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingModule, "on_train_batch_end", interrupt)
    run = tmp_path / "run"
    try:
        with pytest.raises(TrainingInterrupted, match=r"--output .*--resume"):
            train(SMOKE, run, epochs=EPOCHS, export=False, progress=False)
        # Lightning ignores SIGINT after its graceful shutdown; the default handler is back.
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert 0 in dict(read_metrics(run / "logs" / "metrics.csv")["train/loss"])


def test_recipe_branch_options_reach_the_branches_and_the_published_config(tmp_path):
    """``relaxation.form: lowrank``, ``rank``, ``penalty_rows`` and ``penalty_every`` (the
    cheaper relaxed steps of benchmarks/bench_training_step.py) go from the recipe to every
    branch, and ``zoo.load(..., relaxed=True)`` re-attaches the same branches from the config."""
    from zoo.hub.checkpoint import save_pretrained
    from zoo.train.run import model_to_train

    recipe = validate({
        "name": "segnn-lowrank", "data": {"dataset": "nbody"},
        "model": {"architecture": "segnn", "preset": "nbody"},
        "relaxation": {"method": "cr", "form": "lowrank", "rank": 3, "penalty_rows": 64,
                       "penalty_every": 4},
    })
    model = model_to_train(get_task("nbody"), recipe, None, None)
    branches = relax.branches(model)
    assert branches
    for branch in branches:
        assert (branch.form, branch.rank) == ("lowrank", 3)
        assert (branch.penalty_rows, branch.penalty_every) == (64, 4)

    r = recipe.relaxation
    relax.project(model)
    save_pretrained(model, tmp_path / "m", relaxation={
        "method": "cr", "form": r.form, "rank": r.rank, "penalty_rows": r.penalty_rows,
        "penalty_every": r.penalty_every, "training": {"lambda_reg": r.lambda_reg}})
    again = zoo.load(str(tmp_path / "m"), relaxed=True)
    assert [(b.form, b.rank, b.penalty_rows, b.penalty_every) for b in relax.branches(again)] \
        == [("lowrank", 3, 64, 4)] * len(branches)


@pytest.mark.data
def test_plateau_run_takes_a_final_annealing_stage_on_resume(tmp_path):
    # An open-ended plateau run is extended across sessions; its last stage (a cosine down to
    # lr * min_lr_ratio) is declared when resuming, and may not start before the next epoch.
    plateau = {"relaxation": {"method": "none"},
               "schedule": {"name": "plateau", "min_lr_ratio": 0.01}}
    run = tmp_path / "plateau"
    train(SMOKE, run, epochs=1, export=False, progress=False, overrides=plateau)
    lr = load_recipe(SMOKE).optimizer.lr
    assert _ckpt(run)["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(lr)

    too_early = {**plateau, "schedule": {**plateau["schedule"], "anneal_start": 0}}
    with pytest.raises(RunFolderError, match=r"anneal_start.*before the next epoch \(1\)"):
        train(SMOKE, run, epochs=3, resume=True, export=False, progress=False,
              overrides=too_early)

    anneal = {**plateau, "schedule": {**plateau["schedule"], "anneal_start": 1,
                                      "anneal_epochs": 2}}
    train(SMOKE, run, epochs=3, resume=True, export=True, progress=False, overrides=anneal)
    group = _ckpt(run)["optimizer_states"][0]["param_groups"][0]
    final = lr * 0.01
    assert group["anneal_initial_lr"] == pytest.approx(lr)  # where the plateau had got to
    # The checkpoint holds the rate epoch 2 trained at: half-way down the two-epoch cosine.
    assert group["lr"] == pytest.approx(final + (lr - final) * 0.5)
    assert "then from epoch 1 a cosine decay to" in (run / "export" / "README.md").read_text()

    # Once started, the stage cannot be moved.
    moved = {**plateau, "schedule": {**plateau["schedule"], "anneal_start": 3}}
    with pytest.raises(RunFolderError, match="started at epoch 1"):
        train(SMOKE, run, epochs=4, resume=True, export=False, progress=False, overrides=moved)


def test_anneal_is_refused_outside_the_plateau_schedule():
    with pytest.raises(RecipeError, match="anneal_start applies to the plateau schedule"):
        load_recipe(SMOKE, {"schedule": {"name": "cosine", "anneal_start": 3}})


# --------------------------------------------------------------------------- zoo export


def _file_states(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("*")
            if p.is_file() and "export" not in p.parts
            and not p.relative_to(run).parts[0].startswith("snapshot-")}


@pytest.mark.data
def test_export_of_a_finished_run_is_its_own_export(smoke_run, tmp_path):
    from zoo.train.snapshot import export_checkpoint

    before = _file_states(smoke_run)
    folder = export_checkpoint(smoke_run, tmp_path / "snapshot")
    assert _file_states(smoke_run) == before  # the run folder is only read
    exported = json.loads((smoke_run / "export" / "config.json").read_text())
    snapshot = json.loads((folder / "config.json").read_text())
    # The same weights, projected the same way, measured the same.
    assert (snapshot["files"]["model.safetensors"]["sha256"]
            == exported["files"]["model.safetensors"]["sha256"])
    assert snapshot["metrics"] == exported["metrics"]
    assert snapshot["metrics_before_projection"] == exported["metrics_before_projection"]
    assert snapshot["validation"] == exported["validation"]
    assert snapshot["relaxation"] == exported["relaxation"]
    training = snapshot["training"]
    assert training["epochs"] == EPOCHS
    assert training["cpu_hours"] == exported["training"]["cpu_hours"]
    assert training["segments"] == exported["training"]["segments"]
    assert training["snapshot"]["epochs"] == EPOCHS
    card = (folder / "README.md").read_text()
    assert f"- Exported from the finished run's checkpoint (all {EPOCHS} epochs" in card
    assert "Snapshot" not in card
    assert zoo.load(str(folder)).zoo_info["config"]["name"] == "equiformer-smoke"


@pytest.mark.data
def test_export_of_a_run_in_progress_takes_its_finished_epochs(smoke_run, tmp_path, capsys):
    # A run being trained by another process: the earlier segments' rows kept aside, the current
    # segment's rows in metrics.csv, and a row of the epoch still in progress (not yet in the
    # checkpoint). The recipe keeps its best epoch: here epoch 0.
    run = tmp_path / "live"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("export"))
    logs = run / "logs"
    rows = (logs / "metrics.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    epoch_column = header.split(",").index("epoch")
    first = [r for r in body if r.split(",")[epoch_column] in ("0", "0.0")]
    later = [r for r in body if r not in first]
    (logs / "metrics.earlier.csv").write_text("\n".join([header, *first]) + "\n")
    in_progress = later[-1].split(",")
    in_progress[epoch_column] = str(EPOCHS)
    (logs / "metrics.csv").write_text("\n".join([header, *later, ",".join(in_progress)]) + "\n")
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["training"]["keep"] = "best"
    recipe["training"]["epochs"] = EPOCHS + 1  # the run goes on: its last epoch is in progress
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    best = _ckpt(run)
    best["epoch"] = 0
    # Other weights than last.ckpt's (as a best epoch has): the export must be of these.
    key = next(k for k, v in best["state_dict"].items() if v.is_floating_point() and v.dim() > 1)
    best["state_dict"][key] = best["state_dict"][key] * 0.5
    torch.save(best, run / "checkpoints" / "best.ckpt")
    # A row being written by the training process (no line end yet) is left out.
    with open(logs / "metrics.csv", "a") as f:
        f.write(",".join(in_progress)[:-3])
    before = _file_states(run)

    assert cli_main(["export", str(run), "--threads", "1"]) == 0
    folder = run / f"snapshot-epoch{EPOCHS}"  # <run>/export stays the run's own final export
    assert f"model folder: {folder}" in capsys.readouterr().out
    assert _file_states(run) == before and not (run / "export").exists()
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["epochs"] == EPOCHS  # the epoch in progress is left out
    assert config["training"]["selected_epoch"] == 0
    val = read_metrics(smoke_run / "logs" / "metrics.csv")["val/forces_mae_mev"]
    assert config["validation"]["val/forces_mae_mev"] == pytest.approx(val[0][1])
    exported = json.loads((smoke_run / "export" / "config.json").read_text())
    assert (config["files"]["model.safetensors"]["sha256"]
            != exported["files"]["model.safetensors"]["sha256"])
    weights = zoo.load(str(folder)).state_dict()
    halved = key.removeprefix("model.")
    assert halved in weights  # a plain weight of the model: compare it with best.ckpt's
    assert torch.equal(weights[halved], best["state_dict"][key].to(weights[halved].dtype))
    card = (folder / "README.md").read_text()
    assert "Published weights: epoch 0 (0-based" in card
    assert f"exported after {EPOCHS} epochs of the {EPOCHS + 1} its recipe plans" in card


def test_export_without_a_readable_checkpoint_says_what_to_do(tmp_path, monkeypatch, capsys):
    from zoo.train import snapshot

    run = tmp_path / "run"
    run.mkdir()
    assert cli_main(["export", str(run)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    (run / "recipe.yaml").write_text(Path(SMOKE).read_text())
    monkeypatch.setattr(snapshot, "READ_PAUSE_S", 0.0)
    with pytest.raises(snapshot.SnapshotError, match=r"could not be read .* in 5 tries"):
        snapshot.export_checkpoint(run)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "recipe.yaml"]


@pytest.mark.data
def test_export_refuses_what_it_cannot_rebuild(smoke_run, tmp_path, monkeypatch):
    from zoo.train import snapshot

    monkeypatch.setattr(snapshot, "READ_PAUSE_S", 0.0)
    run = tmp_path / "old"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("export"))
    # best.ckpt newer than last.ckpt (an older last.ckpt put back): no consistent pair.
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["training"]["keep"] = "best"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    best = _ckpt(run)
    best["epoch"] = EPOCHS + 3
    torch.save(best, run / "checkpoints" / "best.ckpt")
    with pytest.raises(snapshot.SnapshotError, match="stays newer than last.ckpt"):
        snapshot.export_checkpoint(run)
    # A run without model.json (started before runs recorded their model) that was not a plain
    # `zoo train` (here: a Python call, which may have fine-tuned): refused, with what to do.
    (run / "checkpoints" / "best.ckpt").unlink()
    recipe["training"]["keep"] = "last"
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (run / "model.json").unlink()
    with pytest.raises(snapshot.SnapshotError, match="holds no model.json.*--resume --epochs"):
        snapshot.export_checkpoint(run)
    assert not list(run.glob("snapshot-*"))
