"""Add a Langevin-MD stability section to an exported molecule model's folder.

    python training/md_stability.py model_cards/equiformer-md17-aspirin.standard \
        --temperature 500 --time-ps 5

Runs :func:`zoo.stability.langevin_stability` from the first frame of the molecule's test file,
writes ``md_stability.json`` into the folder and puts a "Stability" section into its README.md
(replacing an earlier one). Publish the folder again afterwards: its file hashes change.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from card_sections import put_section, write_atomically

START, END = "<!-- md-stability -->", "<!-- /md-stability -->"


def section(result: dict, cpu_s: float) -> str:
    """The card section (markdown between markers) of a stability result."""
    verdict = ("stable: no bond deviated by more than 0.5 Å" if result["stable"] else
               f"**unstable**: a bond deviated by more than 0.5 Å after "
               f"{result['first_unstable_ps']} ps")
    return f"""{START}
## Stability (Langevin MD)

{result['time_ps']} ps of Langevin dynamics at {result['temperature_K']:.0f} K (time step
{result['timestep_fs']} fs, friction {result['friction_per_fs']} / fs, seed {result['seed']},
{result['dtype']}), from the first frame of the test file: {verdict}.
Largest bond-length deviation from the starting geometry over {result['n_bonds']} bonds:
{result['max_bond_deviation_A']:.3f} Å; temperature over the second half
{result['temperature_mean_K']:.0f} ± {result['temperature_std_K']:.0f} K.
({cpu_s / 60:.1f} CPU-minutes; `python training/md_stability.py FOLDER`, numbers in
`md_stability.json`.)
{END}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--temperature", type=float, default=500.0)
    parser.add_argument("--time-ps", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ase.io

    import zoo
    from zoo.data.paths import data_root
    from zoo.stability import langevin_stability

    model = zoo.load(str(args.folder))
    config = json.loads((args.folder / "config.json").read_text())
    molecule = config["data"]["molecule"]
    atoms = ase.io.read(data_root() / "rmd17" / molecule / "test.xyz", index=0)
    started = time.process_time()
    result = langevin_stability(model, atoms, temperature_K=args.temperature,
                                time_ps=args.time_ps, seed=args.seed)
    cpu_s = time.process_time() - started
    result["cpu_seconds"] = round(cpu_s, 1)
    result["torch_threads"] = torch.get_num_threads()
    write_atomically(args.folder / "md_stability.json", json.dumps(result, indent=2) + "\n")
    put_section(args.folder / "README.md", START, END, section(result, cpu_s), "\n## Training\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
