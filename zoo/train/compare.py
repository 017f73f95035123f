"""Publish a family of runs that differ only in their training method (standard, CR, ACE, RECM).

Runs of the same recipe name (one per seed) form one method. For each method, the seed with the
best validation metric of the projected model becomes the named variant (``<plain>.<method>``)
in ``model_cards/``; every card gets the side-by-side comparison (test metric mean and standard
deviation over seeds, before and after projection, final relaxation levels, validation curves),
and the plain name becomes an alias of the best variant. The variants and the alias are recorded
in ``<output>/index.json`` (:func:`zoo.hub.index.record_model`).

    python -m zoo.train.compare egnn-nbody runs/egnn-nbody.*/seed* --output model_cards \
        --results benchmarks/results/egnn-nbody.json
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

from zoo.hub.index import default_description, record_model, remove_model
from zoo.hub.pretrained import INDEX_NAME
from zoo.tasks import get_task
from zoo.tasks.base import Task
from zoo.tasks.card_text import STANDARD_SENTENCE
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
        "seed": config["training"].get("seed", 0),
        "curves": read_metrics(run / "logs" / "metrics.csv"),
    }


def _final(run: dict[str, Any], key: str) -> float:
    curve = run["curves"].get(key) or []
    return curve[-1][1] if curve else math.nan


def _validation(run: dict[str, Any], key: str) -> float:
    """The validation metric of the exported weights: the selected epoch's where the run kept
    its best epoch (recorded by the export), else the last epoch's."""
    recorded = (run["config"].get("validation") or {}).get(key)
    return float(recorded) if recorded is not None else _final(run, key)


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """One entry per variant (method): its seeds, metric statistics and representative run."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        variants.setdefault(run["variant"], []).append(run)
    out = []
    for variant, seeds in variants.items():
        if task.select_on == "test":
            score = [r["config"]["metrics"][task.primary_metric] for r in seeds]
        else:
            score = [_validation(r, task.validation_curve) for r in seeds]
        best = task.best_of(score)
        representative = seeds[0 if math.isnan(best) else score.index(best)]
        stats: dict[str, Any] = {}
        for key in {k for r in seeds for k in r["config"]["metrics"]}:
            stats[key] = _mean_std([r["config"]["metrics"].get(key, math.nan) for r in seeds])
            stats[f"{key}_before_projection"] = _mean_std([
                (r["config"].get("metrics_before_projection") or {}).get(key, math.nan)
                for r in seeds
            ])
        levels: dict[str, tuple[float, float]] = {}
        for key in sorted({k for r in seeds for k in r["curves"] if k.startswith("level/")},
                          key=lambda k: int(k.split("/")[1])):
            levels[key.split("/")[1]] = _mean_std([_final(r, key) for r in seeds])
        out.append({
            "variant": variant,
            "method": seeds[0]["method"],
            "seeds": sorted(r["seed"] for r in seeds),
            "runs": seeds,
            "representative": representative,
            "selection_score": _mean_std(score)[0],
            "stats": stats,
            "levels": levels,
            "validation": _mean_std([_validation(r, task.validation_curve) for r in seeds]),
            "wall_time_min": statistics.fmean(
                r["config"]["training"]["wall_time_s"] / 60 for r in seeds
            ),
            "equivariance_float64": max(
                r["config"]["equivariance_error"]["float64"] for r in seeds
            ),
        })
    return out


def _fmt(stat: tuple[float, float], fmt: str, n: int) -> str:
    mean, std = stat
    if math.isnan(mean):
        return "–"
    return f"{mean:{fmt}}" if n == 1 else f"{mean:{fmt}} ± {std:{fmt}}"


def comparison_table(variants: list[dict[str, Any]], task: Task, best: str) -> str:
    """The markdown table of the comparison (one row per variant)."""
    columns = task.comparison_columns
    multi_seed = any(len(v["seeds"]) > 1 for v in variants)
    # The before-projection column, where the runs measured it (exports since it was added).
    relaxed_any = any(
        not math.isnan(v["stats"].get(f"{columns[0][0]}_before_projection", (math.nan,))[0])
        for v in variants
    )
    header = "| variant | training |" + (" seeds |" if multi_seed else "")
    for _, label, _ in columns:
        header += f" {label} |"
    if relaxed_any:
        header += f" {columns[0][1]} before projection |"
    header += " final levels |" if multi_seed else ""
    header += " equivariance error (float64) | wall time (min) |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for v in variants:
        n = len(v["seeds"])
        mark = " (published as the plain name)" if v["variant"] == best else ""
        row = f"| `{v['variant']}`{mark} | {v['method']} |"
        if multi_seed:
            row += f" {n} |"
        for key, _, fmt in columns:
            row += f" {_fmt(v['stats'].get(key, (math.nan, math.nan)), fmt, n)} |"
        if relaxed_any:
            key, _, fmt = columns[0]
            before = v["stats"].get(f"{key}_before_projection", (math.nan, math.nan))
            row += f" {_fmt(before, fmt, n) if v['method'] != 'none' else '–'} |"
        if multi_seed:
            levels = ", ".join(f"{m:.2g}" for m, _ in v["levels"].values()) or "–"
            row += f" {levels} |"
        row += f" {v['equivariance_float64']:.1e} | {v['wall_time_min']:.0f} |"
        lines.append(row)
    return "\n".join(lines)


def comparison_section(variants: list[dict[str, Any]], task: Task, best: str,
                       command: str | None = None) -> str:
    """Markdown: the same preset, data, schedule and budget trained with each method."""
    multi_seed = any(len(v["seeds"]) > 1 for v in variants)
    seeds_text = "seeds" if multi_seed else "seed"
    lines = [
        f"## Standard vs relaxed training (same preset, data split, {seeds_text}, schedule and "
        "epochs)",
        "",
        comparison_table(variants, task, best),
        "",
    ]
    if multi_seed:
        lines += [
            "Mean ± standard deviation over the seeds; each variant's published weights are its "
            "seed with the best validation metric. Final levels: each relaxed layer's level at the "
            "end of training (mean over seeds), before projection. Wall time: mean per run, as "
            "measured (hardware in each card's training section).",
            "",
        ]
    lines += [
        f"![validation curves of every variant]({COMPARISON_PLOT})",
        "",
        "Every variant is exactly equivariant after projection; relaxed training only changes the "
        "path the optimiser takes. Whether it helps at this budget is what the table shows.",
        "",
    ]
    if command:
        lines += [f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def plot_comparison(variants: list[dict[str, Any]], task: Task, path: Path,
                    title: str) -> None:
    """Validation metric of the projected models, and the relaxation levels, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v in variants:
        for i, run in enumerate(v["runs"]):
            curve = run["curves"].get(task.validation_curve, [])
            if curve:
                axes[0].plot(*zip(*curve, strict=True), color=f"C{variants.index(v)}",
                             alpha=1.0 if run is v["representative"] else 0.35,
                             label=v["variant"] if i == 0 else None)
        run = v["representative"]
        for key in sorted(k for k in run["curves"] if k.startswith("level/")):
            axes[1].plot(*zip(*run["curves"][key], strict=True),
                         label=f"{v['method']} layer {key.split('/')[1]}")
    axes[0].set(xlabel="epoch", ylabel=task.validation_curve,
                yscale="linear" if task.higher_is_better else "log",
                title="validation (projected model); faint: other seeds")
    axes[0].legend(fontsize="small")
    axes[1].set(xlabel="epoch", ylabel="level s", title="relaxation level per layer")
    if axes[1].lines:
        axes[1].legend(fontsize="x-small", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _insert_section(card: str, section: str) -> str:
    marker = "## Equivariance after projection"
    return card.replace(marker, section + "\n" + marker, 1) if marker in card else card + section


def alias_sentence(plain_name: str, criterion: str) -> str:
    """The line under the best variant's title that names its alias (the plain name)."""
    return (f"Also published as `{plain_name}`, the best of the variants below by {criterion}: "
            f'`zoo.load("{plain_name}")` loads this model.')


def publish_family(plain_name: str, run_dirs: list[Path], output: Path,
                   command: str | None = None) -> dict[str, Any]:
    """Write every variant into ``output`` and record them in ``output/index.json``, the plain
    name as an alias of the best one; returns a summary."""
    runs = [_load_run(Path(r)) for r in run_dirs]
    datasets = {r["config"]["data"].get("dataset", "rmd17") for r in runs}
    if len(datasets) != 1:
        raise ValueError(f"runs of one family must share their dataset, got {sorted(datasets)}")
    dataset = datasets.pop()
    task = get_task(dataset)
    variants = summarize(runs, task)
    best = variants[0]
    for v in variants[1:]:
        if task.better(v["selection_score"], best["selection_score"]):
            best = v
    section = comparison_section(variants, task, best["variant"], command)
    summary: dict[str, Any] = {"best": best["variant"], "dataset": dataset,
                               "selected_on": task.select_on, "variants": {},
                               "table": comparison_table(variants, task, best["variant"])}
    criterion = (f"test {task.primary_metric}" if task.select_on == "test"
                 else f"mean validation metric over seeds (`{task.validation_curve}`, "
                 "projected model)")
    for v in variants:
        run = v["representative"]
        name = v["variant"]
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
        if v is best:
            card = card.replace(
                f"# {name}\n", f"# {name}\n\n{alias_sentence(plain_name, criterion)}\n", 1
            )
        (folder / "README.md").write_text(_insert_section(card, section))
        plot_comparison(variants, task, folder / COMPARISON_PLOT, plain_name)
    # Before aliases, the best variant was copied to a folder (and entry) of the plain name.
    stale = output / plain_name
    if (stale / "config.json").is_file():
        shutil.rmtree(stale)
    remove_model(output / INDEX_NAME, plain_name)
    for v in variants:
        config = v["representative"]["config"]
        record_model(output / v["variant"], aliases=[plain_name] if v is best else [],
                     description=default_description(config))
    for v in variants:
        summary["variants"][v["variant"]] = {
            "method": v["method"],
            "seeds": v["seeds"],
            "published_seed": v["representative"]["seed"],
            "published_metrics": v["representative"]["config"]["metrics"],
            "mean_std": {k: list(s) for k, s in sorted(v["stats"].items())},
            "final_levels_mean_std": {k: list(s) for k, s in v["levels"].items()},
            "validation_mean_std": list(v["validation"]),
            "wall_time_min_mean": round(v["wall_time_min"], 2),
            "equivariance_error_float64_max": v["equivariance_float64"],
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plain_name")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path("model_cards"))
    parser.add_argument("--results", type=Path, default=None,
                        help="also write the summary (JSON) and table (.md) here")
    parser.add_argument("--command", default=None, help="the reproducing command, for the card")
    args = parser.parse_args(argv)
    summary = publish_family(args.plain_name, args.runs, args.output, args.command)
    text = json.dumps(summary, indent=2)
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text + "\n")
        args.results.with_suffix(".md").write_text(summary["table"] + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
