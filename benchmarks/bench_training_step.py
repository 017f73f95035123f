"""CPU cost of one training step per architecture and preset, standard and relaxed.

A step is forward, loss (+ the CR regulariser when relaxed, linear branches at level 1) and
backward on the batch each recipe trains with: N-body 100 systems of 5 particles, ModelNet40 32
clouds of 300 points, smoke plume 16 inputs of 10 x 2 x 64 x 64 (one predicted frame; a training
step rolls out 6). CPU seconds on one thread, median over ``--repeats`` (after one warm-up).
This is what decides which recipes a CPU session can train (see the session notes).

    python benchmarks/bench_training_step.py                  # every case
    python benchmarks/bench_training_step.py --only vn-       # a subset, by name prefix

Writes ``benchmarks/results/training_step.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine  # noqa: E402

CASES = [  # (architecture, preset, kind)
    ("egnn", "nbody", "nbody"),
    ("segnn", "nbody", "nbody"),
    ("vn-pointnet", "small", "points"),
    ("vn-dgcnn", "small", "points"),
    ("vn-pointnet", "modelnet40", "points"),
    ("vn-dgcnn", "modelnet40", "points"),
    ("smoke-conv", "smoke", "smoke"),
    ("smoke-equiv", "smoke", "smoke"),
]


def batch_and_loss(kind: str, generator: torch.Generator):
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
    inputs = torch.randn(16, 20, 64, 64, generator=generator)
    target = torch.randn(16, 2, 64, 64, generator=generator)

    def smoke_loss(out):
        out = out["output"] if isinstance(out, dict) else out
        return (out - target).pow(2).mean()

    return inputs, smoke_loss


def step_seconds(model, inputs, loss_fn, repeats: int) -> float:
    """Median CPU seconds of forward + loss + regulariser + backward."""
    from zoo import relax

    times = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.process_time()
        loss = loss_fn(model(inputs)) + 0.01 * relax.relaxation_penalty(model)["total"]
        loss.backward()
        if i:  # the first call warms up
            times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="architecture name prefix")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import zoo
    from zoo import relax

    rows = []
    for architecture, preset, kind in CASES:
        if not architecture.startswith(args.only):
            continue
        generator = torch.Generator().manual_seed(0)
        inputs, loss_fn = batch_and_loss(kind, generator)
        row = {"architecture": architecture, "preset": preset}
        for mode in ("standard", "relaxed"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = zoo.create_model(architecture, preset).train()
            if mode == "relaxed":
                if not model.relaxation_sites():
                    row[mode] = None
                    continue
                form = "conv" if kind == "smoke" else "linear"
                relax.relax(model, "cr", form=form, level=1.0)
            row["parameters_" + mode] = sum(p.numel() for p in model.parameters())
            row[mode] = round(step_seconds(model, inputs, loss_fn, args.repeats), 3)
        rows.append(row)
        relaxed = "–" if row["relaxed"] is None else f"{row['relaxed']:.3f}"
        print(f"{architecture:12s} {preset:11s} standard {row['standard']:8.3f} s   "
              f"relaxed {relaxed:>8s} s   params {row['parameters_standard']:,}", flush=True)
    out = ROOT / "benchmarks" / "results" / "training_step.json"
    out.write_text(json.dumps({"machine": machine(1), "unit": "CPU seconds per step",
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
