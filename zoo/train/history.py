"""The learning curve over a model's whole training history, across fine-tuning stages.

Each export records its run's per-epoch validation metrics in ``config.json``
(``training.validation_curve``), and a fine-tuned run's parent record carries those of every
earlier stage (:func:`zoo.train.parent.training_lineage`). So the export of a later stage can
plot validation over all epochs that made the model, whichever machine trained the earlier
stages, without their run folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.tasks.card_text import earlier_stages

__all__ = ["HISTORY_FIGURE", "history_stages", "plot_history", "validation_curve"]

#: The card's figure of the whole history (written where an earlier stage recorded its curve).
HISTORY_FIGURE = "training_history.png"


def validation_curve(metrics: dict[str, list[tuple[int, float]]]) -> dict[str, list[list[float]]]:
    """``{"val/...": [[epoch, value], ...]}``: a run's validation series, compact for
    ``config.json`` (5 significant digits)."""
    return {key: [[epoch, float(f"{value:.5g}")] for epoch, value in series]
            for key, series in sorted(metrics.items()) if key.startswith("val/")}


def history_stages(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of a model's training, oldest first, each ``{"name", "epochs", "curve"}``
    (``curve`` empty where a stage did not record one); ``[]`` for a model of one stage or when
    no earlier stage recorded its curve (nothing more to show than the run's own figure)."""
    earlier = earlier_stages(info)
    if not any(stage.get("validation_curve") for stage in earlier):
        return []
    own = {"name": "this run", "epochs": info.get("epochs"),
           "validation_curve": info.get("validation_curve") or {}}
    return [{"name": stage.get("name", "?"), "epochs": stage.get("epochs"),
             "curve": stage.get("validation_curve") or {}} for stage in [*earlier, own]]


def plot_history(stages: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation metrics against the epoch counted from the first stage, one colour per metric,
    with a line where each later stage started from the one before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({key for stage in stages for key in stage["curve"]})
    fig, ax = plt.subplots(figsize=(9, 4.5))
    offset = 0
    for number, stage in enumerate(stages):
        if number:
            ax.axvline(offset - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"stage {number + 1}", (offset, 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize="small")
        for index, key in enumerate(keys):
            series = stage["curve"].get(key) or []
            if series:
                epochs, values = zip(*series, strict=True)
                ax.plot([offset + e for e in epochs], values, color=f"C{index % 10}",
                        label=key)
        length = stage["epochs"] or max((e for s in stage["curve"].values() for e, _ in s),
                                        default=-1) + 1
        offset += length
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))  # one entry per metric, not per stage
    ax.legend(unique.values(), unique.keys())
    ax.set(xlabel="epoch, counted from the first stage", yscale="log",
           title="validation metrics over the whole training history (projected model)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
