"""Model cards: one renderer for every benchmark.

:func:`render_card` writes what every card has (Hugging Face front matter with a
``model-index``, title, "Load it with", training, run history and cost, fine-tuning, citation)
around the benchmark's own sections (:meth:`zoo.tasks.base.TaskCard.sections`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from zoo.tasks.card_text import METHOD_NAMES, earlier_stages
from zoo.train.history import HISTORY_FIGURE, history_stages

if TYPE_CHECKING:
    from zoo.tasks.base import Task
    from zoo.tasks.card_text import CardSections
    from zoo.train.recipe_schema import Recipe


def render_card(recipe: Recipe, task: Task, results: dict[str, Any], info: dict[str, Any],
                model) -> str:
    """The card (markdown with YAML front matter) of an exported run.

    Parameters
    ----------
    recipe
        The run's recipe.
    task
        Its benchmark, which supplies the sections that differ between benchmarks.
    results
        ``{"test", "equivariance", "relaxed_test", "final_levels", "validation"}`` as measured
        at export.
    info
        Command, epochs, seed, wall time, hardware, parent and the like.
    model
        The projected model.
    """
    s = task.card.sections(recipe, results, info, model)
    parent = (f"## Parent model\n\nFine-tuned from {parent_text(info)}; its own card gives its "
              "training data and results.\n\n" if s.show_parent and info.get("parent") else "")
    body = f"""
# {recipe.name}

{s.summary.strip()}
Load it with `zoo.load("{recipe.name}")`{s.load_note}.

{parent}## Intended use

{s.intended_use.strip()}

## Data

{s.data.strip()}

## {s.results_title}

{s.results.strip()}

## Equivariance after projection

{s.equivariance.strip()}

{training_section(recipe, info, results.get("final_levels") or {})}
{finetuning_section(recipe.name, energy_model=s.energy_model)}
## Citation

{s.citations.strip()}
"""
    meta = yaml.safe_dump(front_matter(recipe, s), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n{body}"


def front_matter(recipe: Recipe, s: CardSections) -> dict[str, Any]:
    """Hugging Face front matter with a ``model-index`` of the test results."""
    front: dict[str, Any] = {
        "library_name": "zoo",
        "license": recipe.export.license,
        "tags": ["equivariant", *s.tags, "relaxed-equivariance",
                 f"relaxation-{recipe.relaxation.method}"],
    }
    if s.hub_dataset:
        front["datasets"] = [s.dataset[0]]
    front["metrics"] = sorted({m[0] for m in s.metrics})
    front["model-index"] = [{
        "name": recipe.name,
        "results": [{
            "task": {"type": s.task[0], "name": s.task[1]},
            "dataset": {"type": s.dataset[0], "name": s.dataset[1]},
            "metrics": [{"type": t, "name": n, "value": v} for t, n, v in s.metrics],
        }],
    }]
    if s.base_model:
        front["base_model"] = s.base_model
    return front


def optimizer_text(recipe: Recipe) -> str:
    """Optimiser, schedule and weight averaging in one phrase."""
    o, sc, t = recipe.optimizer, recipe.schedule, recipe.training
    name = o.name + (" (AMSGrad)" if o.amsgrad else "")
    if sc.name == "plateau":
        schedule = f"lr x{sc.factor} after {sc.patience} epochs without validation improvement"
        if sc.anneal_start is not None:
            schedule += (f", then from epoch {sc.anneal_start} a cosine decay to "
                         f"{o.lr * sc.min_lr_ratio:g} over {sc.anneal_epochs} epochs")
    else:
        schedule = f"schedule {sc.name} with {sc.warmup_epochs} warm-up epochs"
    ema = (f"; exponential moving average of the weights (decay {t.ema_decay}) validated "
           "and exported" if t.ema_decay else "")
    return f"optimiser {name} lr {o.lr}, {schedule}{ema}"


def branch_text(relaxation: Any) -> str:
    """The branches and how their symmetry-violation term was estimated, in words."""
    form = (f"low-rank (rank {relaxation.rank})" if relaxation.form == "lowrank"
            else relaxation.form)
    text = f"{form} branches"
    if relaxation.penalty_rows is not None:
        text += f", violation term on at most {relaxation.penalty_rows} random rows per site"
    if relaxation.penalty_every > 1:
        text += (f", once every {relaxation.penalty_every} steps (scaled by "
                 f"{relaxation.penalty_every})")
    if relaxation.init_scale:
        text += (f", output layers initialised at PyTorch's default times "
                 f"{relaxation.init_scale:g}")
    return text


def total_cpu_hours(info: dict[str, Any]) -> float | None:
    """CPU-hours of this run and of every earlier stage it was fine-tuned from (``None`` where
    one of them is unknown)."""
    hours = [info.get("cpu_hours"), *(s.get("cpu_hours") for s in earlier_stages(info))]
    return None if any(h is None for h in hours) else sum(hours)


def cost_text(info: dict[str, Any]) -> str:
    """Wall time and CPU-hours over every segment of the run (and of its earlier stages)."""
    text = f"wall time {info['wall_time_s'] / 60:.1f} min"
    if info.get("cpu_hours") is None:
        return text
    earlier, total = earlier_stages(info), total_cpu_hours(info)
    if not earlier:
        return text + f", {info['cpu_hours']:.2f} CPU-hours in total"
    if total is None:
        return text + (f", {info['cpu_hours']:.2f} CPU-hours in this run (the earlier stages' "
                       "cost is not recorded)")
    return text + (f", {info['cpu_hours']:.2f} CPU-hours in this run and {total:.2f} in total "
                   f"with the {len(earlier)} earlier stage{'s' if len(earlier) > 1 else ''} "
                   "listed below")


def _segment_lines(segments: list[dict[str, Any]], indent: str) -> list[str]:
    return [f"{indent}{i}. `{seg['command']}`" + (f" ({seg['started']})" if seg.get("started")
                                                  else "")
            for i, seg in enumerate(segments, 1)]


def history_text(info: dict[str, Any]) -> str:
    """The command of every training segment (a resumed run has several), after those of the
    earlier stages a fine-tuned model comes from."""
    lines = []
    earlier = earlier_stages(info)
    if earlier:
        lines.append("- Earlier stages, oldest first (this run started from the last one's "
                     "weights):")
        for stage in earlier:
            hours = stage.get("cpu_hours")
            cost = f", {hours:.2f} CPU-hours" if hours is not None else ""
            lines.append(f"  - `{stage['name']}`: {stage.get('epochs')} epochs{cost}, "
                         f"{len(stage['segments'])} segment(s):")
            lines += _segment_lines(stage["segments"], "    ")
    segments = info.get("segments") or [{"command": info["command"]}]
    if len(segments) == 1 and not earlier:
        return "\n".join([f"- Command: `{segments[0]['command']}`", *snapshot_lines(info)])
    title = "This run" if earlier else "Run history"
    lines.append(f"- {title} ({len(segments)} segments, resumed from checkpoints):"
                 if len(segments) > 1 else f"- {title}:")
    lines += _segment_lines(segments, "  ")
    return "\n".join(lines + snapshot_lines(info))


def snapshot_lines(info: dict[str, Any]) -> list[str]:
    """The card's line for a model exported from a run's checkpoint by ``zoo export`` (no
    training in that command; the run may have gone on training)."""
    snapshot = info.get("snapshot")
    if not snapshot:
        return []
    planned = snapshot.get("planned_epochs")
    if planned and snapshot["epochs"] >= planned:  # a finished run, exported again
        return [f"- Exported from the finished run's checkpoint (all {planned} epochs its "
                f"recipe plans) by `{snapshot['command']}` ({snapshot['exported']}), which "
                "trains nothing."]
    of = f" of the {planned} its recipe plans" if planned else ""
    return [f"- Snapshot: exported after {snapshot['epochs']} epochs{of} from the run's "
            f"checkpoint by `{snapshot['command']}` ({snapshot['exported']}), which trains "
            "nothing; the CPU-hours above are those spent up to that checkpoint."]


def training_section(recipe: Recipe, info: dict[str, Any], levels: dict[str, float]) -> str:
    """The card's training section (shared by every benchmark)."""
    level_text = (
        ", ".join(f"layer {k.split('/')[1]}: {v:.3g}"
                  for k, v in sorted(levels.items(), key=lambda kv: int(kv[0].split("/")[1])))
        if levels else "no relaxation"
    )
    r, o, t = recipe.relaxation, recipe.optimizer, recipe.training
    relax_text = (
        f"{METHOD_NAMES[r.method]}, {branch_text(r)}, lambda_reg {r.lambda_reg}, "
        f"controller {r.controller or 'defaults'}" if r.method != "none" else "none"
    )
    selected = published_weights_text(info, ema=bool(t.ema_decay))
    history = (f"\n![validation over the whole training history, {len(stages)} stages]"
               f"({HISTORY_FIGURE})\n" if (stages := history_stages(info)) else "")
    return f"""## Training

![training curves and relaxation levels](training_curves.png)
{history}
{selected}
- Relaxation: {relax_text}; levels at the end of training (before projection): {level_text}.
  Validation metrics are measured on the projected model every epoch.
- Loss: {recipe.loss.describe()}; {optimizer_text(recipe)}, weight decay
  {o.weight_decay}; batch {t.batch_size}; {info['epochs']} epochs; random rotation per sample and
  epoch: {t.augment_rotations}.
- Seed {info['seed']}; {cost_text(info)}; hardware: {info['hardware']}.
{history_text(info)}
- Fine-tuned from: {parent_text(info)}.
"""


def published_weights_text(info: dict[str, Any], ema: bool) -> str:
    """Which epoch's weights the card's model holds (chosen on validation, or the last one)."""
    averaged = "; the exponential moving average of the weights" if ema else ""
    if "selected_epoch" in info:
        return (f"- Published weights: epoch {info['selected_epoch']} (0-based{averaged}), the "
                "best validation metric of the projected model.")
    return (f"- Published weights: the last epoch, {info['epochs'] - 1} (0-based{averaged}); "
            "the recipe does not select an epoch on validation.")


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
