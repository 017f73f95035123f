"""CPU cost of one training step per architecture and preset, standard and relaxed.

A step is forward, loss (+ the CR regulariser when relaxed, at level 1) and backward on the batch
each recipe trains with: N-body 100 systems of 5 particles, ModelNet40 32 clouds of 300 points,
smoke plume 16 inputs of 10 x 2 x 64 x 64 (one predicted frame; a training step rolls out 6),
rMD17 8 molecules of 21 atoms (energy and forces, the forces by a second backward pass).
CPU seconds on one thread. Three variants per case:

- ``standard``: the model as built;
- ``relaxed``: ``relax(model, "cr", form=<the recipe's form>)`` with every other option at its
  default (regulariser in every step, on at most ``PENALTY_ROWS`` random rows per site; conv
  branches fused into steerable convolutions);
- ``relaxed_fast``: the cheaper options of :func:`zoo.relax.relax` for that family (``FAST``):
  the regulariser every 4th step (times 4), and ``form="lowrank"`` on the dense Vector Neuron
  sites. Only where it differs from ``relaxed``.

The variants of a case are timed in turn (one sample of each per round, after a warm-up round),
so load from other processes on a shared machine falls on all of them alike; a sample of a
variant with the regulariser every ``k`` steps is ``k`` consecutive steps (its cost per step
averaged over a whole cycle). Medians over rounds; ``ratio`` is relaxed / standard. This is what
decides which recipes a CPU session can train (see the session notes).

    python benchmarks/bench_training_step.py                  # every case
    python benchmarks/bench_training_step.py --only vn-       # a subset, by name prefix

Writes ``benchmarks/results/training_step.json`` (``--output`` elsewhere). With ``--only``, the
measured rows replace their namesakes in an existing file and its other rows are kept: every row
says when it was measured, and ``machine`` lists each contributing run's machine and load.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine  # noqa: E402

CASES = [  # (architecture, preset, kind, the recipe's branch form)
    ("egnn", "nbody", "nbody", "linear"),
    ("segnn", "nbody", "nbody", "linear"),
    ("vn-pointnet", "small", "points", "lowrank"),
    ("vn-dgcnn", "small", "points", "lowrank"),
    ("vn-pointnet", "modelnet40", "points", "lowrank"),
    ("vn-dgcnn", "modelnet40", "points", "lowrank"),
    ("smoke-conv", "smoke", "smoke", "conv"),
    ("smoke-equiv", "smoke", "smoke", "conv"),
    ("equiformer", "small", "molecules", "mlp"),
]
# The cheaper relaxation options per input kind (relax() keyword arguments).
FAST: dict[str, dict[str, Any]] = {
    "nbody": {"penalty_every": 4},
    "points": {"form": "lowrank", "penalty_every": 4},
    "smoke": {},  # conv branches: fused, and their kernel terms cost nothing to speak of
    "molecules": {"penalty_every": 4},
}


def batch_and_loss(kind: str, generator: torch.Generator) -> tuple[Any, Callable]:
    """A training batch of the recipe's size and its loss function."""
    if kind == "nbody":
        from torch_geometric.data import Batch, Data

        graphs = [Data(pos=torch.randn(5, 3, generator=generator),
                       vel=torch.randn(5, 3, generator=generator) * 0.5,
                       charge=torch.randint(0, 2, (5, 1), generator=generator).float() * 2 - 1)
                  for _ in range(100)]
        batch = Batch.from_data_list(graphs)
        target = torch.randn(500, 3, generator=generator)
        return batch, lambda out: (out["pos"] - target).pow(2).mean()
    if kind == "points":
        points = torch.randn(32, 300, 3, generator=generator)
        labels = torch.randint(0, 40, (32,), generator=generator)
        return points, lambda out: torch.nn.functional.cross_entropy(out["logits"], labels)
    if kind == "molecules":
        from torch_geometric.data import Batch, Data

        elements = torch.tensor([1, 6, 8])
        graphs = [Data(z=elements[torch.randint(0, 3, (21,), generator=generator)],
                       pos=torch.randn(21, 3, generator=generator) * 1.5) for _ in range(8)]
        batch = Batch.from_data_list(graphs)
        energy = torch.randn(8, generator=generator, dtype=torch.float64)
        forces = torch.randn(8 * 21, 3, generator=generator)

        def molecule_loss(out):  # the rMD17 recipes' L1 loss, force weight 80
            return ((out["energy"] - energy).abs().mean()
                    + 80.0 * (out["forces"] - forces).abs().mean())

        return batch, molecule_loss
    inputs = torch.randn(16, 20, 64, 64, generator=generator)
    target = torch.randn(16, 2, 64, 64, generator=generator)

    def smoke_loss(out):
        out = out["output"] if isinstance(out, dict) else out
        return (out - target).pow(2).mean()

    return inputs, smoke_loss


def make_step(model: torch.nn.Module, inputs: Any, loss_fn: Callable) -> Callable[[], None]:
    """Forward + loss + regulariser + backward (no optimiser: its cost is the same for both)."""
    from zoo import relax

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs)) + 0.01 * relax.relaxation_penalty(model)["total"]
        loss.backward()

    return step


def build_variants(architecture: str, preset: str, kind: str,
                   form: str) -> tuple[dict[str, torch.nn.Module], dict[str, dict]]:
    """The case's models (same seed) and the relax options of each relaxed variant."""
    import zoo
    from zoo import relax

    def fresh() -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return zoo.create_model(architecture, preset).train()

    models = {"standard": fresh()}
    if not models["standard"].relaxation_sites():
        return models, {}
    options = {"relaxed": {"form": form}}
    fast = {"form": form, **FAST[kind]}
    accepted = inspect.signature(relax.relax).parameters
    if fast != options["relaxed"] and all(k in accepted for k in fast):
        options["relaxed_fast"] = fast
    for name, kwargs in options.items():
        models[name] = relax.relax(fresh(), "cr", level=1.0, **kwargs)
    return models, options


def time_case(models: dict[str, torch.nn.Module], options: dict[str, dict], inputs: Any,
              loss_fn: Callable, repeats: int, min_seconds: float) -> dict[str, float]:
    """Median CPU seconds per step of every variant, timed round-robin."""
    steps = {name: make_step(model, inputs, loss_fn) for name, model in models.items()}
    block = {name: int(options.get(name, {}).get("penalty_every", 1)) for name in models}
    samples: dict[str, list[float]] = {name: [] for name in models}
    rounds = 0
    while True:
        for name, step in steps.items():
            start = time.process_time()
            for _ in range(block[name]):
                step()
            if rounds:  # the first round warms up
                samples[name].append((time.process_time() - start) / block[name])
        rounds += 1
        spent = sum(samples["standard"])
        if rounds > repeats and spent >= min_seconds:
            break
    return {name: statistics.median(s) for name, s in samples.items()}


def merged_with_earlier(
    path: Path, this_run: dict[str, Any], rows: list[dict[str, Any]], only: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The machines and rows to write: with ``--only``, an existing file's rows for the cases
    not measured now are kept (in ``CASES`` order), and its machines with them."""
    if not only or not path.is_file():
        return [this_run], rows
    earlier = json.loads(path.read_text())
    machines = earlier.get("machine") or []
    machines = [machines] if isinstance(machines, dict) else list(machines)
    measured = {(row["architecture"], row["preset"]) for row in rows}
    kept = [row for row in earlier.get("rows", [])
            if (row["architecture"], row["preset"]) not in measured]
    order = {(case[0], case[1]): i for i, case in enumerate(CASES)}
    merged = sorted(kept + rows, key=lambda r: order.get((r["architecture"], r["preset"]), 1e9))
    return machines + [this_run], merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="architecture name prefix")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds, at least")
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="more rounds until the standard steps add up to this much CPU time")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "training_step.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started_on = machine(1)
    today = time.strftime("%Y-%m-%d")

    rows = []
    for architecture, preset, kind, form in CASES:
        if not architecture.startswith(args.only):
            continue
        inputs, loss_fn = batch_and_loss(kind, torch.Generator().manual_seed(0))
        models, options = build_variants(architecture, preset, kind, form)
        seconds = time_case(models, options, inputs, loss_fn, args.repeats, args.min_seconds)
        row: dict[str, Any] = {"architecture": architecture, "preset": preset,
                               "measured": today}
        for name, model in models.items():
            row["parameters_" + name] = sum(p.numel() for p in model.parameters())
            row[name] = round(seconds[name], 4)
            if name != "standard":
                row["options_" + name] = options[name]
                row["ratio_" + name] = round(seconds[name] / seconds["standard"], 2)
        if "relaxed" not in models:
            row["relaxed"] = None
        rows.append(row)
        ratios = "   ".join(f"{name} {row[name]:.3f} s ({row['ratio_' + name]:.2f}x)"
                            for name in models if name != "standard")
        print(f"{architecture:12s} {preset:11s} standard {row['standard']:.3f} s   {ratios}",
              flush=True)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    this_run = {**started_on, "load_average_at_end": load_end, "date": today,
                "only": args.only or None}
    machines, rows = merged_with_earlier(args.output, this_run, rows, args.only)
    args.output.write_text(json.dumps({
        "machine": machines,
        "unit": "CPU seconds per step (median over rounds)",
        "fast_options": FAST,
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
