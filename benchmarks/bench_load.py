"""How much ``zoo.load`` costs over loading a checkpoint by hand.

By hand: read ``config.json``, ``zoo.create_model(architecture, model_args=...)``,
``safetensors.torch.load_file``, ``load_state_dict(strict=True)``, ``eval()``. ``zoo.load`` adds
name resolution, the sha256 of every file, config validation and the version check. Goal: at most
1.2x.

- cold: the first call in a fresh interpreter (torch and the architectures already imported, so
  the zoo's own lazy imports count against it), one run each;
- warm: the median of repeated calls in one process.

Usage::

    python benchmarks/bench_load.py                       # equiformer 'small' if registered
    python benchmarks/bench_load.py --architecture toy-linear --preset tiny \\
        --model-args '{"n_in": 256, "hidden": 2048, "n_out": 256}'

Writes ``benchmarks/results/load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Timed in a fresh interpreter; prints the seconds the call took.
_COLD = """
import json, sys, time
sys.path[:0] = {paths!r}
import torch
import zoo
zoo.list_architectures()  # imports (and registers) every architecture file
{setup}
folder = {folder!r}
t0 = time.perf_counter()
{call}
print(time.perf_counter() - t0)
"""

_BY_HAND = """
from pathlib import Path
from safetensors.torch import load_file
import zoo
config = json.loads((Path(folder) / "config.json").read_text())
model = zoo.create_model(config["architecture"], model_args=config["model_args"])
model.load_state_dict(load_file(Path(folder) / "model.safetensors"), strict=True)
model.eval()
"""

_ZOO_LOAD = """
import zoo
model = zoo.load(folder)
"""


def _setup_code(architecture: str) -> str:
    # The test architecture lives with the tests; register it when it is the one benchmarked.
    if architecture == "toy-linear":
        return f"sys.path.insert(0, {str(ROOT / 'tests')!r}); import toy_arch"
    return ""


def _cold(folder: Path, call: str, setup: str) -> float:
    code = _COLD.format(paths=[str(ROOT)], setup=setup, folder=str(folder), call=call)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def _warm(folder: Path, call: str, repeats: int) -> float:
    namespace = {"json": json, "folder": str(folder)}
    exec(call, namespace)  # the first call imports what it needs
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        exec(call, namespace)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default=None, help="default: equiformer, else toy")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--model-args", default=None, help="JSON overrides of the preset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "load.json"
    )
    args = parser.parse_args()

    import torch

    import zoo

    architecture = args.architecture
    if architecture is None:
        architecture = "equiformer" if "equiformer" in zoo.list_architectures() else "toy-linear"
    setup = _setup_code(architecture)
    if setup:
        exec(setup, {"sys": sys})
    overrides = json.loads(args.model_args) if args.model_args else {}
    model = zoo.create_model(architecture, args.preset, **overrides)
    n_params = sum(p.numel() for p in model.parameters())

    with tempfile.TemporaryDirectory() as tmp:
        folder = zoo.save_pretrained(model, Path(tmp) / "model")
        size = (folder / "model.safetensors").stat().st_size
        rows = {
            "cold": {
                "by_hand_s": _cold(folder, _BY_HAND, setup),
                "zoo_load_s": _cold(folder, _ZOO_LOAD, setup),
            },
            "warm": {
                "by_hand_s": _warm(folder, _BY_HAND, args.repeats),
                "zoo_load_s": _warm(folder, _ZOO_LOAD, args.repeats),
            },
        }
    for row in rows.values():
        row["ratio"] = row["zoo_load_s"] / row["by_hand_s"]

    print(
        f"{architecture} ({args.preset or 'default preset'}): {n_params} parameters, "
        f"{size / 1e6:.2f} MB of weights"
    )
    print(f"{'':6} {'by hand (ms)':>13} {'zoo.load (ms)':>14} {'ratio':>7}")
    for kind, row in rows.items():
        print(
            f"{kind:6} {row['by_hand_s'] * 1e3:13.1f} {row['zoo_load_s'] * 1e3:14.1f} "
            f"{row['ratio']:7.2f}"
        )
    goal = max(row["ratio"] for row in rows.values()) <= 1.2
    print(f"goal <= 1.2x: {'met' if goal else 'NOT met'}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "architecture": architecture,
        "preset": args.preset,
        "model_args_overrides": overrides,
        "parameters": n_params,
        "weights_bytes": size,
        "repeats_warm": args.repeats,
        **rows,
        "goal_ratio": 1.2,
        "goal_met": goal,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    args.output.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
