"""benchmarks/cr_scaling.py: the study's grid, equal optimiser steps, and its summary table.

The runs themselves are ordinary ``zoo train`` runs (tests/test_families.py trains N-body
recipes); here fake exports stand in for finished runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cr_scaling  # noqa: E402


def test_grid_shares_the_full_cell_and_keeps_the_optimiser_steps():
    grid = cr_scaling.cells([16, 32, 64], [300, 1000, 3000])
    assert [(c["width"], c["n_train"]) for c in grid] == [
        (16, 3000), (32, 3000), (64, 3000), (64, 300), (64, 1000)]
    assert cr_scaling.epochs_for(3000, 80) == 80
    assert cr_scaling.epochs_for(300, 80) == 800  # 3 steps of 100 an epoch: 2400 steps either way
    args = cr_scaling.overrides(grid[3], 800, ["--set", "data.n_val=10"])
    assert args[:4] == ["--set", "model.args.hidden_features=64", "--set", "data.n_train=300"]
    assert args[-2:] == ["--set", "data.n_val=10"]


def _fake_export(run: Path, mse: float) -> None:
    (run / "export").mkdir(parents=True)
    (run / "export" / "config.json").write_text(json.dumps({"metrics": {"mse": mse}}))


def test_summary_gives_mean_std_spread_and_the_difference(tmp_path):
    grid = cr_scaling.cells([64], [300])
    full, small = grid
    for seed, (s, c) in enumerate([(0.0070, 0.0069), (0.0072, 0.0071), (0.0074, 0.0070)]):
        _fake_export(cr_scaling.run_folder(tmp_path, full, "standard", seed), s)
        _fake_export(cr_scaling.run_folder(tmp_path, full, "cr", seed), c)
    _fake_export(cr_scaling.run_folder(tmp_path, small, "standard", 0), 0.02)
    summary = cr_scaling.summarize(tmp_path, grid, [0, 1, 2])
    row = summary["rows"][0]
    assert row["standard"]["mean"] == pytest.approx(0.0072)
    assert row["standard"]["std"] == pytest.approx(0.0002)
    assert row["standard"]["spread"] == pytest.approx(0.0004)
    assert row["cr_minus_standard"] == pytest.approx(0.0070 - 0.0072)
    partial = summary["rows"][1]
    assert partial["standard"]["finished"] == 1 and partial["cr"]["mean"] is None
    text = cr_scaling.table(summary)
    assert "| width | 64 | 3000 | 0.00720 ± 0.00020 | 0.00700 ± 0.00010 | -0.00020 |" in text
    assert "| data | 64 | 300 | 0.02000 (1 seeds) | not run | – |" in text
    cr_scaling.plot(summary, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
