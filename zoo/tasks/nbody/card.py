"""The N-body card's sections: the published MSEs beside this model's, the simulator, citations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.tasks.base import TaskCard
from zoo.tasks.card_text import (
    ACE_BIBTEX,
    CR_BIBTEX,
    CardSections,
    before_projection,
    bibtex,
    epochs_text,
    model_phrase,
)

if TYPE_CHECKING:
    from zoo.train.recipe_schema import Recipe

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


class NBodyCard(TaskCard):
    """Sections of an N-body model's card."""

    def sections(self, recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                 model) -> CardSections:
        test, relaxed = results["test"], results["relaxed_test"]
        method, d = recipe.relaxation.method, recipe.data
        rows = "\n".join(f"| {name} | {source} | {mse:.4f} |" for name, source, mse in PUBLISHED)
        before = before_projection(relaxed, relaxed and f"test MSE {relaxed['mse']:.5f}")
        how = ("trained equivariant throughout (no relaxation)" if method == "none" else
               f"trained with relaxation `{method}` and projected back to an exactly "
               "E(3)-equivariant model")
        return CardSections(
            task=("trajectory-prediction", "N-body position prediction"),
            dataset=("nbody-charged", "charged 5-particle N-body (test split)"),
            metrics=[("mse", "test MSE", test["mse"])],
            tags=[recipe.model.architecture, "e3nn", "n-body", "physics"],
            summary=f"""{model_phrase(recipe, model, _ARCHITECTURE_NAMES)}
predicting where 5 charged particles are 1000 simulator steps later, from their positions,
velocities and charges; {how}.""",
            intended_use="""For: benchmarking equivariant message passing and relaxed training on
the standard charged N-body task, and as a starting point for fine-tuning
(`zoo.load(name, relaxed=True)`). Not for: other particle counts, interaction laws or horizons
without re-training; physical simulation (it is a learned 1000-step map, not an integrator).""",
            data=f"""Our own simulator (`zoo.data.nbody`, Kipf et al. 2018 settings: charges ±1,
position spread 1, speed 0.5, interaction strength 1, dt 0.001, force clip 100, no box;
input frame 30, target frame 40, sampled every 100 steps), generated with fixed seeds:
{d.n_train} training, {d.n_val} validation and {test['n_trajectories']} test trajectories
(`python -m zoo.data.nbody` regenerates them and checks their checksum).""",
            results=f"""| model | source | test MSE |
|---|---|---|
| **this model** ({epochs_text(info)}) | measured | **{test['mse']:.5f}** |
{rows}
{before}
The published numbers come from far longer training (EGNN 10,000 epochs, SEGNN 1000, ACE 2000);
this model had {epochs_text(info)} on one CPU thread.""",
            equivariance=f"""Largest relative error over random rotations, reflections,
translations and particle permutations of real test inputs: float64
{results['equivariance']['float64']:.2e}, float32 {results['equivariance']['float32']:.2e}.
The model is E(3)-equivariant (reflections included): positions are centred per system, never per
particle.""",
            citations=CITATIONS,
        )
