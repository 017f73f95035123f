"""Cost of relaxation: training step of relaxed vs projected models, inference after projection.

For every registered architecture (its ``small`` preset if it has one, else ``tiny``), on a
realistic input (Equiformer: a batch of 8 random 21-atom molecules, H/C/O, positions with a
1.5 Å spread; other architectures: their own ``example_inputs``), float32:

- training step (forward, MSE loss on every output against fixed random targets, backward,
  Adam step) of the relaxed model (method ``cr`` at level 1 with the CR regulariser in the loss;
  branch form ``mlp`` as in the paper, and ``linear``) against the projected model;
- inference (forward in eval mode; for Equiformer energy and forces) of the projected model
  against a never-relaxed model built with the same seed: projection must cost nothing.

Variants are timed round-robin (one step of each in turn, after warm-up), so that load from
other processes on a shared machine falls on all of them alike; medians are reported. Prints a
table and writes ``benchmarks/results/relax.json``::

    python benchmarks/bench_relax.py                 # default: 3 warm-up, 9 timed rounds
    python benchmarks/bench_relax.py --repeats 3     # quicker
"""

from __future__ import annotations

import argparse
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
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from _machine import machine  # noqa: E402 - benchmarks/ is on sys.path as a script

import zoo  # noqa: E402
from zoo import relax  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "relax.json"
LAMBDA_REG = 0.01
LEARNING_RATE = 5e-4


# --------------------------------------------------------------------------- inputs


def equiformer_inputs(n_molecules: int = 8, n_atoms: int = 21, seed: int = 0) -> Any:
    """A PyG batch of random molecules of real size: H/C/O, positions ~ N(0, 1.5 Å)."""
    from torch_geometric.data import Batch, Data

    generator = torch.Generator().manual_seed(seed)
    elements = torch.tensor([1, 6, 8])
    graphs = []
    for _ in range(n_molecules):
        z = elements[torch.randint(0, 3, (n_atoms,), generator=generator)]
        pos = torch.randn(n_atoms, 3, generator=generator, dtype=torch.float64) * 1.5
        graphs.append(Data(z=z, pos=pos.to(torch.float32)))
    return Batch.from_data_list(graphs)


# Architecture name -> (input builder, description); others use their ``example_inputs``.
INPUTS: dict[str, tuple[Callable[[], Any], str]] = {
    "equiformer": (equiformer_inputs, "8 random 21-atom molecules (H/C/O, std 1.5 Å)"),
}


def inputs_for(architecture: str, model: zoo.models.ZooModel) -> tuple[Any, str]:
    if architecture in INPUTS:
        build, description = INPUTS[architecture]
        return build(), description
    return model.example_inputs(torch.Generator().manual_seed(0), torch.float32), "example_inputs"


# --------------------------------------------------------------------------- models


def preset_for(architecture: str) -> str:
    return "small" if "small" in zoo.list_presets(architecture) else "tiny"


def build(architecture: str, preset: str, seed: int = 0) -> zoo.models.ZooModel:
    """The model with reproducible weights (the same for every variant), float32."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return zoo.create_model(architecture, preset).to(torch.float32)


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def as_dict(outputs: Any) -> dict[str, torch.Tensor]:
    return {"output": outputs} if isinstance(outputs, torch.Tensor) else dict(outputs)


def make_train_step(model: zoo.models.ZooModel, inputs: Any, relaxed: bool) -> Callable[[], None]:
    """One training step: forward, MSE on every output, (+ CR regulariser), backward, Adam."""
    model.train()
    with torch.no_grad():
        shapes = {k: (v.shape, v.dtype) for k, v in as_dict(model(inputs)).items()}
    generator = torch.Generator().manual_seed(1)
    targets = {k: torch.randn(s, generator=generator, dtype=torch.float64).to(d)
               for k, (s, d) in shapes.items()}
    levels = {id(p) for p in relax.level_parameters(model)}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in levels]
    optimizer = torch.optim.Adam(weights, lr=LEARNING_RATE)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = as_dict(model(inputs))
        loss = sum((outputs[k] - targets[k]).square().mean() for k in targets)
        if relaxed:
            loss = loss + LAMBDA_REG * relax.relaxation_penalty(model)["total"]
        loss.backward()
        optimizer.step()

    return step


def make_inference(model: zoo.models.ZooModel, inputs: Any) -> Callable[[], None]:
    model.eval()

    def infer() -> None:
        outputs = as_dict(model(inputs))
        for value in outputs.values():
            value.sum().item()  # wait for the result

    return infer


def time_round_robin(
    variants: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Median and min seconds per call of every variant, calling them in turn each round."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(s), "min_s": min(s), "timed": len(s)}
        for name, s in seconds.items()
    }


def bench_architecture(architecture: str, warmup: int, repeats: int) -> dict[str, Any]:
    preset = preset_for(architecture)
    never_relaxed = build(architecture, preset)
    inputs, description = inputs_for(architecture, never_relaxed)

    relaxed_models = {}
    for form in ("mlp", "linear"):
        model = build(architecture, preset)
        relax.relax(model, "cr", form=form)
        relax.set_levels(model, 1.0)
        relaxed_models[form] = model
    projected = build(architecture, preset)
    relax.relax(projected, "cr", form="mlp")
    relax.project(projected)

    train = time_round_robin(
        {
            "relaxed cr/mlp": make_train_step(relaxed_models["mlp"], inputs, relaxed=True),
            "relaxed cr/linear": make_train_step(relaxed_models["linear"], inputs, relaxed=True),
            "projected": make_train_step(projected, inputs, relaxed=False),
        },
        warmup,
        repeats,
    )
    # A fresh projected model for inference (the one above has taken Adam steps).
    projected_eval = build(architecture, preset)
    relax.relax(projected_eval, "cr", form="mlp")
    relax.project(projected_eval)
    inference = time_round_robin(
        {
            "projected": make_inference(projected_eval, inputs),
            "never relaxed": make_inference(never_relaxed, inputs),
        },
        warmup,
        repeats,
    )
    base_train = train["projected"]["median_s"]
    return {
        "preset": preset,
        "inputs": description,
        "parameters": {
            "never relaxed": n_parameters(never_relaxed),
            "projected": n_parameters(projected_eval),
            "relaxed cr/mlp": n_parameters(relaxed_models["mlp"]),
            "relaxed cr/linear": n_parameters(relaxed_models["linear"]),
        },
        "train_step": train,
        "inference": inference,
        "ratios": {
            "train relaxed cr/mlp / projected": train["relaxed cr/mlp"]["median_s"] / base_train,
            "train relaxed cr/linear / projected":
                train["relaxed cr/linear"]["median_s"] / base_train,
            "inference projected / never relaxed":
                inference["projected"]["median_s"] / inference["never relaxed"]["median_s"],
        },
    }


# --------------------------------------------------------------------------- report


def print_table(results: dict[str, Any]) -> None:
    settings = results["settings"]
    print(f"\nfloat32, {results['machine']['torch_threads']} thread(s), "
          f"{results['machine']['cpu']}; median of {settings['repeats']} after "
          f"{settings['warmup']} warm-up")
    header = (f"{'architecture':<14}{'preset':<7}{'variant':<20}{'params':>10}{'s/call':>9}"
              f"{'ratio':>7}")
    for name, row in results["architectures"].items():
        print(f"\n{name} on {row['inputs']}")
        print(header)
        print("training step")
        base = row["train_step"]["projected"]["median_s"]
        for variant, timing in row["train_step"].items():
            print(f"{name:<14}{row['preset']:<7}{variant:<20}{row['parameters'][variant]:>10,}"
                  f"{timing['median_s']:>9.3f}{timing['median_s'] / base:>7.2f}")
        print("inference")
        base = row["inference"]["never relaxed"]["median_s"]
        for variant, timing in row["inference"].items():
            print(f"{name:<14}{row['preset']:<7}{variant:<20}{row['parameters'][variant]:>10,}"
                  f"{timing['median_s']:>9.3f}{timing['median_s'] / base:>7.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architectures", default="*", help="shell pattern of names")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: small kernels on a shared CPU)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": machine(args.threads),
        "settings": {"dtype": "float32", "warmup": args.warmup, "repeats": args.repeats,
                     "method": "cr", "level": 1.0, "lambda_reg": LAMBDA_REG,
                     "optimizer": f"Adam lr {LEARNING_RATE}", "loss": "MSE on every output"},
        "architectures": {},
    }
    for architecture in zoo.list_architectures(args.architectures):
        print(f"benchmarking {architecture} ...", flush=True)
        results["architectures"][architecture] = bench_architecture(
            architecture, args.warmup, args.repeats
        )
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
