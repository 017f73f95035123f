"""1 ps of NVE molecular dynamics of aspirin with a published model; reports the energy drift.

A conservative model (forces = -dE/dx, smooth cutoff) keeps the total energy constant up to the
integrator's error; the drift is the figure reported in the model card.

    python examples/md_aspirin.py equiformer-md17-aspirin --dtype float64 --output md.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from zoo.ase import ZooCalculator

try:  # the same aspirin geometry as the quick start
    from quickstart import ASPIRIN
except ImportError:  # run from the repository root
    from examples.quickstart import ASPIRIN


def run_md(model: str, dtype: str, steps: int, timestep_fs: float, seed: int) -> dict:
    atoms = Atoms([s for s, _ in ASPIRIN], positions=[p for _, p in ASPIRIN])
    atoms.calc = ZooCalculator(model, dtype=dtype)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)
    ZeroRotation(atoms)
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    start = time.time()
    dyn.run(steps)
    energies = np.array(energies)
    duration_ps = steps * timestep_fs / 1000
    slope = np.polyfit(np.arange(len(energies)) * 10 * timestep_fs / 1000, energies, 1)[0]
    return {
        "model": model,
        "dtype": dtype,
        "steps": steps,
        "timestep_fs": timestep_fs,
        "duration_ps": duration_ps,
        "total_energy_change_mev": float((energies[-1] - energies[0]) * 1000),
        "total_energy_fluctuation_mev": float(energies.std() * 1000),
        "drift_mev_per_atom_per_ps": float(slope * 1000 / len(atoms)),
        "final_temperature_k": float(atoms.get_temperature()),
        "wall_time_s": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", nargs="?", default="equiformer-md17-aspirin")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output")
    args = parser.parse_args()
    result = run_md(args.model, args.dtype, args.steps, args.timestep_fs, args.seed)
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
