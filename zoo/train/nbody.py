"""Training on the charged N-body task: predict positions 1000 simulator steps ahead (MSE)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch_geometric.data import Batch

from zoo.train.card import ACE_BIBTEX, CR_BIBTEX, bibtex, generic_card, model_index
from zoo.train.family import TrainingFamily, equivariance_errors_on, register_family
from zoo.train.recipe_schema import DataSection, LossSection

# Published test MSEs (5 charged particles, 3000 training trajectories, 1000-step horizon).
PUBLISHED = [
    ("EGNN", "Satorras et al. 2021, Table 2", 0.0071),
    ("SEGNN (lmax 1)", "Brandstetter et al. 2022, Table 1", 0.0043),
]

CITATIONS = bibtex(
    """@inproceedings{satorras2021en,
  title={E(n) Equivariant Graph Neural Networks},
  author={Satorras, V{\\'\\i}ctor Garcia and Hoogeboom, Emiel and Welling, Max},
  booktitle={ICML}, year={2021}}""",
    """@inproceedings{brandstetter2022geometric,
  title={Geometric and Physical Quantities improve E(3) Equivariant Message Passing},
  author={Brandstetter, Johannes and Hesselink, Rob and van der Pol, Elise and Bekkers, Erik J
          and Welling, Max}, booktitle={ICLR}, year={2022}}""",
    """@inproceedings{kipf2018neural,
  title={Neural Relational Inference for Interacting Systems},
  author={Kipf, Thomas and Fetaya, Ethan and Wang, Kuan-Chieh and Welling, Max and Zemel, Richard},
  booktitle={ICML}, year={2018}}""",
    CR_BIBTEX,
    ACE_BIBTEX,
)

_ARCHITECTURE_NAMES = {"egnn": "EGNN", "segnn": "SEGNN"}


def rotate_nbody_batch(batch: Any, rotations: torch.Tensor) -> Any:
    """Rotate positions, velocities and targets of every graph by its own rotation."""
    out = batch.clone()
    per_node = rotations.to(batch.pos.device)[batch.batch]
    for key in ("pos", "vel", "target"):
        setattr(out, key, torch.einsum("nij,nj->ni", per_node, getattr(batch, key)))
    return out


def evaluate_nbody(model, graphs: list, batch_size: int = 100) -> dict[str, Any]:
    """Test MSE (per coordinate) of ``model`` on N-body graphs."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(graphs[start:start + batch_size])
            error = model(batch)["pos"].double() - batch.target.double()
            total += float(error.pow(2).sum())
            count += error.numel()
    return {"mse": float(f"{total / count:.6g}"), "n_trajectories": len(graphs)}


class NBodyData(DataSection):
    """Numbers of simulated train / validation / test trajectories."""

    dataset: Literal["nbody"] = "nbody"
    n_train: int = Field(3000, ge=1)
    n_val: int = Field(2000, ge=1)
    n_test: int = Field(2000, ge=1)
    root: str | None = None


class NBodyLoss(LossSection):
    """Mean squared error of the predicted positions."""

    kind: Literal["mse"] = "mse"


@register_family
class NBodyFamily(TrainingFamily):
    """The charged 5-particle system of EGNN/SEGNN (Kipf et al. 2018 simulator)."""

    dataset = "nbody"
    data_model = NBodyData
    loss_model = NBodyLoss
    defaults = {
        "model": {"architecture": "egnn", "preset": "nbody", "args": {}},
        "optimizer": {"name": "adam", "lr": 5.0e-4, "weight_decay": 1.0e-12},
        "schedule": {"name": "constant", "warmup_epochs": 0},
        "training": {"batch_size": 100, "eval_batch_size": 500, "augment_rotations": False},
    }
    primary_metric = "mse"
    higher_is_better = False
    validation_curve = "val/mse"
    comparison_columns = [("mse", "test MSE", ".5f")]

    def load_data(self, recipe: dict[str, Any], dtype: torch.dtype):
        from zoo.data.nbody import load_nbody, nbody_to_data_list

        d = recipe["data"]
        sizes = {"train": d["n_train"], "val": d["n_val"], "test": d["n_test"]}
        return tuple(
            nbody_to_data_list(load_nbody(split, root=d["root"], max_samples=n), dtype)
            for split, n in sizes.items()
        )

    def make_task(self, model, recipe: dict[str, Any], train: list, val: list):
        from zoo.train.family_tasks import NBodyTask  # Lightning: only to train

        return NBodyTask(model, recipe, train, val)

    def evaluate(self, model, data: list, batch_size: int) -> dict[str, Any]:
        return evaluate_nbody(model, data, batch_size)

    def equivariance_errors(self, model, data: list) -> dict[str, float]:
        inputs = Batch.from_data_list(
            [g.__class__(pos=g.pos, vel=g.vel, charge=g.charge) for g in data[:3]]
        )
        return equivariance_errors_on(model, inputs)

    def load_test(self, data_cfg: dict[str, Any], root: str | None, dtype: torch.dtype):
        from zoo.data.nbody import load_nbody, nbody_to_data_list

        rows = load_nbody("test", root=root, max_samples=data_cfg.get("n_test", 2000))
        return nbody_to_data_list(rows, dtype)

    def config_extra(self, recipe: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {
            "units": {"positions": "simulator units", "velocities": "simulator units",
                      "charge": "±1"},
            "dataset": "charged N-body (5 particles)",
            "metrics": {"mse": results["test"]["mse"]},
            "test_trajectories": results["test"]["n_trajectories"],
        }

    def render_card(self, recipe, results, info, curves, model) -> str:
        test, relaxed = results["test"], results["relaxed_test"]
        arch = recipe["model"]["architecture"]
        arch_name = _ARCHITECTURE_NAMES.get(arch, arch)
        n_params = sum(p.numel() for p in model.parameters())
        method = recipe["relaxation"]["method"]
        d = recipe["data"]
        rows = "\n".join(f"| {name} | {source} | {mse:.4f} |" for name, source, mse in PUBLISHED)
        before = (f"\nBefore projection (the relaxed model as trained, levels as the controller "
                  f"left them): test MSE {relaxed['mse']:.5f}.\n" if relaxed else "")
        how = ("trained equivariant throughout (no relaxation)" if method == "none" else
               f"trained with relaxation `{method}` and projected back to an exactly "
               "E(3)-equivariant model")
        return generic_card(
            recipe=recipe,
            front=model_index(
                recipe, ("trajectory-prediction", "N-body position prediction"),
                ("nbody-charged", "charged 5-particle N-body (test split)"),
                [("mse", "test MSE", test["mse"])], [arch, "e3nn", "n-body", "physics"],
            ),
            summary=f"""{arch_name} (`{recipe['model']['preset']}` preset, {n_params:,} parameters)
predicting where 5 charged particles are 1000 simulator steps later, from their positions,
velocities and charges; {how}.""",
            intended_use="""For: benchmarking equivariant message passing and relaxed training on
the standard charged N-body task, and as a starting point for fine-tuning
(`zoo.load(name, relaxed=True)`). Not for: other particle counts, interaction laws or horizons
without re-training; physical simulation (it is a learned 1000-step map, not an integrator).""",
            data=f"""Our own simulator (`zoo.data.nbody`, Kipf et al. 2018 settings: charges ±1,
position spread 1, speed 0.5, interaction strength 1, dt 0.001, force clip 100, no box;
input frame 30, target frame 40, sampled every 100 steps), generated with fixed seeds:
{d['n_train']} training, {d['n_val']} validation and {test['n_trajectories']} test trajectories
(`python -m zoo.data.nbody` regenerates them and checks their checksum).""",
            results=f"""| model | source | test MSE |
|---|---|---|
| **this model** ({info['epochs']} epochs) | measured | **{test['mse']:.5f}** |
{rows}
{before}
The published numbers come from far longer training (EGNN 10,000 epochs, SEGNN 1000, ACE 2000);
this model had {info['epochs']} epochs on one CPU thread.""",
            equivariance=f"""Largest relative error over random rotations, reflections,
translations and particle permutations of real test inputs: float64
{results['equivariance']['float64']:.2e}, float32 {results['equivariance']['float32']:.2e}.
The model is E(3)-equivariant (reflections included): positions are centred per system, never per
particle.""",
            info=info,
            levels=results["final_levels"],
            citations=CITATIONS,
        )
