"""The smoke-plume card's sections (the relaxation paper's Table 2 beside this model) and its
rollout figure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from zoo.tasks.base import TaskCard
from zoo.tasks.card_text import (
    CR_BIBTEX,
    CardSections,
    before_projection,
    bibtex,
    epochs_text,
    model_phrase,
)

if TYPE_CHECKING:
    from pathlib import Path

    from zoo.train.recipe_schema import Recipe

# Relaxation paper, Table 2 (RMSE, Rotation set).
PUBLISHED = [
    ("MLP", 1.38, 1.34), ("Conv", 1.21, 1.10), ("Equiv", 1.05, 0.76), ("RPP", 0.96, 0.83),
    ("Lift", 0.82, 0.68), ("RSteer", 0.80, 0.67), ("RSteer + CR", 0.79, 0.58),
]

CITATIONS = bibtex(
    """@inproceedings{wang2022approximately,
  title={Approximately Equivariant Networks for Imperfectly Symmetric Dynamics},
  author={Wang, Rui and Walters, Robin and Yu, Rose}, booktitle={ICML}, year={2022}}""",
    CR_BIBTEX,
    """@inproceedings{holl2020phiflow,
  title={Learning to Control PDEs with Differentiable Physics},
  author={Holl, Philipp and Koltun, Vladlen and Thuerey, Nils}, booktitle={ICLR}, year={2020}}""",
)

_ARCHITECTURE_NAMES = {"smoke-conv": "Conv", "smoke-equiv": "Equiv (C4-steerable CNN)",
                       "smoke-rsteer": "RSteer (relaxed steerable CNN)"}


def capped(limit: int | None, full: int) -> int:
    """The number of samples a ``max_*`` limit leaves of ``full``."""
    return full if limit is None else min(int(limit), full)


class SmokeCard(TaskCard):
    """Sections of a smoke-plume model's card, and a rollout on a Domain test sample."""

    def write_figures(self, model, data, folder: Path, recipe: Recipe) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        inputs, targets, _ = data["domain"][0]
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            predicted = model.eval().rollout(inputs[None].to(dtype), targets.shape[0])[0]
        shown = [0, targets.shape[0] // 2, targets.shape[0] - 1]
        fig, axes = plt.subplots(2, len(shown), figsize=(4 * len(shown), 8))
        for col, t in enumerate(shown):
            for row, (label, field) in enumerate((("truth", targets), ("prediction",
                                                                       predicted))):
                speed = field[t].double().norm(dim=0).cpu().numpy()
                axes[row, col].imshow(speed, origin="lower", cmap="magma")
                axes[row, col].set(title=f"{label}, frame +{t + 1}", xticks=[], yticks=[])
        fig.suptitle(f"{recipe.name}: speed |v|, first Domain test sample")
        fig.tight_layout()
        fig.savefig(folder / "rollout.png", dpi=90)
        plt.close(fig)

    def sections(self, recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                 model) -> CardSections:
        test, relaxed = results["test"], results["relaxed_test"]
        method = recipe.relaxation.method
        exact = bool(getattr(model, "exactly_equivariant", False))
        eq = results["equivariance"]
        rows = "\n".join(f"| {name} | relaxation paper, Table 2 | {future:.2f} | {domain:.2f} |"
                         for name, future, domain in PUBLISHED)
        ours = (f"| **this model** ({epochs_text(info)}) | measured | "
                f"**{test['rmse_future']:.4f}** | **{test['rmse_domain']:.4f}** |")
        before = before_projection(relaxed, relaxed and (
            f"Future {relaxed['rmse_future']:.4f}, Domain {relaxed['rmse_domain']:.4f}"))
        how = ("trained without relaxation branches" if method == "none" else
               f"trained with `{method}` branches (unconstrained convolutions) that were "
               "removed (projected) before evaluation")
        if exact:
            symmetry = (f"The model is exactly C4-equivariant by construction; largest relative "
                        f"error over the quarter turns of real test inputs: float64 "
                        f"{eq['float64']:.2e}, float32 {eq['float32']:.2e}.")
        else:
            symmetry = (f"The model is **not** exactly equivariant (by design); its measured "
                        f"relative equivariance error under quarter turns of real test inputs "
                        f"is {eq['float64']:.3g} (float64), {eq['float32']:.3g} (float32).")
        return CardSections(
            task=("time-series-forecasting", "velocity field prediction"),
            dataset=("smoke-plume-rotation", "smoke plume, Rotation set (Future and Domain tests)"),
            metrics=[("rmse", "RMSE, Future", test["rmse_future"]),
                     ("rmse", "RMSE, Domain", test["rmse_domain"])],
            tags=[recipe.model.architecture, "fluid-dynamics", "smoke-plume", "c4"],
            summary=f"""{model_phrase(recipe, model, _ARCHITECTURE_NAMES)}
predicting the next velocity frame of a 64 x 64 buoyant smoke plume from the previous
10, rolled out autoregressively; {how}.""",
            intended_use="""For: benchmarking approximately equivariant networks on the smoke
plume tasks of Wang et al. (2022), and fine-tuning. Not for: other resolutions, boundary
conditions or flows; physical simulation beyond a few dozen frames.""",
            data=f"""The Rotation set (36 simulations, `python -m zoo.data.smoke`): our own
PhiFlow 3.4 (64-bit) re-simulation of the authors' procedure; inflows at the four walls with
buoyancy away from them, scaled by 0.01 k, 10% stronger for one direction. Training windows:
25 simulations x 160 starts ({capped(recipe.data.max_train, 4000)} samples), 6 target frames;
validation: starts 160..199; tests: Future (starts 200..249 of the training simulations,
{test['n_future']} samples) and Domain (10 held-out simulations, {test['n_domain']} samples),
20 target frames each. Not bit-identical to the authors' PhiFlow 2.0.1 data, so the published
numbers are indicative.""",
            results=f"""| model | source | RMSE Future | RMSE Domain |
|---|---|---|---|
{ours}
{rows}
{before}
![rollout on a Domain test sample](rollout.png)""",
            equivariance=symmetry,
            citations=CITATIONS,
        )
