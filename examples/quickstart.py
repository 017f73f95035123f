"""Quick start: load the bundled aspirin model offline, predict energy and forces, run a short MD.

Needs no data file: the geometry below is one aspirin conformation (revised MD17, CC0).
    python examples/quickstart.py
"""

from __future__ import annotations

import time

import numpy as np
from ase import Atoms, units
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

import zoo
from zoo.ase import ZooCalculator

ASPIRIN = [
    ("C", (2.03112, -1.10784, -0.35159)), ("C", (0.68818, 0.94896, -1.72488)),
    ("C", (2.47575, -0.65064, -1.63040)), ("C", (1.77067, 0.27920, -2.26194)),
    ("C", (-2.96651, 1.56078, 0.74845)), ("C", (1.01515, -0.46887, 0.28137)),
    ("C", (0.36990, 0.63500, -0.34026)), ("O", (1.07328, -1.61261, 2.39526)),
    ("O", (-2.10584, 0.33702, -1.18388)), ("O", (-0.99338, -1.09718, 1.55777)),
    ("C", (0.38302, -1.06938, 1.56214)), ("C", (-1.94524, 1.06316, -0.14421)),
    ("O", (-0.62234, 1.32233, 0.28012)), ("H", (-1.52430, -1.48738, 2.26652)),
    ("H", (2.52341, -1.97959, 0.18821)), ("H", (-0.00707, 1.48345, -2.38975)),
    ("H", (3.21610, -1.21809, -2.26929)), ("H", (2.13525, 0.55667, -3.25108)),
    ("H", (-3.81785, 2.06785, 0.24486)), ("H", (-3.37546, 0.79255, 1.33723)),
    ("H", (-2.65376, 2.27891, 1.48261)),
]


def main(model_name: str = "equiformer-md17-aspirin", md_steps: int = 100) -> None:
    start = time.time()
    model = zoo.load(model_name)  # the bundled folder: no network needed
    atoms = Atoms([s for s, _ in ASPIRIN], positions=[p for _, p in ASPIRIN])
    result = zoo.predict(model, [atoms])
    print(f"{model_name}: energy {result['energy'][0]:.4f} eV, "
          f"largest force {np.abs(result['forces'][0]).max():.3f} eV/Å")

    atoms.calc = ZooCalculator(model)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    e0 = atoms.get_total_energy()
    dyn.run(md_steps)
    drift = atoms.get_total_energy() - e0
    print(f"NVE MD, {md_steps} steps of 0.5 fs: total-energy change {drift * 1000:.2f} meV "
          f"({time.time() - start:.1f} s in all)")


if __name__ == "__main__":
    main()
