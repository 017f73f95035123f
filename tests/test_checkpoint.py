"""Checkpoint folders: save/load round trip, dtype handling, and every way a folder can be bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from toy_arch import ARCHITECTURE, example_outputs, make_model

import zoo
from zoo.hub.checkpoint import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    file_hashes,
    read_checkpoint,
    write_config,
)
from zoo.hub.errors import (
    CheckpointError,
    CorruptFileError,
    IncompatibleVersionError,
    InvalidNameError,
    UnknownModelError,
    ZooError,
)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    model = make_model(seed=5)
    return model, zoo.save_pretrained(model, tmp_path / "toy")


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_exact_and_keeps_the_dtype(tmp_path, dtype):
    model = make_model(seed=2, dtype=dtype)
    folder = zoo.save_pretrained(model, tmp_path / "toy")
    loaded = zoo.load(folder)
    assert not loaded.training
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    reference, state = model.state_dict(), loaded.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    assert torch.equal(example_outputs(loaded), example_outputs(model))
    assert loaded.zoo_info["folder"] == str(folder)
    assert loaded.zoo_info["name"] == "toy" and loaded.zoo_info["revision"] is None
    assert loaded.zoo_info["config"]["dtype"] == str(dtype).removeprefix("torch.")


def test_folder_contents(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    text = (folder / CONFIG_NAME).read_text()
    config = json.loads(text)
    assert text == json.dumps(config, sort_keys=True, indent=2) + "\n"
    assert config["architecture"] == ARCHITECTURE
    assert config["model_args"] == model.model_args
    assert config["relaxation"] == {"method": "none"}
    assert config["cutoff"] == model.model_args["cutoff"]
    assert config["min_zoo_version"] == zoo.__version__
    assert set(config["versions"]) == {"zoo", "torch", "e3nn", "safetensors"}
    weights = folder / WEIGHTS_NAME
    record = config["files"][WEIGHTS_NAME]
    assert record == {"sha256": file_hashes(folder)[WEIGHTS_NAME], "size": weights.stat().st_size}
    with safe_open(weights, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
    assert "zoo.load" in (folder / CARD_NAME).read_text()


def test_save_options(tmp_path):
    model = make_model()
    recipe = {"method": "cr", "form": "mlp", "training": {"epochs": 10}}
    folder = zoo.save_pretrained(
        model, tmp_path / "m", card="# My card\n", relaxation=recipe, extra={"units": {"E": "eV"}}
    )
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["relaxation"] == recipe and config["units"] == {"E": "eV"}
    assert (folder / CARD_NAME).read_text() == "# My card\n"
    with pytest.raises(ValueError, match="files"):
        zoo.save_pretrained(model, tmp_path / "x", extra={"files": {}})
    with pytest.raises(ValueError, match="method"):
        zoo.save_pretrained(model, tmp_path / "x", relaxation={"form": "mlp"})


def test_save_replaces_atomically(saved):
    _, folder = saved
    other = make_model(seed=9)
    zoo.save_pretrained(other, folder)
    assert sorted(p.name for p in folder.iterdir()) == [CARD_NAME, CONFIG_NAME, WEIGHTS_NAME]
    assert torch.equal(example_outputs(zoo.load(folder)), example_outputs(other))


def test_save_refuses_a_non_zoo_model(tmp_path):
    with pytest.raises(CheckpointError, match="not a registered zoo architecture"):
        zoo.save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_dtype_override_leaves_the_default_dtype_alone(saved):
    model, folder = saved
    default = torch.get_default_dtype()
    loaded = zoo.load(folder, dtype=torch.float64)
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    assert torch.get_default_dtype() == default
    assert torch.allclose(example_outputs(loaded).float(), example_outputs(model), atol=1e-6)
    assert {p.dtype for p in zoo.load(folder, dtype="float32").parameters()} == {torch.float32}


def test_load_accepts_path_objects_and_device(saved):
    model, folder = saved
    loaded = zoo.load(Path(folder), device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"
    assert torch.equal(example_outputs(loaded), example_outputs(model))


def test_relaxed_load_attaches_branches_and_keeps_the_function(saved, tmp_path):
    relax = pytest.importorskip("zoo.relax")
    model, folder = saved
    loaded = zoo.load(folder, relaxed=True)
    assert len(relax.branches(loaded)) > 0
    assert torch.equal(example_outputs(loaded), example_outputs(model))
    assert loaded.relaxation_recipe["method"] == "cr"  # a model trained unrelaxed gets CR
    with pytest.raises(CheckpointError, match="project"):
        zoo.save_pretrained(loaded, tmp_path / "relaxed")


def test_relaxed_load_follows_the_recipe(tmp_path):
    relax = pytest.importorskip("zoo.relax")
    recipe = {"method": "ace", "form": "mlp", "training": {"epochs": 3}}
    folder = zoo.save_pretrained(make_model(), tmp_path / "m", relaxation=recipe)
    loaded = zoo.load(folder, relaxed=True)
    assert len(relax.branches(loaded)) > 0
    assert loaded.relaxation_recipe["method"] == "ace"
    assert loaded.relaxation_recipe["form"] == "mlp"
    assert "training" not in loaded.relaxation_recipe


# --- bad folders ------------------------------------------------------------------------------
def test_flipped_byte_in_a_local_folder_is_reported(saved):
    _, folder = saved
    expected = file_hashes(folder)[WEIGHTS_NAME]
    _flip_byte(folder / WEIGHTS_NAME)
    with pytest.raises(CorruptFileError) as info:
        zoo.load(folder)
    err = info.value
    assert err.path == folder / WEIGHTS_NAME
    assert err.expected == expected and err.actual == file_hashes(folder)[WEIGHTS_NAME]
    assert WEIGHTS_NAME in str(err) and expected in str(err) and err.actual in str(err)
    assert not err.removed and (folder / WEIGHTS_NAME).exists()  # user files are never deleted


def test_truncated_file_is_reported(saved):
    _, folder = saved
    weights = folder / WEIGHTS_NAME
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CorruptFileError, match="truncated") as info:
        zoo.load(folder)
    assert info.value.expected_size == size and info.value.actual_size == size // 2


def test_missing_and_malformed_files(saved):
    _, folder = saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["files"]["../../outside.safetensors"] = {"sha256": "0" * 64, "size": 1}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="invalid weights file name"):
        zoo.load(folder)
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        zoo.load(folder)
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        zoo.load(folder)


def test_weights_that_do_not_fit_the_architecture(saved):
    _, folder = saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["model_args"]["hidden"] += 1
    write_config(folder, config)  # a consistent digest: the weights, not the edit, are refused
    with pytest.raises(CheckpointError, match="do not fit"):
        zoo.load(folder)


def test_newer_checkpoint_says_which_version_it_needs(tmp_path):
    folder = zoo.save_pretrained(make_model(), tmp_path / "m", extra={"min_zoo_version": "99.1"})
    with pytest.raises(IncompatibleVersionError, match=r"zoo >= 99\.1"):
        zoo.load(folder)


# --- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "../toy",
        "a/b",
        "a\\b",
        "~toy",
        "~/no-such-model",
        ".toy",
        "toy model",
        "toy;rm",
        "/no/toy",
        "",
    ],
)
def test_path_like_names_are_refused_unless_an_existing_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidNameError):
        zoo.load(name)


def test_path_like_name_of_an_existing_folder_loads(saved, monkeypatch):
    model, folder = saved
    monkeypatch.chdir(folder.parent)
    loaded = zoo.load(f".{os.sep}{folder.name}")
    assert torch.equal(example_outputs(loaded), example_outputs(model))


def test_unknown_name_suggests_close_names():
    from zoo.hub.pretrained import PretrainedEntry, registered

    entry = PretrainedEntry(
        name="toy-model-aspirin",
        architecture=ARCHITECTURE,
        repo_id="zoo/toy",
        revision="a" * 40,
        sha256={"config.json": "0" * 64, "model.safetensors": "1" * 64},
        dataset="none",
        licence="MIT",
    )
    with registered(entry):
        with pytest.raises(UnknownModelError, match="toy-model-aspirin") as info:
            zoo.load("toy-model-asprin")
    assert info.value.suggestions[0] == "toy-model-aspirin"  # the closest name comes first
    assert isinstance(info.value, ZooError) and isinstance(info.value, LookupError)


def test_read_checkpoint_returns_verified_tensors(saved):
    model, folder = saved
    config, tensors = read_checkpoint(folder)
    assert config["architecture"] == ARCHITECTURE
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())


def test_revision_is_refused_for_a_local_folder(saved):
    _, folder = saved
    with pytest.raises(ValueError, match="registered models"):
        zoo.load(folder, revision="main")
