"""Which recipe levers buy aspirin accuracy per CPU-second (issue 13), on validation.

Each lever is a zoo recipe in ``benchmarks/recipes/aspirin-levers/`` (the same 950 / 50 split as
``bench_accuracy_per_cpu.py``); each is trained by ``zoo train`` into ``<work-dir>/<lever>``, one
torch thread, and read back from its ``logs/metrics.csv``: the validation force and energy MAE of
the latest epoch finished at or before each CPU-second mark (the trainer's own process CPU time,
``time/cpu_s``). Selection happens here, on the 50 validation frames; the test frames are left to
``bench_accuracy_per_cpu.py``, which runs the chosen recipe against MACE.

    python benchmarks/accuracy_levers.py --work-dir /work/runs/lever --train   # ~30 CPU-min each
    python benchmarks/accuracy_levers.py --work-dir /work/runs/lever           # summarise only

A run stopped early (a lever clearly behind) is summarised up to its last epoch, and its
later marks are left empty. Writes ``benchmarks/results/accuracy_levers.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(BENCH))

from _machine import machine  # noqa: E402 - benchmarks/ is on sys.path as a script

LEVERS = BENCH / "recipes" / "aspirin-levers"
RESULTS = BENCH / "results" / "accuracy_levers.json"
FORCES, ENERGY, CPU = "val/forces_mae_mev", "val/energy_mae_mev", "time/cpu_s"


def epochs_of(metrics_csv: Path) -> list[dict[str, float]]:
    """``[{"epoch", "cpu_seconds", "forces_mae", "energy_mae"}, ...]`` of the epochs that were
    validated, in order (Lightning writes one row per logging call, so rows are merged)."""
    merged: dict[int, dict[str, float]] = {}
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            values = {k: float(v) for k, v in row.items() if v and k not in ("step", "epoch")}
            merged.setdefault(int(float(row["epoch"])), {}).update(values)
    return [{"epoch": e, "cpu_seconds": m[CPU], "forces_mae": m[FORCES], "energy_mae": m[ENERGY]}
            for e, m in sorted(merged.items()) if {CPU, FORCES, ENERGY} <= m.keys()]


def at_marks(
    epochs: list[dict[str, float]], marks: list[float], finished: bool
) -> list[dict[str, Any] | None]:
    """The latest epoch finished at or before each mark: ``None`` before the first, and, for a
    run stopped early, at marks well past its last epoch (a finished run's final model stands
    at every later mark, as it would in a budgeted benchmark)."""
    out: list[dict[str, Any] | None] = []
    end = epochs[-1]["cpu_seconds"] if epochs else 0.0
    for mark in marks:
        done = [e for e in epochs if e["cpu_seconds"] <= mark]
        stopped_before = not finished and end < mark * 0.9
        out.append(None if not done or stopped_before else done[-1])
    return out


def train(recipe: Path, folder: Path, threads: int) -> None:
    """``zoo train`` the lever into ``folder`` (resumed where a checkpoint is there)."""
    command = ["zoo", "train", str(recipe), "--output", str(folder), "--threads", str(threads),
               "--no-progress"]
    if (folder / "checkpoints" / "last.ckpt").exists():
        command.append("--resume")
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def markdown(results: dict[str, Any]) -> str:
    marks = results["marks_cpu_s"]
    lines = ["| lever | " + " | ".join(f"{m / 60:g} CPU-min" for m in marks) + " |",
             "|---|" + "---|" * len(marks)]
    for name, lever in results["levers"].items():
        cells = [("–" if p is None else
                  f"{p['forces_mae']:.1f} / {p['energy_mae']:.0f} (epoch {p['epoch']})")
                 for p in lever["at_marks"]]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="one run folder per lever, named as its recipe")
    parser.add_argument("--levers", nargs="*", help="recipe stems (default: all)")
    parser.add_argument("--train", action="store_true", help="train levers without a run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--marks", default="300,600,900,1200,1500,1800",
                        help="comma-separated CPU-second marks")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON (the .md beside it)")
    args = parser.parse_args(argv)
    marks = [float(m) for m in args.marks.split(",")]
    names = args.levers or sorted(p.stem for p in LEVERS.glob("*.yaml"))
    results: dict[str, Any] = {
        "marks_cpu_s": marks, "split": "rMD17 aspirin, 950 train / 50 validation (seed 0)",
        "metric": "validation force MAE (meV/Å) / energy MAE (meV) of the EMA weights, latest "
                  "epoch at or before each mark of the trainer's process CPU time",
        "machine": machine(args.threads), "levers": {},
    }
    for name in names:
        recipe, folder = LEVERS / f"{name}.yaml", args.work_dir / name
        if args.train and not (folder / "export").exists():
            train(recipe, folder, args.threads)
        metrics = folder / "logs" / "metrics.csv"
        if not metrics.exists():
            print(f"{name}: no run in {folder}, skipped", file=sys.stderr)
            continue
        epochs = epochs_of(metrics)
        finished = (folder / "export").exists()
        results["levers"][name] = {
            "recipe": str(recipe.relative_to(BENCH.parent)),
            "description": recipe.read_text().splitlines()[0].lstrip("# "),
            "epochs_run": len(epochs), "finished": finished,
            "at_marks": at_marks(epochs, marks, finished), "curve": epochs,
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    args.output.with_suffix(".md").write_text(
        "# Aspirin recipe levers: validation MAE at CPU-second marks\n\n"
        f"{results['metric']}.\n\n{table}\n\n"
        + "\n".join(f"- `{n}`: {lv['description']} ({lv['epochs_run']} epochs run"
                    f"{'' if lv['finished'] else ', stopped early'})"
                    for n, lv in results["levers"].items()) + "\n")
    print(table)
    print(f"\nwrote {args.output} and {args.output.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    main()
