"""Langevin stability check (zoo.stability) and the weight EMA of training (zoo.train.ema)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import zoo
from zoo.stability import bonds_of, langevin_stability
from zoo.train.ema import WeightEMA

ETHANOL = Atoms(
    "C2OH6",
    positions=[[0.0, 0.0, 0.0], [1.52, 0.0, 0.0], [2.0, 1.35, 0.0], [-0.36, 1.03, 0.0],
               [-0.36, -0.51, 0.89], [-0.36, -0.51, -0.89], [1.89, -0.51, 0.89],
               [1.89, -0.51, -0.89], [2.96, 1.35, 0.0]],
)


def test_bonds_of_ethanol():
    # C-C, C-O, O-H and five C-H bonds.
    assert len(bonds_of(ETHANOL)) == 8


def test_langevin_run_reports_bonds_and_temperature():
    model = zoo.create_model("equiformer", "tiny", atomic_energies={1: -13.6, 6: -1000.0,
                                                                    8: -2000.0}).eval()
    state = torch.random.get_rng_state()
    result = langevin_stability(model, ETHANOL, temperature_K=300.0, time_ps=0.01,
                                record_every=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert result["n_bonds"] == 8
    assert np.isfinite(result["max_bond_deviation_A"]) and result["temperature_mean_K"] > 0
    assert result["stable"] == (result["max_bond_deviation_A"] <= 0.5)
    # Same seed, same trajectory.
    again = langevin_stability(model, ETHANOL, temperature_K=300.0, time_ps=0.01, record_every=5)
    assert again == result


def test_weight_ema_averages_and_restores():
    layer = torch.nn.Linear(2, 2)
    ema = WeightEMA(dict(layer.named_parameters()), decay=0.5)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update()  # warm-up decay min(0.5, 2/11)
    expected = start + (1 - 2 / 11) * 1.0
    assert torch.allclose(ema.shadow["weight"], expected)
    with ema.applied():
        assert torch.allclose(layer.weight, expected)
    assert torch.allclose(layer.weight, start + 1.0)  # restored
    state = ema.state_dict()
    other = WeightEMA(dict(layer.named_parameters()), decay=0.5)
    other.load_state_dict(state)
    assert other.num_updates == 1 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(dict(layer.named_parameters()), decay=1.0)
