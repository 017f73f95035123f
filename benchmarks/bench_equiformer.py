"""Speed of the zoo Equiformer on aspirin: inference frames/s and one training step.

Inference: energy + forces (forces by autograd) in float32, eval mode, for the ``md17`` and
``small`` presets at batch sizes 1 and 32. Training: one step (forward, L1 energy + 80 x L1 force
loss, backward through the force graph, Adam step) on a batch of 8 frames, for a relaxed model
(constraint relaxation, MLP branches, level 0.5, CR regulariser on) and for the same model
projected back (the plain architecture).

Frames are real rMD17 aspirin frames from the shared data (``zoo.data.data_root()``), or random
21-atom molecules with aspirin's composition when the data is missing. Prints a table and writes
``benchmarks/results/equiformer.json``::

    python benchmarks/bench_equiformer.py                  # full run (minutes on 2 CPU cores)
    python benchmarks/bench_equiformer.py --quick          # small preset only, fewer repeats

The reference implementation (atomicarchitects/equiformer) is not run: see
``benchmarks/reference_equiformer.md``; the JSON records which of its dependencies are missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from _machine import machine  # noqa: E402 - benchmarks/ is on sys.path as a script

from zoo import create_model, relax  # noqa: E402
from zoo.data import data_root, frames_to_batch, read_frames  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "equiformer.json"
ASPIRIN_SYMBOLS = "C9H8O4"
FORCE_WEIGHT = 80.0
LAMBDA_REG = 0.01


# --------------------------------------------------------------------------- data


def load_frames(n: int, seed: int = 0) -> tuple[list[Atoms], str]:
    """``n`` aspirin frames (real where available, else random) and a description."""
    path = data_root() / "rmd17" / "aspirin" / "test.xyz"
    if path.is_file():
        return read_frames(path)[:n], f"real rMD17 aspirin frames ({path})"
    return random_molecules(n, seed), "random 21-atom molecules (C9H8O4; shared data missing)"


def random_molecules(n: int, seed: int = 0) -> list[Atoms]:
    """Random aspirin-sized molecules: atoms at least 0.95 Å apart in a ~6 Å blob, with labels."""
    rng = np.random.default_rng(seed)
    frames = []
    template = Atoms(ASPIRIN_SYMBOLS)
    while len(frames) < n:
        pos = rng.normal(scale=1.6, size=(len(template), 3))
        distances = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        if distances[np.triu_indices(len(pos), 1)].min() < 0.95:
            continue
        atoms = template.copy()
        atoms.positions = pos
        atoms.info["energy"] = float(rng.normal())
        atoms.arrays["forces"] = rng.normal(size=(len(pos), 3))
        frames.append(atoms)
    return frames


def labels(frames: list[Atoms]) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (float64) and forces (float32) of the frames, whichever way they are stored."""
    energies, forces = [], []
    for atoms in frames:
        if atoms.calc is not None:
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
        else:
            energies.append(atoms.info["energy"])
            forces.append(atoms.arrays["forces"])
    return (torch.tensor(energies, dtype=torch.float64),
            torch.as_tensor(np.concatenate(forces), dtype=torch.float32))


# --------------------------------------------------------------------------- timing


def build(preset: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("equiformer", preset=preset).to(torch.float32)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_inference(
    model: torch.nn.Module, frames: list[Atoms], batch_size: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """Frames/s of energy + forces on pre-built batches (the model alone, no data handling)."""
    model.eval()
    needed = (warmup + repeats) * batch_size
    pool = (frames * (needed // len(frames) + 1))[:needed]
    batches = [frames_to_batch(pool[i : i + batch_size], dtype=torch.float32)
               for i in range(0, needed, batch_size)]
    for batch in batches[:warmup]:  # first calls: allocator, TorchScript profiling
        model(batch)
    seconds = []
    for batch in batches[warmup:]:
        start = time.perf_counter()
        out = model(batch)
        out["forces"].sum().item()
        seconds.append(time.perf_counter() - start)
    per_batch = statistics.median(seconds)
    return {
        "batch_size": batch_size,
        "frames_per_s": batch_size / per_batch,
        "median_s_per_batch": per_batch,
        "min_s_per_batch": min(seconds),
        "timed_batches": len(seconds),
    }


def time_training(
    preset: str, relaxed: bool, frames: list[Atoms], batch_size: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """Seconds per training step for the relaxed (CR, MLP branches) or projected model."""
    model = build(preset)
    relax.relax(model, "cr", form="mlp")
    if relaxed:
        relax.set_levels(model, 0.5)
    else:
        relax.project(model)
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    chunk = frames[:batch_size]
    batch = frames_to_batch(chunk, dtype=torch.float32)
    energy_ref, forces_ref = labels(chunk)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = model(batch)
        loss = (out["energy"] - energy_ref).abs().mean().float()
        loss = loss + FORCE_WEIGHT * (out["forces"] - forces_ref).abs().mean()
        if relaxed:
            loss = loss + LAMBDA_REG * relax.relaxation_penalty(model)["total"]
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for _ in range(warmup):
        step()
    seconds = [step() for _ in range(repeats)]
    return {
        "preset": preset,
        "variant": "relaxed (cr, mlp)" if relaxed else "projected",
        "batch_size": batch_size,
        "median_s_per_step": statistics.median(seconds),
        "min_s_per_step": min(seconds),
        "timed_steps": len(seconds),
        "parameters": n_params(model),
    }


# --------------------------------------------------------------------------- reference


def reference_status() -> dict[str, Any]:
    """Which dependencies of the reference implementation are importable here."""
    modules = ["torch_scatter", "torch_cluster", "ocpmodels"]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return {
        "run": False,
        "missing_modules": missing,
        "notes": "benchmarks/reference_equiformer.md",
    }


# --------------------------------------------------------------------------- main


def print_table(results: dict[str, Any]) -> None:
    print(f"\nEquiformer on {results['data']}; float32, {results['machine']['torch_threads']} "
          f"thread(s), {results['machine']['cpu']}")
    print(f"{'preset':<8}{'params':>12}{'batch':>7}{'frames/s':>11}{'s/batch':>10}")
    for row in results["inference"]:
        print(f"{row['preset']:<8}{row['parameters']:>12,}{row['batch_size']:>7}"
              f"{row['frames_per_s']:>11.2f}{row['median_s_per_batch']:>10.3f}")
    print(f"\n{'training step (batch 8)':<28}{'params':>12}{'s/step':>10}")
    for row in results["training"]:
        label = f"{row['preset']} {row['variant']}"
        print(f"{label:<28}{row['parameters']:>12,}{row['median_s_per_step']:>10.3f}")
    status = results["reference"]
    print(f"\nreference implementation: not run (missing: {', '.join(status['missing_modules'])}; "
          f"see {status['notes']})")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="md17,small", help="comma-separated presets")
    parser.add_argument("--batch-sizes", default="1,32", help="inference batch sizes")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--train-presets", default="small,md17",
                        help="presets of the training-step comparison")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches/steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches/steps first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: this CPU is shared, see the notes)")
    parser.add_argument("--quick", action="store_true", help="small preset, 1 warm-up, 2 runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.presets = args.train_presets = "small"
        args.warmup, args.repeats = 1, 2

    torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    frames, source = load_frames(64)
    results: dict[str, Any] = {
        "data": source,
        "machine": machine(args.threads),
        "settings": {"dtype": "float32", "warmup": args.warmup, "repeats": args.repeats,
                     "force_weight": FORCE_WEIGHT, "lambda_reg": LAMBDA_REG,
                     "relaxed_level": 0.5},
        "inference": [],
        "training": [],
        "reference": reference_status(),
    }
    for preset in presets:
        model = build(preset)
        for batch_size in batch_sizes:
            row = time_inference(model, frames, batch_size, args.warmup, args.repeats)
            row.update(preset=preset, parameters=n_params(model))
            results["inference"].append(row)
            print(f"{preset} batch {batch_size}: {row['frames_per_s']:.2f} frames/s", flush=True)
    for preset in [p for p in args.train_presets.split(",") if p]:
        for relaxed in (True, False):
            row = time_training(preset, relaxed, frames, args.train_batch_size, args.warmup,
                                args.repeats)
            results["training"].append(row)
            print(f"{preset} {row['variant']}: {row['median_s_per_step']:.3f} s/step", flush=True)
    results["machine"]["load_average_at_end"] = (
        os.getloadavg() if hasattr(os, "getloadavg") else None
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.output}")
    return results


if __name__ == "__main__":
    main()
