"""ACE's level with and without augmented-Lagrangian damping on SEGNN N-body (issue 17).

Trains the published recipe ``segnn-nbody.ace`` (80 epochs, seed 0) with
``relaxation.controller.damping: critical``, once at the paper's step sizes (9e-4 / 8e-4) and once
at 2e-2 / 2e-2 (the paper's ~8 cycles of sqrt(eta_p eta_d) over its 60,000 steps, squeezed into our
2,400), then writes per-epoch traces of layer 0 (level, ||s g|| / ||f_e||, Lie term, validation
MSE) and the final numbers to ``benchmarks/results/ace_damping_nbody.json``. The undamped
reference is the published ``segnn-nbody.ace`` (its card: 3 seeds).

    python benchmarks/ace_damping_nbody.py --work-dir /work/runs/nbody-ace   # ~15 CPU-min a run

Runs whose folder already holds an export are summarised, not retrained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "ace_damping_nbody.json"
VARIANTS = {
    "paper-steps-critical": {"relaxation.controller.damping": "critical"},
    "steps-2e-2-critical": {"relaxation.controller.damping": "critical",
                            "relaxation.controller.eta_p": 0.02,
                            "relaxation.controller.eta_d": 0.02},
}
TRACES = ("level/0", "branch/0", "lie/0", "val/mse")


def _nested(overrides: dict[str, object]) -> dict:
    out: dict = {}
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/work/runs/nbody-ace"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from zoo.train.export import read_metrics
    from zoo.train.run import train

    results: dict = {"recipe": "segnn-nbody.ace", "seed": 0, "runs": {}}
    for name, overrides in VARIANTS.items():
        run = args.work_dir / name
        if not (run / "export" / "config.json").is_file():
            train("segnn-nbody.ace", run, progress=False,
                  overrides={"seed": 0, **_nested(overrides)})
        config = json.loads((run / "export" / "config.json").read_text())
        metrics = read_metrics(run / "logs" / "metrics.csv")
        results["runs"][name] = {
            "overrides": overrides,
            "test_mse": config["metrics"]["mse"],
            "final_levels": config["relaxation"]["training"]["final_levels"],
            "traces": {key: [[e, float(f"{v:.4g}")] for e, v in metrics.get(key, [])]
                       for key in TRACES},
        }
        print(f"{name}: test MSE {config['metrics']['mse']:.5f}, final level 0 "
              f"{config['relaxation']['training']['final_levels']['level/0']:.3g}")
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
