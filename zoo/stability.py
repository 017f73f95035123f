"""Molecular-dynamics stability of an energy/force model: a hot Langevin run and what it did.

A force field can have low test errors and still fall apart in MD, where it visits geometries
the test set never shows. The standard check (e.g. Fu et al., "Forces are not enough", 2023) runs
MD at a raised temperature and watches the bonds: a stable model keeps every bond within a few
tenths of an ångström of its length; an unstable one breaks bonds or collapses atoms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# A bond counts as broken when its length deviates by more than this (Å), the threshold of
# Fu et al. 2023 for MD17 molecules.
BOND_DEVIATION_LIMIT = 0.5


def bonds_of(atoms: Any, scale: float = 1.2) -> np.ndarray:
    """Index pairs ``[n_bonds, 2]`` closer than ``scale`` x the sum of covalent radii."""
    from ase.data import covalent_radii

    positions = atoms.get_positions()
    radii = covalent_radii[atoms.get_atomic_numbers()]
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    limit = scale * (radii[:, None] + radii[None])
    i, j = np.nonzero(np.triu(distance < limit, k=1))
    return np.stack([i, j], axis=1)


def langevin_stability(
    model: Any,
    atoms: Any,
    temperature_K: float = 500.0,
    time_ps: float = 5.0,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    dtype: str = "float32",
    record_every: int = 20,
) -> dict[str, Any]:
    """Run Langevin MD with ``model`` and report bond-length deviations and temperature.

    Parameters
    ----------
    model
        A loaded zoo energy/force model (not modified: the calculator works on a copy where the
        dtype differs).
    atoms
        Starting geometry (``ase.Atoms``); it is copied.
    temperature_K, time_ps, timestep_fs, friction_per_fs
        The thermostat's temperature, the simulated time, the time step and the friction.
    seed
        Seeds the initial Maxwell-Boltzmann velocities and the Langevin noise (a private
        ``numpy`` generator: the caller's random state is not touched).
    dtype
        Precision of the force evaluations (float32, as MD with these models is run).
    record_every
        Steps between recorded frames (bond lengths and temperature).

    Returns
    -------
    dict
        ``max_bond_deviation_A`` (largest ``|d(t) - d(0)|`` over bonds and recorded frames),
        ``stable`` (no bond deviated by more than :data:`BOND_DEVIATION_LIMIT`),
        ``first_unstable_ps`` (None if stable), ``temperature_mean_K``, ``temperature_std_K``
        (over the second half), and the settings.
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from zoo.ase import ZooCalculator

    atoms = atoms.copy()
    atoms.set_constraint(FixCom())  # ASE's recommended way to keep the centre of mass still
    atoms.calc = ZooCalculator(model, dtype=dtype)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    bonds = bonds_of(atoms)
    reference = _bond_lengths(atoms, bonds)
    dynamics = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, rng=rng, fixcm=False)
    n_steps = int(round(time_ps * 1000.0 / timestep_fs))
    deviations, temperatures, first_unstable = [], [], None
    for done in range(0, n_steps, record_every):
        dynamics.run(min(record_every, n_steps - done))
        deviation = float(np.abs(_bond_lengths(atoms, bonds) - reference).max())
        deviations.append(deviation)
        temperatures.append(float(atoms.get_temperature()))
        if first_unstable is None and (deviation > BOND_DEVIATION_LIMIT
                                       or not np.isfinite(deviation)):
            first_unstable = (done + record_every) * timestep_fs / 1000.0
            break  # past a broken bond the trajectory means nothing
    second_half = temperatures[len(temperatures) // 2:]
    return {
        "temperature_K": temperature_K, "time_ps": time_ps, "timestep_fs": timestep_fs,
        "friction_per_fs": friction_per_fs, "seed": seed, "dtype": dtype,
        "n_bonds": int(len(bonds)),
        "max_bond_deviation_A": round(max(deviations), 4),
        "stable": first_unstable is None,
        "first_unstable_ps": first_unstable,
        "temperature_mean_K": round(float(np.mean(second_half)), 1),
        "temperature_std_K": round(float(np.std(second_half)), 1),
    }


def _bond_lengths(atoms: Any, bonds: np.ndarray) -> np.ndarray:
    positions = atoms.get_positions()
    return np.linalg.norm(positions[bonds[:, 0]] - positions[bonds[:, 1]], axis=-1)
