"""Standard vs constraint-relaxation (CR) training of SEGNN on N-body across model and data sizes.

The constraint-relaxation paper (Pertigkiozoglou et al. 2024, Fig. 4a/4b) reports that relaxed
training helps most for small models and small training sets. This study reproduces the design
(issue 17): the published recipes ``segnn-nbody.standard`` and ``segnn-nbody.cr``, 3 seeds each,

- a *width* axis at the full 3000 training trajectories: ``hidden_features`` 16, 32, 64 (the
  published ``nbody`` preset is 64), 4 layers;
- a *data* axis at width 64: 300, 1000, 3000 training trajectories.

Every run takes the same number of optimiser steps as the published 80 epochs at 3000 (so a
300-trajectory run trains 800 epochs), and exports its best validation epoch, as the paper
selects on validation. Each run is a resumable ``zoo train`` process in its own folder under
``--work-dir`` (``training/run_family.py``'s runner): rerun the same command to continue after
an interruption; finished runs are only summarised.

    python benchmarks/cr_scaling.py --work-dir /work/runs/cr-scaling --jobs 2   # ~6 CPU-hours

writes ``benchmarks/results/cr_scaling.{json,md,png}``: test MSE mean ± std over seeds per cell,
the seed spread, and CR's difference from standard training. ``--summarize-only`` writes them
from the runs finished so far (unfinished cells are listed as such).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))

from run_family import run_one  # noqa: E402 - training/ is put on sys.path above

RESULTS = ROOT / "benchmarks" / "results" / "cr_scaling"
METHODS = {"standard": "segnn-nbody.standard", "cr": "segnn-nbody.cr"}
FULL_DATA, FULL_WIDTH, BASE_EPOCHS = 3000, 64, 80


def cells(widths: list[int], sizes: list[int]) -> list[dict[str, Any]]:
    """The study's (width, n_train) cells: the width axis at full data, the data axis at the
    full width (their shared cell once)."""
    out = [{"axis": "width", "width": w, "n_train": FULL_DATA} for w in widths]
    out += [{"axis": "data", "width": FULL_WIDTH, "n_train": n} for n in sizes
            if not (FULL_WIDTH in widths and n == FULL_DATA)]
    return out


def epochs_for(n_train: int, base_epochs: int) -> int:
    """Epochs giving the optimiser steps of ``base_epochs`` at the full training set."""
    return max(1, round(base_epochs * FULL_DATA / n_train))


def run_folder(work_dir: Path, cell: dict[str, Any], method: str, seed: int) -> Path:
    return work_dir / f"w{cell['width']}-n{cell['n_train']}" / method / f"seed{seed}"


def overrides(cell: dict[str, Any], epochs: int, extra: list[str]) -> list[str]:
    """``zoo train`` arguments of a cell (its width, data size and epochs)."""
    return ["--set", f"model.args.hidden_features={cell['width']}",
            "--set", f"data.n_train={cell['n_train']}", "--epochs", str(epochs),
            "--threads", "1", *extra]


def _test_mse(run: Path) -> float | None:
    config = run / "export" / "config.json"
    return json.loads(config.read_text())["metrics"]["mse"] if config.is_file() else None


def summarize(work_dir: Path, grid: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Mean ± std (sample) of the test MSE per cell and method, and CR minus standard."""
    rows = []
    for cell in grid:
        row: dict[str, Any] = dict(cell)
        for method in METHODS:
            values = {s: _test_mse(run_folder(work_dir, cell, method, s)) for s in seeds}
            done = [v for v in values.values() if v is not None]
            row[method] = {
                "per_seed": values,
                "mean": statistics.fmean(done) if done else None,
                "std": statistics.stdev(done) if len(done) > 1 else None,
                "spread": (max(done) - min(done)) if len(done) > 1 else None,
                "finished": len(done),
            }
        s, c = row["standard"], row["cr"]
        row["cr_minus_standard"] = (c["mean"] - s["mean"]
                                    if s["mean"] is not None and c["mean"] is not None else None)
        rows.append(row)
    return {"seeds": seeds, "base_epochs_at_full_data": BASE_EPOCHS, "rows": rows}


def _cell_text(stats: dict[str, Any], n_seeds: int) -> str:
    if stats["mean"] is None:
        return "not run"
    text = f"{stats['mean']:.5f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.5f}"
    return text + ("" if stats["finished"] == n_seeds else f" ({stats['finished']} seeds)")


def table(summary: dict[str, Any]) -> str:
    n = len(summary["seeds"])
    lines = ["| axis | width | training trajectories | standard | CR | CR − standard | "
             "seed spread (standard / CR) |", "|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        diff = row["cr_minus_standard"]
        spreads = " / ".join(f"{row[m]['spread']:.5f}" if row[m]["spread"] is not None else "–"
                             for m in METHODS)
        lines.append(f"| {row['axis']} | {row['width']} | {row['n_train']} | "
                     f"{_cell_text(row['standard'], n)} | {_cell_text(row['cr'], n)} | "
                     f"{'–' if diff is None else f'{diff:+.5f}'} | {spreads} |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, axis, key, label in ((axes[0], "width", "width", "hidden features"),
                                 (axes[1], "data", "n_train", "training trajectories")):
        rows = [r for r in summary["rows"] if r["axis"] == axis or (
            r["width"] == FULL_WIDTH and r["n_train"] == FULL_DATA)]
        rows.sort(key=lambda r: r[key])
        for method, style in (("standard", "o-"), ("cr", "s--")):
            points = [(r[key], r[method]["mean"], r[method]["std"] or 0.0) for r in rows
                      if r[method]["mean"] is not None]
            if points:
                x, y, e = zip(*points, strict=True)
                ax.errorbar(x, y, yerr=e, fmt=style, capsize=3, label=method)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test MSE")
        ax.legend()
    fig.suptitle("SEGNN on N-body: standard vs CR (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base-epochs", type=int, default=BASE_EPOCHS,
                        help="epochs at the full training set (smaller sets: the same steps)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument("--set", action="append", default=[],
                        help="extra recipe override for every run (zoo train --set)")
    parser.add_argument("--summarize-only", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="results path without suffix (.json, .md and .png are written)")
    args = parser.parse_args(argv)

    grid = cells(args.widths, args.sizes)
    extra = [a for kv in args.set for a in ("--set", kv)]
    if not args.summarize_only:
        jobs = [(METHODS[m], s, run_folder(args.work_dir, c, m, s),
                 overrides(c, epochs_for(c["n_train"], args.base_epochs), extra))
                for c in grid for m in METHODS for s in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            for run, wall, code in pool.map(lambda job: run_one(*job), jobs):
                if wall:
                    print(f"{run}: exit {code}, {wall / 60:.1f} min", flush=True)
    summary = summarize(args.work_dir, grid, args.seeds)
    summary["command"] = "python benchmarks/cr_scaling.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    text = table(summary)
    args.output.with_suffix(".md").write_text(
        "# SEGNN on N-body: standard vs CR across widths and training-set sizes\n\n"
        f"{text}\n\nTest MSE, mean ± sample std over seeds {summary['seeds']}; every run "
        f"takes the optimiser steps of {args.base_epochs} epochs at {FULL_DATA} trajectories "
        "and exports its best validation epoch.\n\nReproduce: "
        f"`{summary['command']}`\n")
    plot(summary, args.output.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
