"""The energy/force card's sections: rMD17 (published MAEs beside this model's) or the user's
own frames (the files with their sha256, which frames the metrics come from)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.tasks.base import TaskCard
from zoo.tasks.card_text import (
    ACE_BIBTEX,
    CR_BIBTEX,
    CardSections,
    bibtex,
    epochs_text,
    total_epochs,
    training_sentence,
)

if TYPE_CHECKING:
    from zoo.train.recipe_schema import Recipe

# Published test MAEs, energy meV / forces meV/Å. Equiformer and CR: original MD17, 950 train
# frames; MACE / NequIP / Allegro: rMD17, 1000 train frames (see ../shared/data/README.md).
PUBLISHED: dict[str, list[tuple[str, str, float, float]]] = {
    "aspirin": [
        ("Equiformer (L_max=2), MD17", "Liao & Smidt 2023", 5.3, 7.2),
        ("Equiformer + constraint relaxation, MD17", "Pertigkiozoglou et al. 2024", 5.2, 7.1),
        ("MACE, rMD17", "Batatia et al. 2022", 2.2, 6.6),
        ("NequIP (L=3), rMD17", "Batzner et al. 2022", 2.3, 8.2),
        ("Allegro, rMD17", "Musaelian et al. 2023", 2.3, 7.3),
    ],
    "ethanol": [
        ("Equiformer (L_max=2), MD17", "Liao & Smidt 2023", 2.2, 3.1),
        ("Equiformer + constraint relaxation, MD17", "Pertigkiozoglou et al. 2024", 2.0, 2.9),
        ("MACE, rMD17", "Batatia et al. 2022", 0.4, 2.1),
        ("NequIP (L=3), rMD17", "Batzner et al. 2022", 0.4, 2.8),
    ],
}

EQUIFORMER_BIBTEX = """@inproceedings{liao2023equiformer,
  title={Equiformer: Equivariant Graph Attention Transformer for 3D Atomistic Graphs},
  author={Liao, Yi-Lun and Smidt, Tess}, booktitle={ICLR}, year={2023}}"""
RMD17_BIBTEX = """@article{christensen2020role,
  title={On the role of gradients for machine learning of molecular energies and forces},
  author={Christensen, Anders S. and von Lilienfeld, O. Anatole},
  journal={Machine Learning: Science and Technology}, volume={1}, pages={045018}, year={2020}}"""
CITATIONS = bibtex(EQUIFORMER_BIBTEX, CR_BIBTEX, RMD17_BIBTEX)

_ARCHITECTURE_NAMES = {"equiformer": "Equiformer"}


def _symbol(z: Any) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


class RMD17Card(TaskCard):
    """Sections of an energy/force model's card."""

    def sections(self, recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                 model) -> CardSections:
        if recipe.data.train_file is not None:
            return own_data_sections(recipe, results, info, model)
        return rmd17_sections(recipe, results, info, model)


def rmd17_sections(recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                   model) -> CardSections:
    """An rMD17 model: the published MAEs of the molecule beside this model's."""
    test, equivariance = results["test"], results["equivariance"]
    d, preset = recipe.data, recipe.model.preset
    method = recipe.relaxation.method
    n_params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(
        f"| {name} | {source} | {e:.1f} | {f:.1f} |" for name, source, e, f in
        PUBLISHED.get(d.molecule, [])
    )
    ours = (f"| **this model** ({epochs_text(info)}) | measured | "
            f"**{test['energy_mae']:.2f}** | **{test['forces_mae']:.2f}** |")
    return CardSections(
        task=("energy-and-forces", "Energy and force regression"),
        dataset=("rmd17", f"rMD17 {d.molecule} (test split)"),
        metrics=[("mae", "Energy MAE (meV)", test["energy_mae"]),
                 ("mae", "Force MAE (meV/Å)", test["forces_mae"])],
        tags=["e3nn", "equiformer", "interatomic-potential", "rmd17"],
        summary=f"""Equiformer ({preset} preset, {n_params:,} parameters) predicting the energy (eV)
and forces (eV/Å) of **{d.molecule}**, trained on revised MD17 with
{training_sentence(method)}""",
        intended_use=f"""\
For: molecular dynamics and energy/force prediction of {d.molecule} conformations near the
rMD17 trajectory (300 K), as an example of relaxed-then-projected training, and as a starting point
for fine-tuning (`zoo.load(name, relaxed=True)`).
Not for: other molecules, reactions, or conditions far from the training distribution; any
quantitative claim beyond the level of theory below.""",
        data=f"""\
rMD17 {d.molecule} (Christensen & von Lilienfeld 2020), PBE/def2-SVP, energies and forces in eV and
eV/Å. Training: {d.n_train} frames and validation: {d.n_val} frames drawn with seed
{d.split_seed} from the train file; test: {test['n_frames']} held-out frames of the test file.""",
        results=f"""| model | source | energy MAE (meV) | force MAE (meV/Å) |
|---|---|---|---|
{ours}
{rows}

The published Equiformer numbers use 1500 epochs of the paper-sized `md17` preset on original MD17;
this model had {epochs_text(info)} of the `{preset}` preset ({total_epochs(info) / 1500:.1%}
of the paper's epoch budget), so it is not expected to match them.""",
        equivariance=f"""\
Largest relative error over random rotations, translations and atom permutations of real test
frames: float64 {equivariance['float64']:.2e}, float32 {equivariance['float32']:.2e}.
The model has no reflection symmetry by construction (SE(3) irreps, as Equiformer).""",
        citations=CITATIONS,
        energy_model=True,
    )


def own_data_sections(recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                      model) -> CardSections:
    """A model trained (usually fine-tuned) on the user's own frames.

    It names the model by its folder (``recipe.name``), records the parent model, the data files
    with their sha256, and says which frames the metrics come from: a test file, or (none given)
    the validation frames, which are then not a held-out test.
    """
    from zoo.tasks.rmd17.own_data import DEFAULT_VAL_FRACTION, describe_data_files

    d, method = recipe.data, recipe.relaxation.method
    files = describe_data_files(d)
    test, equivariance = results["test"], results["equivariance"]
    architecture = getattr(model, "architecture", recipe.model.architecture)
    shown = _ARCHITECTURE_NAMES.get(architecture, architecture)
    n_params = sum(p.numel() for p in model.parameters())
    parent = info.get("parent")
    held_out = bool(d.test_file)
    split = "test frames (held out)" if held_out else "validation frames"
    train_name = Path(d.train_file).name
    val_text = (f"`{files['val']['path']}` (sha256 `{files['val']['sha256']}`)" if "val" in files
                else f"a random {d.val_fraction or DEFAULT_VAL_FRACTION:.0%} of the train file "
                     f"(seed {d.split_seed})")
    test_text = (
        f"test: {test['n_frames']} frames of `{files['test']['path']}` (sha256 "
        f"`{files['test']['sha256']}`)." if held_out else
        "no test file was given: **the metrics below are measured on the validation frames**, "
        "which also steered training, so they are not a held-out test (`--test FILE` gives one)."
    )
    references = getattr(model, "model_args", {}).get("atomic_energies") or {}
    reference_text = ", ".join(f"{_symbol(z)} {e:.4f}" for z, e in sorted(
        references.items(), key=lambda kv: int(kv[0])))
    relaxed = results.get("relaxed_test")
    before = (f"\n| before projection (relaxed, levels as trained) | {relaxed['energy_mae']:.2f} | "
              f"{relaxed['forces_mae']:.2f} | {relaxed['n_frames']} |" if relaxed else "")
    elements = ", ".join(_symbol(z) for z in (getattr(model, "elements", None) or ()))
    ours = (f"| **this model** (projected, {info['epochs']} epochs) | "
            f"**{test['energy_mae']:.2f}** | **{test['forces_mae']:.2f}** | {test['n_frames']} |")
    citations = [EQUIFORMER_BIBTEX] if architecture == "equiformer" else []
    citations += {"cr": [CR_BIBTEX], "ace": [ACE_BIBTEX]}.get(method, [])
    return CardSections(
        task=("energy-and-forces", "Energy and force regression"),
        dataset=("custom", f"{train_name} ({split})"),
        metrics=[("mae", "Energy MAE (meV)", test["energy_mae"]),
                 ("mae", "Force MAE (meV/Å)", test["forces_mae"])],
        tags=[architecture, "interatomic-potential", "fine-tuned" if parent else "own-data"],
        hub_dataset=False,
        base_model=(parent or {}).get("repo_id"),
        summary=f"""\
{shown} ({recipe.model.preset} preset, {n_params:,} parameters) predicting the energy (eV)
and forces (eV/Å) of the structures in `{train_name}`, trained with
{training_sentence(method)}""",
        load_note=" (this folder)",
        show_parent=True,
        intended_use=f"""\
For: energies and forces of structures like those of the training file. Not for: elements
other than {elements or 'those of the training file'} (refused), periodic systems (every frame
is an isolated molecule), or conditions far from the training frames.""",
        data=f"""\
- Train: `{files['train']['path']}` (sha256 `{files['train']['sha256']}`), energies under
  `{d.energy_key}` and forces under `{d.forces_key}`; validation: {val_text}.
- {test_text}
- Per-element reference energies refit on the training frames (eV): {reference_text}.""",
        results_title=f"Results ({split})",
        results=f"""| model | energy MAE (meV) | force MAE (meV/Å) | frames |
|---|---|---|---|
{ours}{before}""",
        equivariance=f"""\
Largest relative error over random rotations, translations and atom permutations of these
frames: float64 {equivariance['float64']:.2e}, float32 {equivariance['float32']:.2e}.""",
        citations=bibtex(*citations) if citations else "See the parent model card.",
        energy_model=True,
    )
