"""The scripts that add measured sections to a published card (``training/other_frames.py``,
``training/md_stability.py`` through ``training/card_sections.py``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from zoo.data import load_rmd17
from zoo.data.paths import data_root
from zoo.resources import model_cards_dir

TRAINING = Path(__file__).resolve().parents[1] / "training"
sys.path.insert(0, str(TRAINING))

import card_sections  # noqa: E402
import other_frames  # noqa: E402

ASPIRIN_CARD = "equiformer-md17-aspirin.standard"


def test_put_section_inserts_then_replaces(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# card\n\nresults\n\n## Training\n\nrecipe\n")
    block = "<!-- s -->\n## Section\n\none\n<!-- /s -->\n"
    card_sections.put_section(readme, "<!-- s -->", "<!-- /s -->", block, "\n## Training\n")
    first = readme.read_text()
    assert first.index("## Section") < first.index("## Training")
    card_sections.put_section(readme, "<!-- s -->", "<!-- /s -->", block.replace("one", "two"),
                              "\n## Training\n")
    second = readme.read_text()
    assert "two" in second and "one" not in second and second.count("## Section") == 1
    assert second.replace("two", "one") == first
    with pytest.raises(ValueError, match="no '## Results' heading"):
        card_sections.put_section(readme, "<!-- t -->", "<!-- /t -->", "x\n", "\n## Results\n")


def _require_aspirin() -> None:
    if not (data_root() / "rmd17" / "aspirin" / "train.xyz").is_file():
        pytest.skip(f"rMD17 aspirin not found under {data_root()}; point $ZOO_DATA_DIR at the "
                    "shared data folder to run this test")


def test_unused_frames_are_outside_the_models_train_and_val_splits():
    _require_aspirin()
    config = json.loads((model_cards_dir() / ASPIRIN_CARD / "config.json").read_text())
    frames, where = other_frames.unused_frames(config)
    data = config["data"]
    assert len(frames) == 1200 - data["n_train"] - data["n_val"] == 200
    assert "200 frames of `train.xyz`" in where
    used = [load_rmd17("aspirin", split, seed=data["split_seed"], n_train=data["n_train"],
                       n_val=data["n_val"]) for split in ("train", "val")]
    seen = {np.asarray(p, dtype=np.float64).round(6).tobytes()
            for split in used for p in split["pos"]}
    assert len(seen) == 1000
    assert not {f.positions.round(6).tobytes() for f in frames} & seen


def test_other_frames_writes_its_numbers_and_card_section(tmp_path):
    _require_aspirin()
    folder = tmp_path / "card"
    shutil.copytree(model_cards_dir() / ASPIRIN_CARD, folder)
    frames = tmp_path / "three.xyz"
    ase.io.write(frames, ase.io.read(data_root() / "rmd17" / "aspirin" / "test.xyz", ":3"))
    subprocess.run([sys.executable, str(TRAINING / "other_frames.py"), str(folder),
                    "--frames", str(frames)], check=True, capture_output=True)
    result = json.loads((folder / "other_frames.json").read_text())
    assert result["n_frames"] == 3
    assert 0 < result["forces_mae_mev_per_A"] < 500
    text = (folder / "README.md").read_text()
    section = text[text.index(other_frames.START):text.index(other_frames.END)]
    assert f"{result['forces_mae_mev_per_A']:.2f} meV/Å" in section
    assert text.index(other_frames.END) < text.index("## Equivariance after projection")
