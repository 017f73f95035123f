"""Publish a family of runs that differ only in their training method (standard, CR, ...).

Each run's export becomes a named variant (``<plain>.<method>``) in ``model_cards/``, every card
gets the side-by-side comparison (test metrics, equivariance, validation curves of the projected
models), and the best variant by test force MAE is also published under the plain name.

    python -m zoo.train.compare equiformer-md17-aspirin runs/equiformer-md17-aspirin.standard \
        runs/equiformer-md17-aspirin.cr --output model_cards
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from zoo.train.card import STANDARD_SENTENCE
from zoo.train.export import read_metrics

COMPARISON_PLOT = "comparison.png"


def _load_run(run: Path) -> dict[str, Any]:
    export = run / "export"
    config = json.loads((export / "config.json").read_text())
    return {
        "run": run,
        "export": export,
        "config": config,
        "method": config["relaxation"]["method"],
        "variant": config["name"],
        "curves": read_metrics(run / "logs" / "metrics.csv"),
    }


def plot_comparison(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation force MAE of the projected models, and the relaxation levels, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        curve = run["curves"].get("val/forces_mae_mev", [])
        if curve:
            axes[0].plot(*zip(*curve, strict=True), label=run["variant"])
        for key in sorted(k for k in run["curves"] if k.startswith("level/")):
            axes[1].plot(*zip(*run["curves"][key], strict=True),
                         label=f"{run['method']} layer {key.split('/')[1]}")
    axes[0].set(xlabel="epoch", ylabel="meV/Å", yscale="log",
                title="validation force MAE (projected model)")
    axes[0].legend(fontsize="small")
    axes[1].set(xlabel="epoch", ylabel="level s", title="relaxation level per layer")
    if axes[1].lines:
        axes[1].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_section(runs: list[dict[str, Any]], best: str) -> str:
    """Markdown: the same preset, data, seed and budget trained with each method."""
    lines = [
        "## Standard vs relaxed training (same preset, data split, seed, schedule and epochs)",
        "",
        "| variant | training | test energy MAE (meV) | test force MAE (meV/Å) "
        "| equivariance error (float64) | wall time (min) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        c = run["config"]
        mark = " (published as the plain name)" if run["variant"] == best else ""
        lines.append(
            f"| `{run['variant']}`{mark} | {run['method']} | {c['metrics']['energy_mae']:.2f} "
            f"| {c['metrics']['forces_mae']:.2f} | {c['equivariance_error']['float64']:.1e} "
            f"| {c['training']['wall_time_s'] / 60:.0f} |"
        )
    lines += [
        "",
        f"![validation curves of every variant]({COMPARISON_PLOT})",
        "",
        "Every variant is exactly equivariant after projection; relaxed training only changes the "
        "path the optimiser takes. Whether it helps at this budget is what the table shows.",
        "",
    ]
    return "\n".join(lines)


def _insert_section(card: str, section: str) -> str:
    marker = "## Equivariance after projection"
    return card.replace(marker, section + "\n" + marker, 1) if marker in card else card + section


def publish_family(plain_name: str, run_dirs: list[Path], output: Path) -> dict[str, Any]:
    """Write every variant and the best one (plain name) into ``output``; returns a summary."""
    runs = [_load_run(Path(r)) for r in run_dirs]
    best = min(runs, key=lambda r: r["config"]["metrics"]["forces_mae"])
    section = comparison_section(runs, best["variant"])
    summary = {"best": best["variant"], "variants": {}}
    targets = [(run, run["variant"]) for run in runs] + [(best, plain_name)]
    for run, name in targets:
        folder = output / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(run["export"], folder)
        card = (folder / "README.md").read_text()
        if run["method"] == "none":  # cards exported before the wording was fixed
            card = card.replace(
                "**standard (equivariant throughout)** and then projected back to an exactly "
                "SE(3)-equivariant model.", STANDARD_SENTENCE,
            )
        card = card.replace(f"# {run['variant']}\n", f"# {name}\n", 1)
        card = card.replace(f'zoo.load("{run["variant"]}")', f'zoo.load("{name}")')
        if name == plain_name:
            card = card.replace(
                f"# {name}\n",
                f"# {name}\n\nThe best of the variants below by test force MAE: "
                f"`{run['variant']}`.\n", 1,
            )
        (folder / "README.md").write_text(_insert_section(card, section))
        config = json.loads((folder / "config.json").read_text())
        config["name"] = name
        (folder / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2) + "\n")
        plot_comparison(runs, folder / COMPARISON_PLOT, plain_name)
        summary["variants"][name] = run["config"]["metrics"]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plain_name")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("model_cards"))
    args = parser.parse_args(argv)
    print(json.dumps(publish_family(args.plain_name, args.runs, args.output), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
