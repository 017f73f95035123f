"""What a Vector Neuron training step on ModelNet40 costs on a CPU, and what the cost depends on.

A step is forward, cross-entropy (+ 0.01 x the relaxation regulariser where relaxed), backward
and an Adam step on a batch of random clouds, float32, model in training mode, ``small`` presets.
Times are CPU seconds of this process (``time.process_time``; with two threads it counts both,
so wall seconds are recorded too). Minutes per ModelNet40 epoch are seconds per step times
``ceil(9354 / batch)`` steps (the recipes' training split: 9843 shapes less the 5 % validation
hold-out) over 60. Sections:

- ``n_points``: 32 clouds of 128, 256, 300 (the recipes), 512 and 1024 points (the paper), one
  thread (1024 with fewer rounds);
- ``edge_share``: VN-DGCNN, 32 clouds of 300 points: its kNN graphs (forward only; they carry no
  gradient) and its edge convolutions (linear maps, and the edge tail: gather, batch norm,
  LeakyReLU, mean over the neighbours; forward and backward) timed alone on the inputs of a
  real forward pass, as shares of the whole step;
- ``batch_size``: 16, 32 and 64 clouds of 300 points (milliseconds per cloud);
- ``threads``: 1 and 2 intra-op threads, 32 clouds of 300 points. On a machine whose cores
  other jobs keep busy, two threads are pessimistic, and can be pathological (every one of the
  thousands of small parallel regions of a step waits for a thread the scheduler has not run):
  the two-thread variants get one step and no warm-up, and the load averages at the start and
  end of that step are recorded beside them;
- ``relaxed``: ``relax(model, "cr", level=1, form="lowrank", penalty_every=4)`` (the cheaper
  point-cloud options of ``bench_training_step.py``) against the standard model, 32 clouds of
  300 points; a sample of the relaxed variant is 4 consecutive steps (one with the
  regulariser's violation term), averaged.

The variants of a section are timed round-robin (one sample of each per round, after a warm-up
round), so load from other processes falls on all of them alike; medians over rounds.

    python benchmarks/bench_vn_cost.py            # the full run (a few CPU minutes)
    python benchmarks/bench_vn_cost.py --quick    # tiny sizes, one round: a check that it runs
    python benchmarks/bench_vn_cost.py --sections relaxed   # re-time one section

Prints markdown tables and writes ``benchmarks/results/vn_cost.json`` (``--output`` elsewhere;
``--quick`` writes only where ``--output`` says). With ``--sections``, the other sections'
results already in the file are kept, and the run's machine record is stored with each
re-timed section (``machine``) rather than replacing the file's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine  # noqa: E402

ARCHITECTURES = ("vn-pointnet", "vn-dgcnn")
PRESET = "small"
TRAIN_CLOUDS = 9354
RELAXED_OPTIONS = {"form": "lowrank", "penalty_every": 4}
LAMBDA_REG = 0.01
RESULTS = ROOT / "benchmarks" / "results" / "vn_cost.json"
SECTIONS = ("n_points", "edge_share", "batch_size", "threads", "relaxed")


@dataclass(frozen=True)
class Config:
    """One timed variant: a model and the batch it trains on."""

    architecture: str
    n_points: int = 300
    batch: int = 32
    threads: int = 1
    relaxed: bool = False


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def build(config: Config) -> torch.nn.Module:
    """The configuration's model, built with a fixed seed, in training mode."""
    import zoo
    from zoo import relax

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = zoo.create_model(config.architecture, PRESET).train()
    if config.relaxed:
        relax.relax(model, "cr", level=1.0, **RELAXED_OPTIONS)
    return model


def make_step(config: Config) -> tuple[Callable[[], None], torch.nn.Module, torch.Tensor]:
    """A training step of the configuration on fixed random clouds, its model and clouds."""
    from zoo import relax

    model = build(config)
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(config.batch, config.n_points, 3, generator=generator)
    labels = torch.randint(0, 40, (config.batch,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(points)["logits"], labels)
        (loss + LAMBDA_REG * relax.relaxation_penalty(model)["total"]).backward()
        optimizer.step()

    return step, model, points


def time_configs(
    configs: list[Config], rounds: int, warmup: bool = True
) -> list[dict[str, Any]]:
    """Median CPU and wall seconds per step of every configuration, timed round-robin (after
    an untimed round with ``warmup``)."""
    steps = {config: make_step(config)[0] for config in configs}
    samples: dict[Config, list[tuple[float, float]]] = {config: [] for config in configs}
    for round_ in range(rounds + int(warmup)):
        for config, step in steps.items():
            torch.set_num_threads(config.threads)
            block = RELAXED_OPTIONS["penalty_every"] if config.relaxed else 1
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(block):
                step()
            if round_ >= int(warmup):
                samples[config].append(((time.process_time() - cpu) / block,
                                        (time.perf_counter() - wall) / block))
    torch.set_num_threads(1)
    rows = []
    for config, values in samples.items():
        cpu_s = statistics.median(v[0] for v in values)
        wall_s = statistics.median(v[1] for v in values)
        steps_per_epoch = math.ceil(TRAIN_CLOUDS / config.batch)
        rows.append({
            **asdict(config),
            "cpu_s_per_step": round(cpu_s, 4),
            "wall_s_per_step": round(wall_s, 4),
            "cpu_ms_per_cloud": round(1e3 * cpu_s / config.batch, 2),
            "min_per_epoch_cpu": round(cpu_s * steps_per_epoch / 60, 2),
            "min_per_epoch_wall": round(wall_s * steps_per_epoch / 60, 2),
            "rounds": len(values),
        })
    return rows


def median_cpu_seconds(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def dgcnn_edge_share(n_points: int, batch: int, rounds: int) -> dict[str, Any]:
    """CPU seconds of VN-DGCNN's kNN graphs and edge convolutions, alone, and of the step."""
    from zoo.models.vn_kernels import knn

    config = Config("vn-dgcnn", n_points, batch)
    step, model, points = make_step(config)
    inputs: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = []
    handles = [conv.register_forward_pre_hook(
        lambda conv, args: inputs.append((conv, args[0].detach(), args[1])))
        for conv in model.convs]
    model(points)
    for handle in handles:
        handle.remove()

    def forward_backward(fn: Callable[[torch.Tensor], Any], v: torch.Tensor,
                         needs_grad: bool) -> Callable[[], None]:
        def run() -> None:
            outputs = fn(v.clone().requires_grad_(needs_grad))
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
        return run

    layers = []
    for i, (conv, v, idx) in enumerate(inputs):
        needs_grad = i > 0  # the first layer reads the clouds, which need no gradient
        # Each layer's graph is the kNN of its input features (channel-major flattening).
        knn_s = median_cpu_seconds(
            lambda v=v: knn(v.transpose(-1, -2).flatten(-2), model.k), rounds)
        conv_s = median_cpu_seconds(
            forward_backward(lambda x, conv=conv, idx=idx: conv(x, idx), v, needs_grad), rounds)
        linear_s = median_cpu_seconds(forward_backward(
            lambda x, conv=conv: (conv.map_to_feat.component_major(x),
                                  conv.map_to_dir.component_major(x)), v, needs_grad), rounds)
        layers.append({"layer": i, "in_channels": v.shape[-1], "knn_s": round(knn_s, 4),
                       "edge_conv_s": round(conv_s, 4), "linear_maps_s": round(linear_s, 4)})
    step_s = median_cpu_seconds(step, rounds)
    knn_s = sum(layer["knn_s"] for layer in layers)
    conv_s = sum(layer["edge_conv_s"] for layer in layers)
    linear_s = sum(layer["linear_maps_s"] for layer in layers)
    return {
        "architecture": "vn-dgcnn", "preset": PRESET, "n_points": n_points, "batch": batch,
        "k": model.k, "step_s": round(step_s, 4), "knn_s": round(knn_s, 4),
        "edge_conv_s": round(conv_s, 4), "edge_linear_maps_s": round(linear_s, 4),
        "edge_tail_s": round(conv_s - linear_s, 4),
        "knn_share": round(knn_s / step_s, 3), "edge_conv_share": round(conv_s / step_s, 3),
        "knn_plus_edge_share": round((knn_s + conv_s) / step_s, 3), "layers": layers,
    }


def print_tables(results: dict[str, Any]) -> None:
    print(f"\n{results['machine']['cpu']}, {results['settings']['preset']} presets, float32; "
          f"load average {results['machine']['load_average_at_start']} at start, "
          f"{results['machine']['load_average_at_end']} at end\n")
    print("| section | architecture | points | batch | threads | variant | CPU s/step | "
          "wall s/step | CPU ms/cloud | min/epoch (CPU) | min/epoch (wall) |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for section in ("n_points", "batch_size", "threads", "relaxed"):
        for row in results.get(section, {}).get("rows", []):
            variant = "relaxed lowrank/4" if row["relaxed"] else "standard"
            print(f"| {section} | {row['architecture']} | {row['n_points']} | {row['batch']} | "
                  f"{row['threads']} | {variant} | {row['cpu_s_per_step']:.3f} | "
                  f"{row['wall_s_per_step']:.3f} | {row['cpu_ms_per_cloud']:.1f} | "
                  f"{row['min_per_epoch_cpu']:.1f} | {row['min_per_epoch_wall']:.1f} |")
    share = results.get("edge_share")
    if share is None:
        return
    print(f"\nVN-DGCNN, {share['batch']} clouds x {share['n_points']} points, k = {share['k']}: "
          f"step {share['step_s']:.3f} CPU s\n")
    print("| layer | in channels | kNN s | edge conv s (fwd+bwd) | of which linear maps s |")
    print("|---:|---:|---:|---:|---:|")
    for layer in share["layers"]:
        print(f"| {layer['layer']} | {layer['in_channels']} | {layer['knn_s']:.3f} | "
              f"{layer['edge_conv_s']:.3f} | {layer['linear_maps_s']:.3f} |")
    print(f"| all | | {share['knn_s']:.3f} ({share['knn_share']:.0%}) | "
          f"{share['edge_conv_s']:.3f} ({share['edge_conv_share']:.0%}) | "
          f"{share['edge_linear_maps_s']:.3f} |")
    print(f"\nkNN + edge convolutions: {share['knn_plus_edge_share']:.0%} of the step")


def merge_sections(
    results: dict[str, Any], sections: set[str], output: Path | None
) -> dict[str, Any]:
    """The results already in ``output`` with the re-timed ``sections`` replaced; each of those
    records this run's machine and settings (the file's own are those of the other sections)."""
    previous = json.loads(output.read_text()) if output is not None and output.exists() else {}
    merged = {**previous}
    merged.setdefault("machine", results["machine"])
    merged.setdefault("settings", results["settings"])
    for section in sections:
        merged[section] = {**results[section], "machine": results["machine"],
                           "settings": results["settings"]}
    return merged


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny clouds and batches, one round: a check that every section runs")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant")
    parser.add_argument("--rounds-1024", type=int, default=2,
                        help="timed rounds at 1024 points (the slowest steps)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="sections to time (default: all); the others are kept from the "
                             "results file")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"results file (default {RESULTS.relative_to(ROOT)}; "
                             "none with --quick)")
    args = parser.parse_args(argv)
    output = args.output or (None if args.quick else RESULTS)
    if args.quick:
        sweep, large, batches, n, rounds, rounds_large = (32, 48), (64,), (4, 8), 48, 1, 1
    else:
        sweep, large, batches, n = (128, 256, 300, 512), (1024,), (16, 32, 64), 300
        rounds, rounds_large = args.rounds, args.rounds_1024
    batch = batches[len(batches) // 2]
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": machine(1),
        "settings": {"preset": PRESET, "dtype": "float32", "optimizer": "Adam lr 1e-3",
                     "loss": "cross-entropy (+ 0.01 x regulariser)",
                     "train_clouds": TRAIN_CLOUDS, "relaxed_options": RELAXED_OPTIONS,
                     "rounds": rounds, "rounds_1024": rounds_large, "quick": args.quick,
                     "unit": "CPU seconds per step (median over rounds)"},
    }
    sections = set(args.sections)
    if "n_points" in sections:
        print("n_points ...", flush=True)
        rows = time_configs([Config(a, p, batch) for p in sweep for a in ARCHITECTURES], rounds)
        rows += time_configs([Config(a, p, batch) for p in large for a in ARCHITECTURES],
                             rounds_large)
        results["n_points"] = {"rows": rows}
    if "edge_share" in sections:
        print("edge_share ...", flush=True)
        results["edge_share"] = dgcnn_edge_share(n, batch, rounds)
    if "batch_size" in sections:
        print("batch_size ...", flush=True)
        results["batch_size"] = {"rows": time_configs(
            [Config(a, n, b) for b in batches for a in ARCHITECTURES], rounds)}
    if "threads" in sections:
        print("threads ...", flush=True)
        rows = time_configs([Config(a, n, batch) for a in ARCHITECTURES], rounds)
        start = load_average()
        rows += time_configs([Config(a, n, batch, threads=2) for a in ARCHITECTURES], 1, False)
        results["threads"] = {"rows": rows, "two_threads_load_average_at_start": start,
                              "two_threads_load_average_at_end": load_average(),
                              "two_threads": "one step, no warm-up (see the module docstring)"}
    if "relaxed" in sections:
        print("relaxed ...", flush=True)
        results["relaxed"] = {"rows": time_configs(
            [Config(a, n, batch, relaxed=r) for a in ARCHITECTURES for r in (False, True)],
            rounds)}
        for a in ARCHITECTURES:
            standard, relaxed = (row["cpu_s_per_step"] for row in results["relaxed"]["rows"]
                                 if row["architecture"] == a)
            results["relaxed"][f"{a}_cpu_ratio"] = round(relaxed / standard, 3)
    results["machine"]["load_average_at_end"] = load_average()
    if sections != set(SECTIONS):
        results = merge_sections(results, sections, output)
    print_tables(results)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {output}")
    return results


if __name__ == "__main__":
    main()
