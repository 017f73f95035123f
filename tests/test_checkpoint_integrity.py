"""Checkpoint folders that were edited, broken or misnamed: each is refused with one clear
``ZooError`` line, and nothing a folder holds changes predictions silently."""

from __future__ import annotations

import json
import re
import shutil
import struct
import warnings
from pathlib import Path

import pytest
import torch
from toy_arch import ARCHITECTURE, example_outputs, make_model

import zoo
from zoo.cli import main as cli_main
from zoo.errors import ZooError
from zoo.hub import download as hub_download
from zoo.hub.checkpoint import (
    CONFIG_NAME,
    DIGEST_KEY,
    WEIGHTS_NAME,
    file_hashes,
    sha256_file,
    write_config,
)
from zoo.hub.errors import CheckpointError, InvalidNameError, OfflineError
from zoo.hub.pretrained import PretrainedEntry, registered


@pytest.fixture
def folder(tmp_path) -> Path:
    return zoo.save_pretrained(make_model(seed=1), tmp_path / "toy")


def _config(folder: Path) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())


# --- 10. config.json is covered by a digest ---------------------------------------------------
def test_an_edited_config_is_refused(folder):
    config = _config(folder)
    assert DIGEST_KEY in config
    config["model_args"]["cutoff"] = 4.0  # an edit that would change every prediction
    (folder / CONFIG_NAME).write_text(json.dumps(config, sort_keys=True, indent=2) + "\n")
    with pytest.raises(CheckpointError, match="edited after it was saved"):
        zoo.load(folder)


def test_energy_shift_edit_of_an_equiformer_is_refused(tmp_path):
    model = zoo.create_model("equiformer", "tiny", atomic_energies={1: -13.6, 8: -2041.0})
    saved = zoo.save_pretrained(model, tmp_path / "eq")
    config = _config(saved)
    config["model_args"]["energy_shift"] = 0.5
    (saved / CONFIG_NAME).write_text(json.dumps(config, indent=4))
    with pytest.raises(CheckpointError, match=DIGEST_KEY):
        zoo.load(saved)


def test_reformatting_the_config_is_not_an_edit(folder):
    config = _config(folder)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=1))  # other whitespace, order
    assert torch.equal(example_outputs(zoo.load(folder)), example_outputs(make_model(seed=1)))


def test_write_config_records_a_fresh_digest(folder):
    config = _config(folder)
    config["name"] = "renamed"  # what training/compare.py does when it publishes a family
    write_config(folder, config)
    assert zoo.load(folder).zoo_info["config"]["name"] == "renamed"


# --- 10. a misspelled relaxation key is an error ------------------------------------------------
def test_misspelled_relaxation_key_is_refused(folder, tmp_path):
    with pytest.raises(CheckpointError, match=r"'frm' \(did you mean 'form'\?\)"):
        zoo.save_pretrained(make_model(), tmp_path / "x", relaxation={"method": "cr", "frm": "mlp"})
    config = _config(folder)
    config["relaxation"] = {"method": "cr", "hidden_factr": 2}
    write_config(folder, config)
    with pytest.raises(CheckpointError, match="hidden_factor"):
        zoo.load(folder, relaxed=True)


# --- 6. broken folders: one ZooError line -----------------------------------------------------
def test_unknown_model_args_key_is_a_checkpoint_error(folder):
    config = _config(folder)
    config["model_args"]["hiden"] = 9
    write_config(folder, config)
    with pytest.raises(CheckpointError, match=r"'hiden' \(did you mean 'hidden'\?\)"):
        zoo.load(folder)


def test_unknown_architecture_in_config_is_a_checkpoint_error(folder):
    config = _config(folder)
    config["architecture"] = "toy-linaer"
    write_config(folder, config)
    with pytest.raises(CheckpointError, match="upgrade zoo"):
        zoo.load(folder)


def _header_corrupt(data: bytes) -> bytes:
    return struct.pack("<Q", 1 << 40) + data[8:]


def _pickled(data: bytes) -> bytes:
    import pickle

    return pickle.dumps({"layer1.weight": [1.0, 2.0]})


@pytest.mark.parametrize(
    "damage",
    [lambda d: d[: len(d) // 2], _pickled, _header_corrupt, lambda d: d[:8] + b"{not json" * 9],
    ids=["truncated", "pickled", "header-length", "header-json"],
)
def test_broken_safetensors_with_a_matching_checksum(folder, damage, capsys):
    weights = folder / WEIGHTS_NAME
    weights.write_bytes(damage(weights.read_bytes()))
    config = _config(folder)
    config["files"][WEIGHTS_NAME] = {"sha256": sha256_file(weights), "size": weights.stat().st_size}
    write_config(folder, config)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        zoo.load(folder)
    assert cli_main(["verify", str(folder), "--no-metrics"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1


# --- 10. a file where a folder belongs -----------------------------------------------------------
@pytest.mark.parametrize("name", ["model.pt", "weights.ckpt"])
def test_a_weights_file_name_says_a_checkpoint_is_a_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidNameError, match="checkpoint folder"):
        zoo.load(name)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / name).write_bytes(b"\x80\x04")
    with pytest.raises(InvalidNameError, match="is a file.*never loaded"):
        zoo.load(f"runs/{name}")


def test_a_safetensors_file_points_to_its_folder(folder):
    with pytest.raises(InvalidNameError, match=re.escape(f"pass its folder '{folder}'")):
        zoo.load(folder / WEIGHTS_NAME)


# --- 10. no "pinned commit None" ------------------------------------------------------------------
def test_revision_of_an_unpinned_model_warns_without_none(folder, tmp_path, monkeypatch):
    import huggingface_hub

    commit = "c" * 40

    def fake_download(repo_id, filename, *, revision, cache_dir, **kwargs):
        snapshot = Path(cache_dir) / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / filename, snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    entry = PretrainedEntry(
        name="zoo-test-unpinned", architecture=ARCHITECTURE, repo_id="zoo/unpinned",
        revision=None, sha256=file_hashes(folder), dataset="none", licence="MIT",
    )
    with registered(entry), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zoo.load("zoo-test-unpinned", revision="main", cache_dir=tmp_path / "cache")
    messages = [str(w.message) for w in caught if "revision 'main'" in str(w.message)]
    assert messages and all("None" not in m for m in messages), messages
    assert "pins none" in messages[0]


# --- 7. zoo download of a bundled model -----------------------------------------------------------
def test_download_of_a_bundled_model_returns_its_verified_folder(capsys):
    from zoo.hub.pretrained import get_pretrained

    name = "equiformer-md17-aspirin"
    bundled = hub_download.model_cards_dir() / get_pretrained(name).name  # aliases resolved
    if not bundled.is_dir():
        pytest.skip(f"no bundled folder at {bundled}")
    assert cli_main(["download", name]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(bundled)
    assert "bundled" in captured.err


def test_download_without_the_bundled_folder_names_the_cli_option(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub_download, "MODEL_CARDS_DIR", tmp_path)
    with pytest.raises(OfflineError, match="--revision on the command line"):
        hub_download.download("equiformer-md17-aspirin")
    assert cli_main(["download", "equiformer-md17-aspirin"]) == 2
    err = capsys.readouterr().err
    assert "--revision" in err and "Traceback" not in err


def test_every_checkpoint_error_is_a_zoo_error():
    from zoo.data import InvalidFrameError

    assert issubclass(CheckpointError, ZooError) and issubclass(InvalidFrameError, ZooError)
    assert zoo.ZooError is ZooError
