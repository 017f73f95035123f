"""The aspirin accuracy-per-CPU benchmarks: every lever recipe is a valid zoo recipe on the
benchmark's split, accuracy_levers.py reads validation at CPU-second marks, and
bench_accuracy_per_cpu.py joins one-side runs (``--only zoo`` / ``--only mace``) into one result.

The lever runs themselves are ordinary ``zoo train`` runs; a metrics file written the way
Lightning's CSV logger writes it stands in for one here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import accuracy_levers  # noqa: E402
import bench_accuracy_per_cpu  # noqa: E402


def test_every_lever_recipe_loads_on_the_benchmark_split():
    from zoo.train.recipe import load_recipe

    recipes = [*accuracy_levers.LEVERS.glob("*.yaml"), BENCHMARKS / "recipes" / "aspirin-cpu.yaml"]
    assert len(recipes) >= 3
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe["data"]["molecule"] == "aspirin"
        assert (recipe["data"]["n_train"], recipe["data"]["n_val"]) == (950, 50), path.name
        assert path.read_text().startswith("# "), f"{path.name}: first line describes the lever"


def _metrics(folder: Path, epochs: list[tuple[float, float, float]]) -> None:
    # One row per logging call, as Lightning's CSVLogger: training rows without validation.
    lines = ["epoch,step,time/cpu_s,train/loss,val/energy_mae_mev,val/forces_mae_mev"]
    for i, (cpu, forces, energy) in enumerate(epochs):
        lines.append(f"{i},{10 * i},,1.0,,")
        lines.append(f"{i},{10 * i + 9},{cpu},,{energy},{forces}")
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_summary_takes_the_latest_epoch_at_each_mark(tmp_path):
    # Run folders are named as the lever recipes they ran.
    _metrics(tmp_path / "medium-l1", [(100.0, 90.0, 50.0), (250.0, 70.0, 40.0)])
    (tmp_path / "medium-l1" / "export").mkdir()
    _metrics(tmp_path / "wide-l1", [(120.0, 95.0, 60.0)])
    results = accuracy_levers.main([
        "--work-dir", str(tmp_path), "--levers", "medium-l1", "wide-l1",
        "--marks", "50,200,300", "--output", str(tmp_path / "out" / "levers.json")])
    finished, stopped = results["levers"]["medium-l1"], results["levers"]["wide-l1"]
    assert finished["at_marks"][0] is None  # nothing finished before the first mark
    assert finished["at_marks"][1]["forces_mae"] == 90.0 and finished["at_marks"][1]["epoch"] == 0
    assert finished["at_marks"][2]["forces_mae"] == 70.0  # a finished run stands at later marks
    assert stopped["at_marks"][1:] == [None, None]  # stopped at 120 s: no claim at 200 or 300
    assert not stopped["finished"] and stopped["epochs_run"] == 1
    written = json.loads((tmp_path / "out" / "levers.json").read_text())
    assert written["levers"].keys() == results["levers"].keys()
    table = (tmp_path / "out" / "levers.md").read_text()
    assert "| `medium-l1` | – | 90.0 / 50 (epoch 0) | 70.0 / 40 (epoch 1) |" in table
    assert finished["recipe"] == "benchmarks/recipes/aspirin-levers/medium-l1.yaml"


def _side(side: str, forces: list[float], seed: int = 0) -> dict:
    marks = [300.0, 600.0]
    return {
        "points": [{"cpu_seconds": m, side: {"forces_mae": f, "energy_mae": 1.0, "epochs": i + 1,
                                             "snapshot_cpu_seconds": m - 10}}
                   for i, (m, f) in enumerate(zip(marks, forces, strict=True))],
        "marks_cpu_s": marks, "split": {"train": 950}, "budget_cpu_s": 600.0,
        "test_frames": "all", "threads": 1, "seed": seed, "sides": {side: {"snapshots": []}},
        "machine": {"cpu": "x", "torch_threads": 1, "load_average_at_start": [side == "zoo"]},
        "labels": {"zoo": "zoo", "mace": "MACE"}, "zoo_recipe": {"side": side},
        "mace_config": {"side": side},
    }


def test_one_side_runs_join_into_one_result(tmp_path):
    (tmp_path / "zoo.json").write_text(json.dumps(_side("zoo", [90.0, 60.0])))
    (tmp_path / "mace.json").write_text(json.dumps(_side("mace", [92.0, 66.0])))
    out = tmp_path / "joined" / "accuracy_per_cpu.json"
    results = bench_accuracy_per_cpu.main(
        ["--join", str(tmp_path / "zoo.json"), str(tmp_path / "mace.json"), "--output", str(out)])
    assert [(p["zoo"]["forces_mae"], p["mace"]["forces_mae"]) for p in results["points"]] == [
        (90.0, 92.0), (60.0, 66.0)]
    assert results["zoo_recipe"] == {"side": "zoo"} and results["mace_config"] == {"side": "mace"}
    assert set(results["machine_by_side"]) == {"zoo", "mace"}
    assert json.loads(out.read_text())["points"] == results["points"]
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # Runs of other settings (here another seed) are refused, and so is a side given twice.
    (tmp_path / "mace1.json").write_text(json.dumps(_side("mace", [92.0, 66.0], seed=1)))
    with pytest.raises(ValueError, match="seed"):
        bench_accuracy_per_cpu.join([tmp_path / "zoo.json", tmp_path / "mace1.json"])
    with pytest.raises(ValueError, match="two of the files"):
        bench_accuracy_per_cpu.join([tmp_path / "zoo.json", tmp_path / "zoo.json"])
