"""Export of a trained run: verify the projected model, evaluate, plot, write the model folder."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from zoo import relax
from zoo.testing import equivariance_report
from zoo.train.card import render_card

EV_TO_MEV = 1000.0


def evaluate(model, graphs: list, batch_size: int = 32) -> dict[str, float]:
    """Energy MAE (meV) and force MAE (meV/Å, per component) of ``model`` on ``graphs``."""
    energy_abs, forces_abs, n_frames, n_components = 0.0, 0.0, 0, 0
    for batch in DataLoader(graphs, batch_size=batch_size, shuffle=False):
        out = model(batch)
        energy_abs += float((out["energy"].detach() - batch.energy).abs().sum())
        forces_abs += float((out["forces"].detach() - batch.forces).abs().sum())
        n_frames += int(batch.num_graphs)
        n_components += batch.forces.numel()
    return {
        "energy_mae": round(energy_abs / n_frames * EV_TO_MEV, 4),
        "forces_mae": round(forces_abs / n_components * EV_TO_MEV, 4),
        "n_frames": n_frames,
    }


def equivariance_errors(model, graphs: list) -> dict[str, float]:
    """Largest relative errors of the model on real frames, in float32 and float64."""
    inputs = Batch.from_data_list([Data(z=g.z, pos=g.pos) for g in graphs[:3]])
    out = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        report = equivariance_report(model, inputs=inputs, dtype=dtype)
        out[name] = float(f"{max(report.values()):.3g}")
    return out


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(epoch, value), ...]}`` from Lightning's CSV log (last value per epoch)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    if not path.exists():
        return {}
    with open(path) as f:
        for row in csv.DictReader(f):
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
    fig, axes = plt.subplots(1, 3 if levels else 2, figsize=(15 if levels else 10, 4))
    for key in ("train/loss", "train/task_loss"):
        if key in metrics:
            axes[0].plot(*zip(*metrics[key], strict=True), label=key)
    axes[0].set(xlabel="epoch", ylabel="loss", yscale="log", title="training loss")
    axes[0].legend()
    for key, label in (("val/forces_mae_mev", "val forces MAE (meV/Å)"),
                       ("val/energy_mae_mev", "val energy MAE (meV)"),
                       ("train/forces_mae_mev", "train forces MAE (meV/Å)")):
        if key in metrics:
            axes[1].plot(*zip(*metrics[key], strict=True), label=label)
    axes[1].set(xlabel="epoch", yscale="log", title="MAE (validation: projected model)")
    axes[1].legend()
    if levels:
        for key in levels:
            axes[2].plot(*zip(*metrics[key], strict=True), label=f"layer {key.split('/')[1]}")
        axes[2].set(xlabel="epoch", ylabel="level s", title="relaxation level per layer")
        axes[2].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def export_run(
    model, recipe: dict[str, Any], run: Path, test_graphs: list, training_info: dict[str, Any]
) -> Path:
    """Verify, evaluate and write ``<run>/export`` (config.json, model.safetensors, README.md)."""
    from zoo.hub.checkpoint import save_pretrained

    if relax.branches(model):
        raise ValueError("export needs the projected model: call zoo.relax.project first")
    folder = run / "export"
    folder.mkdir(parents=True, exist_ok=True)
    test_metrics = evaluate(model, test_graphs, int(recipe["training"]["eval_batch_size"]))
    equivariance = equivariance_errors(model, test_graphs)
    metrics = read_metrics(run / "logs" / "metrics.csv")
    plot_training(metrics, folder / "training_curves.png", recipe["name"])
    final_levels = {k: v[-1][1] for k, v in metrics.items() if k.startswith("level/")}
    r = recipe["relaxation"]
    relaxation = {"method": r["method"]}
    if r["method"] != "none":
        relaxation.update(form=r["form"], hidden_factor=r["hidden_factor"],
                          training={"lambda_reg": r["lambda_reg"],
                                    "controller": r["controller"],
                                    "final_levels": final_levels})
    epochs_done = max((e for series in metrics.values() for e, _ in series), default=-1) + 1
    info = {
        **training_info,
        "seed": recipe["seed"],
        "epochs": epochs_done,
        "recipe": recipe,
    }
    card = render_card(recipe, test_metrics, equivariance, info, metrics, model)
    save_pretrained(
        model, folder, card=card, relaxation=relaxation,
        extra={
            "name": recipe["name"],
            "units": {"energy": "eV", "forces": "eV/Å", "positions": "Å"},
            "dataset": f"rMD17 {recipe['data']['molecule']}",
            "data": {k: v for k, v in recipe["data"].items() if k != "root"},
            "metrics": {k: test_metrics[k] for k in ("energy_mae", "forces_mae")},
            "test_frames": test_metrics["n_frames"],
            "equivariance_error": equivariance,
            "training": {k: v for k, v in info.items() if k != "recipe"},
        },
    )
    return folder
