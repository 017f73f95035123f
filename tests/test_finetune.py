"""Fine-tuning on the user's own frames: ``zoo finetune``, ``zoo.finetune``, the custom-loop
example, and what they rest on (relaxed loading, reference refit, level schedules).

The end-to-end tests fine-tune the bundled ``equiformer-md17-aspirin`` on a dozen real ethanol
frames for 3 epochs (seconds each); they skip where the shared rMD17 data is missing. The full
acceptance run of the issue (50 frames, ``zoo verify``) is marked ``slow``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase.io import write
from torch_geometric.data import Data

import zoo
from zoo import relax
from zoo.cli import main as cli_main
from zoo.data import data_root, read_frames
from zoo.data.labelled import read_labelled
from zoo.data.rmd17 import InvalidFrameError
from zoo.finetuning import TRAINING_FOLDER, UnsupportedModelError
from zoo.hub.checkpoint import sha256_file
from zoo.hub.download import model_cards_dir
from zoo.tasks.rmd17.references import UnseenElementsError
from zoo.tasks.rmd17.task import evaluate_energy_forces, rows_to_data
from zoo.testing import equivariance_error
from zoo.train.recipe import load_recipe
from zoo.train.recipe_schema import RecipeError
from zoo.train.run import ScheduleWarning, _with_relaxation, warn_short_schedule

ROOT = Path(__file__).resolve().parents[1]
BASE = "equiformer-md17-aspirin"
BASE_FOLDER = "equiformer-md17-aspirin.standard"


def _cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli_main(args)
    finally:
        os.chdir(previous)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ethanol(tmp_path_factory) -> SimpleNamespace:
    """12 ethanol training frames and 8 test frames as files, and 32 other frames."""
    folder = data_root() / "rmd17" / "ethanol"
    if not (folder / "train.xyz").is_file():
        pytest.skip(f"rMD17 ethanol not found at {folder}; set ZOO_DATA_DIR")
    work = tmp_path_factory.mktemp("ethanol")
    frames = read_frames(folder / "train.xyz")[:50]
    test = read_frames(folder / "test.xyz")[:40]
    write(work / "train12.xyz", frames[:12], format="extxyz")
    write(work / "train50.xyz", frames, format="extxyz")
    write(work / "test8.xyz", test[:8], format="extxyz")
    return SimpleNamespace(work=work, train=work / "train12.xyz", train50=work / "train50.xyz",
                           test=work / "test8.xyz", frames=frames,
                           other=rows_to_data(read_labelled(folder / "test.xyz")[8:40],
                                              torch.float32))


@pytest.fixture(scope="module")
def cli_run(ethanol) -> SimpleNamespace:
    rc, out, err = _cli(["finetune", BASE, "--train", str(ethanol.train), "--epochs", "3",
                         "--batch-size", "4", "--output", "out", "--no-progress"], ethanol.work)
    assert rc == 0, err[-3000:]
    return SimpleNamespace(folder=ethanol.work / "out", stdout=out, stderr=err)


# --------------------------------------------------------------------------- the command


@pytest.mark.data
def test_cli_exports_an_exactly_equivariant_cr_model_named_by_its_folder(cli_run, ethanol):
    folder = cli_run.folder
    assert "fine-tuned model: out" in cli_run.stdout
    model = zoo.load(folder)
    assert relax.branches(model) == []
    assert equivariance_error(model, dtype=torch.float64) <= 1e-12
    config = model.zoo_info["config"]
    assert config["name"] == "out"
    assert config["relaxation"]["method"] == "cr"
    # The level came down before projection: the last epoch trained at level 0.
    assert set(config["relaxation"]["training"]["final_levels"].values()) == {0.0}
    parent = config["training"]["parent"]
    assert parent["name"] == BASE_FOLDER
    assert parent["sha256"] == sha256_file(model_cards_dir() / BASE_FOLDER / "model.safetensors")
    assert config["metrics_split"] == "validation"
    assert config["data"]["train_file"] == str(ethanol.train.resolve())
    assert (folder / TRAINING_FOLDER / "checkpoints" / "last.ckpt").is_file()

    card = (folder / "README.md").read_text()
    assert "# out\n" in card and 'zoo.load("out")' in card
    assert parent["sha256"] in card and BASE_FOLDER in card
    assert "measured on the validation frames" in card
    assert "## Fine-tuning" in card and "zoo finetune out --train" in card

    # Reference energies refit on ethanol: energies of other ethanol frames are close.
    measured = evaluate_energy_forces(model, ethanol.other)
    assert measured["energy_mae"] < 1000.0, measured


@pytest.mark.data
def test_cli_export_passes_zoo_verify(cli_run, ethanol):
    rc, out, err = _cli(["verify", "out"], ethanol.work)
    assert rc == 0, out + err
    assert "metrics match the card" in out


@pytest.mark.data
def test_cli_refuses_to_overwrite_a_run_without_resume(cli_run, ethanol):
    rc, _, err = _cli(["finetune", BASE, "--train", str(ethanol.train), "--epochs", "3",
                       "--output", "out"], ethanol.work)
    assert rc == 2
    assert "--resume" in err and len(err.strip().splitlines()) == 1


@pytest.mark.data
def test_cli_errors_are_one_line_and_write_nothing(ethanol, tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = ethanol.frames[0].copy()
    frame.calc = SinglePointCalculator(frame, **ethanol.frames[0].calc.results)
    frame.numbers[frame.numbers == 8] = 7  # an N the aspirin model never saw
    write(tmp_path / "with_n.xyz", [frame, ethanol.frames[1]], format="extxyz")
    cases = [
        (["--train", str(tmp_path / "with_n.xyz")], "N, which"),
        (["--train", str(ethanol.train), "--energy-key", "REF_energy"], "REF_energy"),
    ]
    for extra, expected in cases:
        rc, _, err = _cli(["finetune", BASE, *extra, "--output", "new"], tmp_path)
        assert rc == 2, err
        assert expected in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "new").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    rc, _, err = _cli(["finetune", BASE, "--train", str(ethanol.train), "--output", "busy"],
                      tmp_path)
    assert rc == 2 and "not empty" in err


def test_point_cloud_and_nbody_models_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(UnsupportedModelError, match="N-body model.*zoo train"):
        zoo.finetune("egnn-nbody", tmp_path / "frames.xyz", tmp_path / "out")
    with pytest.raises(UnsupportedModelError, match="still has relaxation branches"):
        zoo.finetune(zoo.load(BASE, relaxed=True), tmp_path / "frames.xyz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the function


@pytest.mark.data
def test_finetune_function_takes_frames_and_a_model_object(ethanol, tmp_path):
    base = zoo.load(BASE)
    weights = {k: v.clone() for k, v in base.state_dict().items()}
    elements = base.elements
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)  # 3 epochs fit the scaled schedule
        model, metrics, folder = zoo.finetune(
            base, ethanol.frames[:10], tmp_path / "ft", val=ethanol.frames[10:12],
            test=ethanol.test, epochs=3, batch_size=4, progress=False,
        )
    assert folder == tmp_path / "ft"
    assert relax.branches(model) == [] and model.zoo_info["folder"] == str(folder)
    assert metrics["split"] == "test" and metrics["n_frames"] == 8
    assert metrics["energy_mae"] < 1000.0 and metrics["forces_mae"] > 0
    assert metrics["equivariance_error"]["float64"] < 1e-12
    # The frames were written beside the run; the caller's model is untouched.
    assert (folder / TRAINING_FOLDER / "train.xyz").is_file()
    assert (folder / TRAINING_FOLDER / "val.xyz").is_file()
    assert base.elements == elements
    assert all(torch.equal(weights[k], v) for k, v in base.state_dict().items())
    parent = model.zoo_info["config"]["training"]["parent"]
    assert parent["name"] == BASE_FOLDER and "modified" not in parent
    assert "test frames (held out)" in (folder / "README.md").read_text()

    # Resumed with more epochs: one more epoch (at level 0), exported again over the first.
    model, metrics, _ = zoo.finetune(
        base, ethanol.frames[:10], folder, val=ethanol.frames[10:12], test=ethanol.test,
        epochs=4, batch_size=4, progress=False, resume=True,
    )
    config = model.zoo_info["config"]
    assert config["training"]["epochs"] == 4 and len(config["training"]["segments"]) == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        TRAINING_FOLDER, "README.md", "config.json", "model.safetensors", "training_curves.png"]


# --------------------------------------------------------------------------- custom loop


def _example():
    path = ROOT / "examples" / "finetune_custom_loop.py"
    spec = importlib.util.spec_from_file_location("finetune_custom_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.data
def test_custom_loop_example_fine_tunes_and_projects(ethanol):
    metrics = _example().main(n_frames=10, epochs=3, n_test=8, threads=None)
    assert relax.branches(metrics["model"]) == []
    assert metrics["equivariance_error_float64"] <= 1e-12
    assert metrics["energy_mae"] < 1000.0


def test_relaxed_load_gives_branches_gradients_from_the_first_step():
    model = zoo.load(BASE, relaxed=True).train()
    branches = relax.branches(model)
    assert branches and all(b.level == pytest.approx(0.1) for b in branches)
    inputs = model.example_inputs(torch.Generator().manual_seed(0), torch.float32)
    out = model(inputs)
    (out["energy"].sum() + out["forces"].pow(2).sum()).backward()
    grads = [p.grad for p in relax.branch_parameters(model)]
    assert any(g is not None and g.abs().max() > 0 for g in grads)
    assert zoo.load(BASE, relaxed=True, level=0.5).relaxation_recipe["method"] == "cr"
    assert {b.level for b in relax.branches(zoo.load(BASE, relaxed=True, level=0.5))} == {0.5}


# --------------------------------------------------------------------------- pieces


def test_public_names():
    import zoo.finetuning  # noqa: F401  (the module must not shadow the function)
    from zoo.train import load_recipe as exported_load_recipe
    from zoo.train import train

    assert callable(zoo.finetune) and callable(train) and exported_load_recipe is load_recipe
    assert callable(zoo.refit_reference_energies)


def test_refit_refuses_unseen_elements_and_absorbs_the_offset():
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    model = zoo.load(BASE)
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.calc = SinglePointCalculator(water, energy=-2079.0, forces=np.zeros((3, 3)))
    fitted = zoo.refit_reference_energies(model, [water])
    assert set(fitted) == {1, 8} and model.elements == (1, 8)
    # The references absorb the offset: the refit model predicts the frame's energy.
    graph = Data(z=torch.as_tensor(water.numbers), pos=torch.as_tensor(water.positions,
                                                                         dtype=torch.float32))
    assert float(model.eval()(graph)["energy"]) == pytest.approx(-2079.0, abs=1e-6)
    ammonia = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    ammonia.calc = SinglePointCalculator(ammonia, energy=-1500.0, forces=np.zeros((4, 3)))
    with pytest.raises(UnseenElementsError, match="N, which"):
        zoo.refit_reference_energies(zoo.load(BASE), [ammonia])


def test_labels_are_read_under_the_keys_the_file_uses(tmp_path):
    from ase import Atoms

    atoms = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    atoms.info["REF_energy"] = -31.5
    atoms.new_array("REF_forces", np.full((2, 3), 0.25))
    write(tmp_path / "h2.xyz", [atoms], format="extxyz")
    (row,) = read_labelled(tmp_path / "h2.xyz", "REF_energy", "REF_forces")
    assert row["energy"] == -31.5 and np.all(row["forces"] == 0.25)
    with pytest.raises(InvalidFrameError, match=r"no energy under key 'energy'.*REF_energy"):
        read_labelled(tmp_path / "h2.xyz")


def test_cr_cooldown_ends_the_schedule_at_level_zero():
    assert [relax.CRController(cooldown_epochs=1).level_at(e, 3) for e in range(3)] == [0, 1, 0]
    plain = relax.CRController()
    assert [plain.level_at(e, 4) for e in range(4)] == [
        relax.triangle_level(e, 4) for e in range(4)]
    with pytest.raises(ValueError):
        relax.CRController(cooldown_epochs=-1)


def _rmd17_recipe(**sections) -> dict:
    return load_recipe("equiformer-md17-aspirin.cr", sections)


def test_short_runs_warn_about_their_schedules():
    with pytest.warns(ScheduleWarning, match="still 1 in the last of 2 epochs"):
        warn_short_schedule(_rmd17_recipe(training={"epochs": 2}))
    with pytest.warns(ScheduleWarning, match="warm-up"):
        warn_short_schedule(_rmd17_recipe(training={"epochs": 3}, relaxation={
            "controller": {"cooldown_epochs": 1}}))
    with pytest.warns(ScheduleWarning, match="stays at 0"):
        warn_short_schedule(_rmd17_recipe(training={"epochs": 2}, schedule={"warmup_epochs": 0},
                                          relaxation={"controller": {"cooldown_epochs": 1}}))
    assert warn_short_schedule(_rmd17_recipe(
        training={"epochs": 3}, schedule={"warmup_epochs": 0},
        relaxation={"controller": {"cooldown_epochs": 1}})) == []
    assert warn_short_schedule(_rmd17_recipe(training={"epochs": 40})) == []


def test_init_from_re_enables_relaxation_by_default():
    standard = load_recipe("equiformer-md17-aspirin.standard")
    assert standard.relaxation.method == "none"
    assert _with_relaxation(standard, BASE, None).relaxation.method == "cr"
    assert _with_relaxation(standard, BASE, "none").relaxation.method == "none"
    assert _with_relaxation(standard, None, None).relaxation.method == "none"
    ace = _with_relaxation(standard, "equiformer-md17-aspirin.cr", "ace").relaxation
    assert ace.method == "ace" and ace.controller == {}
    # The parent's own method comes with its recorded settings.
    cr = _with_relaxation(standard, "equiformer-md17-aspirin.cr", None).relaxation
    config = json.loads((model_cards_dir() / "equiformer-md17-aspirin.cr" / "config.json")
                        .read_text())
    assert cr.method == "cr"
    assert cr.controller == config["relaxation"]["training"]["controller"]


@pytest.mark.data
def test_zoo_train_init_from_re_enables_relaxation_and_records_the_parent(ethanol, tmp_path):
    # The smoke recipe made equivariant (like a .standard recipe), one epoch on 4 aspirin frames.
    smoke = str(ROOT / "training" / "recipes" / "smoke.yaml")
    rc, out, err = _cli(["train", smoke, "--init-from", BASE, "--output", "run", "--epochs", "1",
                         "--set", "relaxation.method=none", "--set", "data.n_train=4",
                         "--set", "data.max_test_frames=4", "--no-progress"], tmp_path)
    assert rc == 0, err[-3000:]
    config = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    assert config["relaxation"]["method"] == "cr"
    assert config["training"]["parent"]["name"] == BASE_FOLDER
    assert "CR level stays at 0" in err  # one epoch is too short for the triangle: warned
    # The bundled model recorded its stages' validation curves: the card plots the whole history.
    stages = len(config["training"]["parent"]["lineage"]) + 1
    card = (tmp_path / "run" / "export" / "README.md").read_text()
    assert f"whole training history, {stages} stages](training_history.png)" in card
    assert (tmp_path / "run" / "export" / "training_history.png").is_file()

    # `zoo export` rebuilds the fine-tuned model (the parent's architecture and refitted
    # reference energies, recorded in the run folder) and its parent record from the run alone.
    rc, out, err = _cli(["export", "run", "--output", "snapshot"], tmp_path)
    assert rc == 0, err[-3000:]
    snapshot = json.loads((tmp_path / "snapshot" / "config.json").read_text())
    assert snapshot["model_args"] == config["model_args"]
    assert snapshot["training"]["parent"] == config["training"]["parent"]
    assert snapshot["training"]["init_from"] == config["training"]["init_from"] == BASE
    assert (snapshot["files"]["model.safetensors"]["sha256"]
            == config["files"]["model.safetensors"]["sha256"])


def test_data_section_names_what_is_wrong():
    with pytest.raises(RecipeError, match="val_file need"):
        load_recipe("equiformer-md17-aspirin.cr", {"data": {"val_file": "v.xyz"}})
    with pytest.raises(RecipeError, match="not both"):
        load_recipe("equiformer-md17-aspirin.cr", {"data": {
            "train_file": "t.xyz", "val_file": "v.xyz", "val_fraction": 0.2}})


# --------------------------------------------------------------------------- acceptance


@pytest.mark.slow
@pytest.mark.data
def test_issue_acceptance_50_frames_3_epochs(ethanol, tmp_path):
    write(tmp_path / "ethanol50.xyz", ethanol.frames, format="extxyz")
    rc, _, err = _cli(["finetune", BASE, "--train", "ethanol50.xyz", "--epochs", "3",
                       "--output", "out"], tmp_path)
    assert rc == 0, err[-3000:]
    model = zoo.load(tmp_path / "out")
    assert equivariance_error(model, dtype=torch.float64) <= 1e-12
    assert model.zoo_info["config"]["relaxation"]["method"] == "cr"
    rc, out, _ = _cli(["verify", "out"], tmp_path)
    assert rc == 0 and "metrics match the card" in out
    assert evaluate_energy_forces(model, ethanol.other)["energy_mae"] < 1000.0


def test_fine_tuned_card_counts_every_stage_of_the_lineage():
    """A model fine-tuned from a published one records the parent's training stages; its card
    gives the CPU-hours of all stages and lists every segment of each, oldest first."""
    from zoo.train.card import cost_text, history_text, total_cpu_hours
    from zoo.train.parent import parent_record, training_lineage

    parent = parent_record(BASE)
    published = json.loads((model_cards_dir() / BASE_FOLDER / "config.json").read_text())
    # The published model's own stages (its parent's lineage, if it was itself fine-tuned),
    # then the published run itself.
    *earlier, stage = parent["lineage"]
    assert earlier == (published["training"].get("parent") or {}).get("lineage", [])
    assert stage["name"] == BASE_FOLDER
    assert stage["cpu_hours"] == published["training"]["cpu_hours"]
    assert stage["segments"] == published["training"]["segments"]

    info = {"wall_time_s": 600.0, "cpu_hours": 0.25, "parent": parent, "command": "zoo train x",
            "segments": [{"command": "zoo train x", "started": "2026-12-07T10:00"},
                         {"command": "zoo train x --resume", "started": "2026-12-07T11:00"}]}
    total = 0.25 + sum(s["cpu_hours"] for s in parent["lineage"])
    assert total_cpu_hours(info) == pytest.approx(total)
    assert f"0.25 CPU-hours in this run and {total:.2f} in total" in cost_text(info)
    history = history_text(info)
    assert f"`{BASE_FOLDER}`: {stage['epochs']} epochs" in history
    first = parent["lineage"][0]["segments"][0]["command"]
    assert history.index(first) < history.index("This run (2 segments")
    assert history.count("`zoo train x") == 2

    from zoo.tasks.card_text import epochs_text, total_epochs

    stage_epochs = [s["epochs"] for s in parent["lineage"]]
    expected = " + ".join(map(str, [*stage_epochs, 3])) + " epochs"
    assert epochs_text({**info, "epochs": 3}) == expected
    assert total_epochs({**info, "epochs": 3}) == sum(stage_epochs) + 3
    assert epochs_text({"epochs": 3}) == "3 epochs"

    # A grandchild inherits every stage.
    child_config = {"training": {**info, "epochs": 3}}
    lineage = training_lineage(child_config, "child")
    assert [s["name"] for s in lineage] == [*(s["name"] for s in parent["lineage"]), "child"]
    # No recorded cost (e.g. a converted model): no lineage, and the card says nothing more.
    assert training_lineage({"training": {"epochs": 3}}, "x") == []
    assert cost_text({"wall_time_s": 60.0, "cpu_hours": 0.1}).endswith("0.10 CPU-hours in total")


def test_parent_in_a_local_folder_is_named_by_its_config(tmp_path):
    """A run fine-tuned from an export folder (``--init-from run/export``) records the model's
    name from its config, not the folder's name, and the folder it came from."""
    import shutil

    from zoo.train.parent import parent_record

    folder = tmp_path / "export-h"
    shutil.copytree(model_cards_dir() / BASE_FOLDER, folder)
    record = parent_record(folder)
    assert record["name"] == BASE_FOLDER
    assert record["folder"] == str(folder.resolve()) and record["requested"] == str(folder)
    assert record["lineage"][-1]["name"] == BASE_FOLDER
    assert record["sha256"] == parent_record(BASE)["sha256"]


def test_whole_history_curve_spans_every_stage(tmp_path):
    """Each export records its validation curve; a later stage's parent record carries the
    earlier curves, and its export plots validation over every epoch that made the model."""
    from zoo.train.history import history_stages, plot_history, validation_curve
    from zoo.train.parent import training_lineage

    metrics = {"val/forces_mae_mev": [(0, 40.123456), (1, 30.0)], "train/loss": [(0, 1.0)]}
    curve = validation_curve(metrics)
    assert curve == {"val/forces_mae_mev": [[0, 40.123], [1, 30.0]]}  # val/ only, 5 digits
    first = {"training": {"epochs": 2, "cpu_hours": 0.1, "command": "zoo train a",
                          "validation_curve": curve}}
    lineage = training_lineage(first, "first")
    assert lineage[0]["validation_curve"] == curve
    info = {"epochs": 3, "parent": {"lineage": lineage},
            "validation_curve": {"val/forces_mae_mev": [[0, 25.0], [1, 22.0], [2, 21.0]]}}
    stages = history_stages(info)
    assert [s["name"] for s in stages] == ["first", "this run"]
    assert [s["epochs"] for s in stages] == [2, 3]
    plot_history(stages, tmp_path / "history.png", "test")
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One stage, or earlier stages without curves (exported before curves were recorded):
    # nothing beyond the run's own figure.
    assert history_stages({"epochs": 3, "validation_curve": curve}) == []
    bare = [{k: v for k, v in lineage[0].items() if k != "validation_curve"}]
    assert history_stages({**info, "parent": {"lineage": bare}}) == []
    # A grandchild keeps every earlier curve.
    assert training_lineage({"training": {**info, "cpu_hours": 0.2, "command": "zoo train b"}},
                            "second")[0]["validation_curve"] == curve
