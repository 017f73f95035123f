"""Fine-tuning with relaxation re-enabled: aspirin -> ethanol, against two baselines.

For 50, 200 and 950 ethanol training frames, with the same budget per size:

- ``finetune-relaxed``: start from the published ``equiformer-md17-aspirin`` and fine-tune with
  fresh constraint-relaxation branches (CR, MLP form, lambda 0.01, triangle schedule), projected
  at the end;
- ``finetune``: the same start, fine-tuned equivariant throughout;
- ``scratch``: the same architecture trained from scratch.

Every run is evaluated on the 1000 ethanol test frames. Results go to
``benchmarks/results/finetune_ethanol.json`` and the plot to ``benchmarks/results/``; the ethanol
card shows both (``training/publish_md17.py ethanol``).

    python training/finetune_ethanol.py --runs runs/finetune
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "finetune_ethanol.json"
PLOT = ROOT / "benchmarks" / "results" / "finetune_ethanol.png"
SIZES = {50: 60, 200: 30, 950: 10}  # training frames -> epochs (about 400-1200 steps each)
SETTINGS = ("finetune-relaxed", "finetune", "scratch")


def recipe(n_train: int, epochs: int, setting: str) -> dict:
    from zoo.train.recipe import _merge, recipe_defaults

    relaxed = setting == "finetune-relaxed"
    return _merge(recipe_defaults("rmd17"), {
        "name": f"equiformer-md17-ethanol.{setting}-{n_train}",
        "seed": 0,
        "data": {"molecule": "ethanol", "n_train": n_train, "n_val": 50, "split_seed": 0},
        "model": {"architecture": "equiformer", "preset": "small"},
        "relaxation": {"method": "cr" if relaxed else "none", "form": "mlp",
                       "controller": {"schedule": "triangle", "peak": 1.0} if relaxed else {}},
        "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.01},
        "optimizer": {"name": "adamw", "lr": 5.0e-4, "weight_decay": 1.0e-6},
        "training": {"epochs": epochs, "batch_size": 8, "eval_batch_size": 32},
    })


def run_one(args: tuple[int, int, str, str]) -> dict:
    n_train, epochs, setting, runs = args
    import torch

    torch.set_num_threads(1)  # two runs share the two cores
    from zoo.train.run import train

    init = None if setting == "scratch" else "equiformer-md17-aspirin"
    out = Path(runs) / f"{setting}-{n_train}"
    # relaxation= as the recipe says: a fine-tuning run would otherwise re-enable relaxation
    # for the "finetune" baseline, which stays equivariant throughout.
    train(recipe(n_train, epochs, setting), out, init_from=init, progress=False,
          relaxation="cr" if setting == "finetune-relaxed" else "none",
          resume=(out / "checkpoints" / "last.ckpt").exists())
    config = json.loads((out / "export" / "config.json").read_text())
    return {"setting": setting, "n_train": n_train, "epochs": epochs, **config["metrics"],
            "wall_time_s": config["training"]["wall_time_s"]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for setting in SETTINGS:
        rows = sorted((r for r in results if r["setting"] == setting), key=lambda r: r["n_train"])
        ax.plot([r["n_train"] for r in rows], [r["forces_mae"] for r in rows], "o-",
                label=setting)
    ax.set(xscale="log", yscale="log", xlabel="ethanol training frames",
           ylabel="test force MAE (meV/Å)", title="aspirin -> ethanol fine-tuning (same budget)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "finetune"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    jobs = [(n, e, s, args.runs) for n, e in SIZES.items() for s in SETTINGS]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python training/finetune_ethanol.py",
        "budget_epochs_by_frames": SIZES,
        "results": results,
    }, indent=2) + "\n")
    plot(results, PLOT)
    for r in results:
        print(f"{r['setting']:18s} {r['n_train']:4d} frames  energy {r['energy_mae']:8.2f} meV  "
              f"forces {r['forces_mae']:7.2f} meV/Å")


if __name__ == "__main__":
    main()
