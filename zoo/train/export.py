"""Export of a trained run: verify the projected model, evaluate, plot, write the model folder."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import relax
from zoo.train.card import render_card
from zoo.train.history import HISTORY_FIGURE, history_stages, plot_history, validation_curve

if TYPE_CHECKING:
    from zoo.tasks.base import Task
    from zoo.train.recipe_schema import Recipe


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value), ...]}`` from Lightning's CSV log (last value per epoch)."""
    if not path.exists():
        return {}
    with open(path) as f:
        return metrics_from_rows(list(csv.DictReader(f)))


def metrics_from_rows(rows: list[dict[str, str]]) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value), ...]}`` from the rows of Lightning's CSV log (last value per
    epoch)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if not row.get("epoch"):
            continue
        epoch = int(float(row["epoch"]))
        for key, value in row.items():
            if key in ("epoch", "step") or value in ("", None):
                continue
            series[key][epoch] = float(value)
    return {k: sorted(v.items()) for k, v in series.items()}


def plot_training(metrics: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    """Training curves (losses, projected validation MAE) and each layer's relaxation level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(k for k in metrics if k.startswith("level/"))
    branches = sorted(k for k in metrics if k.startswith(("branch/", "lie/")))
    panels = 2 + bool(levels) + bool(branches)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    for key in ("train/loss", "train/task_loss"):
        if key in metrics:
            axes[0].plot(*zip(*metrics[key], strict=True), label=key)
    axes[0].set(xlabel="epoch", ylabel="loss", yscale="log", title="training loss")
    axes[0].legend()
    for key in sorted(k for k in metrics if k.startswith("val/")):
        axes[1].plot(*zip(*metrics[key], strict=True), label=key)
    axes[1].set(xlabel="epoch", yscale="log", title="validation metrics (projected model)")
    axes[1].legend()
    if levels:
        for key in levels:
            axes[2].plot(*zip(*metrics[key], strict=True), label=f"layer {key.split('/')[1]}")
        axes[2].set(xlabel="epoch", ylabel="level s", title="relaxation level per layer")
        axes[2].legend(fontsize="small")
    if branches:
        ax = axes[-1]
        for key in branches:
            kind, site = key.split("/")
            style = "-" if kind == "branch" else ":"
            values = [(e, max(v, 1e-12)) for e, v in metrics[key]]  # log axis: zeros at the floor
            ax.plot(*zip(*values, strict=True), style, color=f"C{int(site) % 10}",
                    label=f"{'||s g|| / ||f_e||' if kind == 'branch' else 'Lie term'} {site}")
        ax.set(xlabel="epoch", yscale="log", title="branch size and symmetry violation per layer")
        ax.legend(fontsize="x-small", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _at_epoch(series: list[tuple[int, float]], epoch: int | None) -> float:
    """The value a per-epoch series logged at ``epoch`` (its last, for ``None`` or a missing
    epoch)."""
    values = [value for e, value in series if e == epoch]
    return values[-1] if values else series[-1][1]


def export_run(
    model,
    task: Task,
    recipe: Recipe,
    run: Path,
    test_data: Any,
    training_info: dict[str, Any],
    relaxed_test: dict[str, Any] | None = None,
    metrics: dict[str, list[tuple[int, float]]] | None = None,
    folder: Path | None = None,
) -> Path:
    """Verify, evaluate and write ``<run>/export`` (config.json, model.safetensors, README.md).

    Parameters
    ----------
    model
        The projected model.
    task
        The recipe's task (it evaluates the model and writes its card sections).
    recipe
        The recipe of the run.
    run
        The run folder (its ``logs/metrics.csv`` gives the curves and final levels).
    test_data
        The held-out test split, in the form the task evaluates.
    training_info
        Command, wall time, hardware and the like, for the card.
    relaxed_test
        Test metrics of the model *before* projection (relaxed runs), reported beside the
        projected ones.
    metrics
        The run's per-epoch metrics (default: read from ``<run>/logs/metrics.csv``).
    folder
        The model folder to write (default ``<run>/export``).
    """
    from zoo.hub.checkpoint import save_pretrained

    if relax.branches(model):
        raise ValueError("export needs the projected model: call zoo.relax.project first")
    folder = run / "export" if folder is None else folder
    test_metrics = task.evaluate(model, test_data, recipe.training.eval_batch_size)
    equivariance = task.equivariance_errors(model, test_data)
    folder.mkdir(parents=True, exist_ok=True)
    if metrics is None:
        metrics = read_metrics(run / "logs" / "metrics.csv")
    plot_training(metrics, folder / "training_curves.png", recipe.name)
    task.card.write_figures(model, test_data, folder, recipe)
    final_levels = {k: v[-1][1] for k, v in metrics.items() if k.startswith("level/")}
    # The validation metrics of the exported weights: the selected epoch's where the run keeps
    # its best epoch (model selection reads these), else the last epoch's.
    final_validation = {k: _at_epoch(v, training_info.get("selected_epoch"))
                        for k, v in metrics.items() if k.startswith("val/")}
    r = recipe.relaxation
    relaxation = {"method": r.method}
    if r.method != "none":
        relaxation.update(form=r.form, hidden_factor=r.hidden_factor,
                          **({"rank": r.rank} if r.form == "lowrank" else {}),
                          penalty_rows=r.penalty_rows, penalty_every=r.penalty_every,
                          **({"init_scale": r.init_scale} if r.init_scale else {}),
                          training={"lambda_reg": r.lambda_reg,
                                    "controller": r.controller,
                                    "final_levels": final_levels})
    epochs_done = max((e for series in metrics.values() for e, _ in series), default=-1) + 1
    info = {
        **training_info,
        "seed": recipe.seed,
        "epochs": epochs_done,
        "validation_curve": validation_curve(metrics),
    }
    stages = history_stages(info)
    if stages:
        plot_history(stages, folder / HISTORY_FIGURE, recipe.name)
    results = {"test": test_metrics, "equivariance": equivariance, "relaxed_test": relaxed_test,
               "final_levels": final_levels, "validation": final_validation}
    card = render_card(recipe, task, results, info, model)
    extra = {
        "name": recipe.name,
        **task.config_extra(recipe, results),
        "data": recipe.data.model_dump(mode="json", exclude={"root"}),
        "equivariance_error": equivariance,
        "training": info,
    }
    if final_validation:
        extra["validation"] = final_validation
    if relaxed_test is not None:
        extra["metrics_before_projection"] = relaxed_test
    save_pretrained(model, folder, card=card, relaxation=relaxation, extra=extra)
    return folder
