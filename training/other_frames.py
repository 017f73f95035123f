"""Check a published molecule model on rMD17 frames outside its own train/validation/test split.

    python training/other_frames.py model_cards/equiformer-md17-aspirin.standard
    python training/other_frames.py FOLDER --frames rmd17_aspirin_full.xyz   # any labelled file

By default the frames are those of the molecule's ``train.xyz`` that the model's split (its
config's ``n_train``, ``n_val`` and ``split_seed``) used for neither training nor validation:
frames from the same trajectory that the model never saw and that selection never looked at.
Writes ``other_frames.json`` and an "Other rMD17 frames" section into the folder's README.md
(after the results). Publish the folder again afterwards: its file hashes change.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from card_sections import put_section, write_atomically

START, END = "<!-- other-frames -->", "<!-- /other-frames -->"


def unused_frames(config: dict) -> tuple[list, str]:
    """Frames of the molecule's train file outside the model's train and validation splits."""
    from zoo.data import read_frames
    from zoo.data.paths import data_root
    from zoo.data.rmd17 import split_indices

    data = config["data"]
    source = data_root() / "rmd17" / data["molecule"] / "train.xyz"
    frames = read_frames(source, labels="require")
    used = data["n_train"] + data["n_val"]
    *_, chosen = split_indices(len(frames), data["split_seed"], data["n_train"], data["n_val"])
    if not len(chosen):
        return [], (f"all {len(frames)} frames of `{source.name}` are in the training or "
                    "validation split, and the data folder holds no other frames of the molecule")
    where = (f"the {len(chosen)} frames of `{source.name}` in neither the training nor the "
             f"validation split (split seed {data['split_seed']}, {used} of {len(frames)} used)")
    return [frames[i] for i in chosen], where


def measure(model, frames: list, batch_size: int) -> dict:
    """Energy (meV) and force (meV/Å, per component) MAE of ``model`` on labelled ``frames``."""
    import zoo

    result = zoo.predict(model, frames, batch_size=batch_size)
    energy = np.array([a.get_potential_energy() for a in frames])
    forces = np.concatenate([a.get_forces() for a in frames])
    predicted_forces = np.concatenate([np.asarray(f) for f in result["forces"]])
    return {
        "energy_mae_mev": float(np.abs(np.asarray(result["energy"]) - energy).mean() * 1000),
        "forces_mae_mev_per_A": float(np.abs(predicted_forces - forces).mean() * 1000),
        "n_frames": len(frames),
    }


def section(result: dict, test: dict) -> str:
    """The card section (markdown between markers)."""
    if not result["n_frames"]:
        body = (f"No further frames: {result['where']}. Run `python training/other_frames.py "
                "FOLDER --frames FILE` on frames of the full rMD17 archive to check.")
    else:
        body = (f"On {result['where']}: energy MAE **{result['energy_mae_mev']:.2f} meV**, "
                f"force MAE **{result['forces_mae_mev_per_A']:.2f} meV/Å** (test split: "
                f"{test['energy_mae']:.2f} / {test['forces_mae']:.2f}). "
                "(`python training/other_frames.py FOLDER`, numbers in `other_frames.json`.)")
    return f"{START}\n## Other rMD17 frames\n\n{body}\n{END}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--frames", type=Path, help="labelled frames (extended XYZ) to use "
                        "instead of the unused frames of the train file")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import zoo
    from zoo.data import read_frames

    config = json.loads((args.folder / "config.json").read_text())
    if args.frames:
        frames = read_frames(args.frames, labels="require")
        where = f"the {len(frames)} frames of `{args.frames.name}`"
    else:
        frames, where = unused_frames(config)
    model = zoo.load(str(args.folder))
    started = time.process_time()
    result = measure(model, frames, args.batch_size) if frames else {"n_frames": 0}
    result.update(where=where, cpu_seconds=round(time.process_time() - started, 1))
    write_atomically(args.folder / "other_frames.json", json.dumps(result, indent=2) + "\n")
    put_section(args.folder / "README.md", START, END, section(result, config["metrics"]),
                "\n## Equivariance after projection\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
