"""Model cards: Hugging Face front matter plus what was measured, beside the published numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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

# The relaxation papers, cited by every card whose model they trained.
CR_BIBTEX = """@inproceedings{pertigkiozoglou2024improving,
  title={Improving Equivariant Model Training via Constraint Relaxation},
  author={Pertigkiozoglou, Stefanos and Chatzipantazis, Evangelos and Trivedi, Shubhendu
          and Daniilidis, Kostas}, booktitle={NeurIPS}, year={2024}}"""
ACE_BIBTEX = """@article{manolache2025learning,
  title={Learning (Approximately) Equivariant Networks via Constrained Optimization},
  author={Manolache, Andrei and Chamon, Luiz F. O. and Niepert, Mathias},
  journal={arXiv}, year={2025}}"""



def bibtex(*entries: str) -> str:
    """A card's citation block."""
    return "```bibtex\n" + "\n".join(entries) + "\n```"


EQUIFORMER_BIBTEX = """@inproceedings{liao2023equiformer,
  title={Equiformer: Equivariant Graph Attention Transformer for 3D Atomistic Graphs},
  author={Liao, Yi-Lun and Smidt, Tess}, booktitle={ICLR}, year={2023}}"""
RMD17_BIBTEX = """@article{christensen2020role,
  title={On the role of gradients for machine learning of molecular energies and forces},
  author={Christensen, Anders S. and von Lilienfeld, O. Anatole},
  journal={Machine Learning: Science and Technology}, volume={1}, pages={045018}, year={2020}}"""
CITATIONS = bibtex(EQUIFORMER_BIBTEX, CR_BIBTEX, RMD17_BIBTEX)

_METHOD_NAMES = {
    "none": "standard (equivariant throughout)",
    "cr": "constraint relaxation (CR)",
    "ace": "adaptive constrained equivariance (ACE)",
    "recm": "RECM-style recurrent level modulation",
}


STANDARD_SENTENCE = (
    "**standard training**: exactly SE(3)-equivariant throughout (no relaxation branches, "
    "nothing to project)."
)
_RELAXED_SENTENCE = (
    "**{name}** and then projected back to an exactly SE(3)-equivariant model."
)


def _training_sentence(method: str) -> str:
    if method == "none":
        return STANDARD_SENTENCE
    return _RELAXED_SENTENCE.format(name=_METHOD_NAMES[method])


def front_matter(recipe: dict[str, Any], test: dict[str, float]) -> dict[str, Any]:
    """Hugging Face model-card metadata with a ``model-index`` of the test results."""
    molecule = recipe["data"]["molecule"]
    return {
        "library_name": "zoo",
        "license": recipe["export"]["license"],
        "tags": ["equivariant", "e3nn", "equiformer", "interatomic-potential", "rmd17",
                 "relaxed-equivariance", f"relaxation-{recipe['relaxation']['method']}"],
        "datasets": ["rmd17"],
        "metrics": ["mae"],
        "model-index": [{
            "name": recipe["name"],
            "results": [{
                "task": {"type": "energy-and-forces", "name": "Energy and force regression"},
                "dataset": {"type": "rmd17", "name": f"rMD17 {molecule} (test split)"},
                "metrics": [
                    {"type": "mae", "name": "Energy MAE (meV)", "value": test["energy_mae"]},
                    {"type": "mae", "name": "Force MAE (meV/Å)", "value": test["forces_mae"]},
                ],
            }],
        }],
    }


def render_card(
    recipe: dict[str, Any],
    test: dict[str, float],
    equivariance: dict[str, float],
    info: dict[str, Any],
    metrics: dict[str, list[tuple[int, float]]],
    model: Any,
) -> str:
    """The card (markdown with YAML front matter) of an exported run."""
    molecule = recipe["data"]["molecule"]
    method = recipe["relaxation"]["method"]
    n_params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(
        f"| {name} | {source} | {e:.1f} | {f:.1f} |" for name, source, e, f in
        PUBLISHED.get(molecule, [])
    )
    levels = {k: v[-1][1] for k, v in metrics.items() if k.startswith("level/")}
    level_text = (
        ", ".join(f"layer {k.split('/')[1]}: {v:.3g}" for k, v in sorted(levels.items()))
        if levels else "no relaxation"
    )
    d, t = recipe["data"], recipe["training"]
    ours = (f"| **this model** ({info['epochs']} epochs) | measured | "
            f"**{test['energy_mae']:.2f}** | **{test['forces_mae']:.2f}** |")
    body = f"""
# {recipe['name']}

Equiformer ({recipe['model']['preset']} preset, {n_params:,} parameters) predicting the energy (eV)
and forces (eV/Å) of **{molecule}**, trained on revised MD17 with
{_training_sentence(method)}
Load it with `zoo.load("{recipe['name']}")`.

## Intended use

For: molecular dynamics and energy/force prediction of {molecule} conformations near the
rMD17 trajectory (300 K), as an example of relaxed-then-projected training, and as a starting point
for fine-tuning (`zoo.load(name, relaxed=True)`).
Not for: other molecules, reactions, or conditions far from the training distribution; any
quantitative claim beyond the level of theory below.

## Data

rMD17 {molecule} (Christensen & von Lilienfeld 2020), PBE/def2-SVP, energies and forces in eV and
eV/Å. Training: {d['n_train']} frames and validation: {d['n_val']} frames drawn with seed
{d['split_seed']} from the train file; test: {test['n_frames']} held-out frames of the test file.

## Results (test split, held out)

| model | source | energy MAE (meV) | force MAE (meV/Å) |
|---|---|---|---|
{ours}
{rows}

The published Equiformer numbers use 1500 epochs of the paper-sized `md17` preset on original MD17;
this model had {info['epochs']} epochs of the `{recipe['model']['preset']}` preset
({info['epochs'] / 1500:.1%} of the paper's epoch budget), so it is not expected to match them.

## Equivariance after projection

Largest relative error over random rotations, translations and atom permutations of real test
frames: float64 {equivariance['float64']:.2e}, float32 {equivariance['float32']:.2e}.
The model has no reflection symmetry by construction (SE(3) irreps, as Equiformer).

## Training

![training curves and relaxation levels](training_curves.png)

- Relaxation: {method}; final levels: {level_text}. Validation MAE is measured on the projected
  model every epoch.
- Loss: {recipe['loss']['kind']}, energy weight {recipe['loss']['energy_weight']}, force weight
  {recipe['loss']['forces_weight']}; {optimizer_text(recipe)}; batch {t['batch_size']}; random
  rotation per sample and epoch: {t['augment_rotations']}.
- Seed {info['seed']}; {cost_text(info)}; hardware: {info['hardware']}.
{history_text(info)}
- Fine-tuned from: {parent_text(info)}.

{finetuning_section(recipe['name'], energy_model=True)}
## Citation

{CITATIONS}
"""
    meta = yaml.safe_dump(front_matter(recipe, test), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n{body}"


def optimizer_text(recipe: Any) -> str:
    """Optimiser, schedule and weight averaging in one phrase."""
    o, sc, t = recipe["optimizer"], recipe["schedule"], recipe["training"]
    name = o["name"] + (" (AMSGrad)" if o.get("amsgrad") else "")
    if sc["name"] == "plateau":
        schedule = (f"lr x{sc['factor']} after {sc['patience']} epochs without validation "
                    "improvement")
    else:
        schedule = f"schedule {sc['name']} with {sc.get('warmup_epochs', 0)} warm-up epochs"
    ema = (f"; exponential moving average of the weights (decay {t['ema_decay']}) validated "
           "and exported" if t.get("ema_decay") else "")
    return f"optimiser {name} lr {o['lr']}, {schedule}{ema}"


def cost_text(info: dict[str, Any]) -> str:
    """Wall time and CPU-hours over every segment of the run."""
    text = f"wall time {info['wall_time_s'] / 60:.1f} min"
    if info.get("cpu_hours") is not None:
        text += f", {info['cpu_hours']:.2f} CPU-hours in total"
    return text


def history_text(info: dict[str, Any]) -> str:
    """The command of every training segment (a resumed run has several)."""
    segments = info.get("segments") or [{"command": info["command"]}]
    if len(segments) == 1:
        return f"- Command: `{segments[0]['command']}`"
    lines = [f"- Run history ({len(segments)} segments, resumed from checkpoints):"]
    lines += [f"  {i}. `{seg['command']}` ({seg.get('started', '')})"
              for i, seg in enumerate(segments, 1)]
    return "\n".join(lines)


def training_section(recipe: dict[str, Any], info: dict[str, Any],
                     levels: dict[str, float]) -> str:
    """The card's training section (shared by every dataset)."""
    method = recipe["relaxation"]["method"]
    level_text = (
        ", ".join(f"layer {k.split('/')[1]}: {v:.3g}"
                  for k, v in sorted(levels.items(), key=lambda kv: int(kv[0].split("/")[1])))
        if levels else "no relaxation"
    )
    r, o, t = recipe["relaxation"], recipe["optimizer"], recipe["training"]
    relax_text = (
        f"{_METHOD_NAMES[method]}, {r['form']} branches, lambda_reg {r['lambda_reg']}, "
        f"controller {r['controller'] or 'defaults'}" if method != "none" else "none"
    )
    selected = (
        f"- Published weights: epoch {info['selected_epoch']} (0-based), the best validation "
        "metric of the projected model." if "selected_epoch" in info else ""
    )
    return f"""## Training

![training curves and relaxation levels](training_curves.png)

{selected}
- Relaxation: {relax_text}; levels at the end of training (before projection): {level_text}.
  Validation metrics are measured on the projected model every epoch.
- Loss: {dict(recipe['loss'].items())}; {optimizer_text(recipe)}, weight decay
  {o['weight_decay']}; batch {t['batch_size']};
  {info['epochs']} epochs; random rotation per sample and epoch: {t['augment_rotations']}.
- Seed {info['seed']}; {cost_text(info)}; hardware: {info['hardware']}.
{history_text(info)}
- Fine-tuned from: {parent_text(info)}.
"""


def parent_text(info: dict[str, Any]) -> str:
    """The model a run was fine-tuned from (name, revision, sha256 of its weights), if any."""
    parent = info.get("parent")
    if not parent:
        return info.get("init_from") or "trained from scratch"
    revision = parent.get("revision") or "none (not on the Hub)"
    return (f"`{parent['name']}` (revision {revision}, weights sha256 "
            f"`{parent.get('sha256') or 'unknown'}`)")


def finetuning_section(name: str, *, energy_model: bool) -> str:
    """The card's "Fine-tuning" section: how to fine-tune this model (``name``) further."""
    if energy_model:
        return f"""## Fine-tuning

On your own labelled frames (any file `ase.io.read` reads; energies in eV, forces in eV/Å),
with relaxation re-enabled, the per-element reference energies refit and the result projected
back to an exactly equivariant model with its own card:

```bash
zoo finetune {name} --train my_frames.xyz --epochs 10 --output my-model
```

`--energy-key`/`--forces-key` name your file's labels, `--val FILE` or `--val-fraction F` the
validation frames, `--test FILE` held-out test frames, `--relax cr|ace|recm|none` the method.
In Python: `zoo.finetune("{name}", "my_frames.xyz", "my-model")`. In your own training loop:
`zoo.load("{name}", relaxed=True)`, `zoo.refit_reference_energies(model, frames)`, a level
controller from `zoo.relax.make_controller`, and `zoo.relax.project(model)` at the end
(`examples/finetune_custom_loop.py`). Elements this model was not trained on are refused.
"""
    return f"""## Fine-tuning

`zoo finetune` takes energy/force models only. Fine-tune this model on data of its own kind with
a recipe: `zoo train RECIPE.yaml --init-from {name} --output DIR` re-enables relaxation (the
method this model was trained with, or CR; `--relax none` keeps it off) and projects the result;
or in your own loop, `zoo.load("{name}", relaxed=True)` with a level controller from
`zoo.relax.make_controller` and `zoo.relax.project(model)` at the end.
"""


def generic_card(
    *,
    recipe: dict[str, Any],
    front: dict[str, Any],
    summary: str,
    intended_use: str,
    data: str,
    results: str,
    equivariance: str,
    info: dict[str, Any],
    levels: dict[str, float],
    citations: str,
) -> str:
    """A model card from its dataset-specific sections (front matter first)."""
    body = f"""
# {recipe['name']}

{summary.strip()}
Load it with `zoo.load("{recipe['name']}")`.

## Intended use

{intended_use.strip()}

## Data

{data.strip()}

## Results (test split, held out)

{results.strip()}

## Equivariance after projection

{equivariance.strip()}

{training_section(recipe, info, levels)}
{finetuning_section(recipe['name'], energy_model=False)}
## Citation

{citations.strip()}
"""
    meta = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n{body}"


def model_index(recipe: dict[str, Any], task: tuple[str, str], dataset: tuple[str, str],
                metrics: list[tuple[str, str, float]], tags: list[str]) -> dict[str, Any]:
    """Hugging Face front matter with a ``model-index`` of the test results."""
    return {
        "library_name": "zoo",
        "license": recipe["export"]["license"],
        "tags": ["equivariant", *tags, "relaxed-equivariance",
                 f"relaxation-{recipe['relaxation']['method']}"],
        "datasets": [dataset[0]],
        "metrics": sorted({m[0] for m in metrics}),
        "model-index": [{
            "name": recipe["name"],
            "results": [{
                "task": {"type": task[0], "name": task[1]},
                "dataset": {"type": dataset[0], "name": dataset[1]},
                "metrics": [{"type": t, "name": n, "value": v} for t, n, v in metrics],
            }],
        }],
    }


_ARCHITECTURE_NAMES = {"equiformer": "Equiformer"}


def render_file_data_card(
    recipe: dict[str, Any],
    results: dict[str, Any],
    info: dict[str, Any],
    metrics: dict[str, list[tuple[int, float]]],
    model: Any,
    files: dict[str, dict[str, Any]],
) -> str:
    """The card of an energy/force model trained (usually fine-tuned) on the user's own frames.

    It names the model by its folder (``recipe["name"]``), records the parent model, the data
    files with their sha256, and says which frames the metrics come from: a test file, or (none
    given) the validation frames, which are then not a held-out test.
    """
    d, method = recipe["data"], recipe["relaxation"]["method"]
    test, equivariance = results["test"], results["equivariance"]
    architecture = getattr(model, "architecture", recipe["model"]["architecture"])
    shown = _ARCHITECTURE_NAMES.get(architecture, architecture)
    n_params = sum(p.numel() for p in model.parameters())
    parent = info.get("parent")
    held_out = bool(d["test_file"])
    split = "test frames (held out)" if held_out else "validation frames"
    metric_rows = [("energy_mae", "Energy MAE (meV)", test["energy_mae"]),
                   ("forces_mae", "Force MAE (meV/Å)", test["forces_mae"])]
    front = model_index(
        recipe, ("energy-and-forces", "Energy and force regression"),
        ("custom", f"{Path(d['train_file']).name} ({split})"),
        [("mae", label, value) for _, label, value in metric_rows],
        [architecture, "interatomic-potential", "fine-tuned" if parent else "own-data"],
    )
    front.pop("datasets")  # not a Hub dataset
    if parent and parent.get("repo_id"):
        front["base_model"] = parent["repo_id"]
    val_text = (f"`{files['val']['path']}` (sha256 `{files['val']['sha256']}`)" if "val" in files
                else f"a random {d['val_fraction'] or 0.1:.0%} of the train file (seed "
                     f"{d['split_seed']})")
    test_text = (
        f"test: {test['n_frames']} frames of `{files['test']['path']}` (sha256 "
        f"`{files['test']['sha256']}`)." if held_out else
        "no test file was given: **the metrics below are measured on the validation frames**, "
        "which also steered training, so they are not a held-out test (`--test FILE` gives one)."
    )
    references = getattr(model, "model_args", {}).get("atomic_energies") or {}
    reference_text = ", ".join(f"{_formula_of(z)} {e:.4f}" for z, e in sorted(
        references.items(), key=lambda kv: int(kv[0])))
    relaxed = results.get("relaxed_test")
    before = (f"\n| before projection (relaxed, levels as trained) | {relaxed['energy_mae']:.2f} | "
              f"{relaxed['forces_mae']:.2f} | {relaxed['n_frames']} |" if relaxed else "")
    elements = ", ".join(_formula_of(z) for z in (getattr(model, "elements", None) or ()))
    ours = (f"| **this model** (projected, {info['epochs']} epochs) | "
            f"**{test['energy_mae']:.2f}** | **{test['forces_mae']:.2f}** | {test['n_frames']} |")
    citations = [EQUIFORMER_BIBTEX] if architecture == "equiformer" else []
    citations += {"cr": [CR_BIBTEX], "ace": [ACE_BIBTEX]}.get(method, [])
    parent_section = (
        f"""## Parent model

Fine-tuned from {parent_text(info)}; its own card gives its training data and results.
""" if parent else "")
    body = f"""
# {recipe['name']}

{shown} ({recipe['model']['preset']} preset, {n_params:,} parameters) predicting the energy (eV)
and forces (eV/Å) of the structures in `{Path(d['train_file']).name}`, trained with
{_training_sentence(method)}
Load it with `zoo.load("{recipe['name']}")` (this folder).

{parent_section}
## Intended use

For: energies and forces of structures like those of the training file. Not for: elements
other than {elements or 'those of the training file'} (refused), periodic systems (every frame
is an isolated molecule), or conditions far from the training frames.

## Data

- Train: `{files['train']['path']}` (sha256 `{files['train']['sha256']}`), energies under
  `{d['energy_key']}` and forces under `{d['forces_key']}`; validation: {val_text}.
- {test_text}
- Per-element reference energies refit on the training frames (eV): {reference_text}.

## Results ({split})

| model | energy MAE (meV) | force MAE (meV/Å) | frames |
|---|---|---|---|
{ours}{before}

## Equivariance after projection

Largest relative error over random rotations, translations and atom permutations of these
frames: float64 {equivariance['float64']:.2e}, float32 {equivariance['float32']:.2e}.

{training_section(recipe, info, results.get('final_levels') or {})}
{finetuning_section(recipe['name'], energy_model=True)}
## Citation

{bibtex(*citations) if citations else 'See the parent model card.'}
"""
    meta = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n{body}"


def _formula_of(z: Any) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]
