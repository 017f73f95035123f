"""The benchmarks recipes train on: one home per benchmark, looked up by ``data.dataset``.

Layout (three layers, each importing only the ones below it; the one exception is the leaf
module :mod:`zoo.train.recipe_schema`, whose section base classes the tasks' sections extend)::

    zoo/data/<dataset>.py         the dataset: download or simulation, cache, loading, splits
                                  (`python -m zoo.data.nbody` regenerates; no training code)
    zoo/tasks/base.py             the Task base class (and TaskCard, the card's part)
    zoo/tasks/card_text.py        what card sections share: CardSections, citations, phrases
    zoo/tasks/<benchmark>/        the benchmark on that data (rmd17, nbody, modelnet40, smoke):
        task.py                   its recipe sections (data, loss), the Task: splits for a
                                  recipe, loss and validation metrics of a batch, test metrics,
                                  equivariance on real inputs, config.json entries
        card.py                   its card sections (published numbers, citations) and figures
        ...                       what only that benchmark needs (rmd17: reference energies,
                                  the user's own files; modelnet40: its evaluation protocol)
    zoo/train/                    everything shared: the typed recipe, ONE Lightning module for
                                  every task, the run, export, the card renderer, comparisons

A task is plain torch: ``zoo verify`` uses :func:`get_task` to re-measure a card's metrics
without importing Lightning, which only :mod:`zoo.train.module` and
:mod:`zoo.train.run` import.

    from zoo.tasks import get_task
    task = get_task("nbody")
    metrics = task.evaluate(model, task.load_test(config["data"], None, torch.float32), 100)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoo.tasks.base import Task

# data.dataset -> the class of its task (imported on first use).
_TASK_CLASSES = {
    "rmd17": "zoo.tasks.rmd17.task:RMD17Task",
    "nbody": "zoo.tasks.nbody.task:NBodyTask",
    "modelnet40": "zoo.tasks.modelnet40.task:ModelNet40Task",
    "smoke-rotation": "zoo.tasks.smoke.task:SmokeRotationTask",
}
_TASKS: dict[str, Task] = {}

__all__ = ["get_task", "list_datasets"]


def get_task(dataset: str) -> Task:
    """The task of a dataset name (``rmd17``, ``nbody``, ``modelnet40``, ``smoke-rotation``).

    Raises
    ------
    ValueError
        No task trains on ``dataset``.
    """
    if dataset not in _TASKS:
        path = _TASK_CLASSES.get(dataset)
        if path is None:
            raise ValueError(
                f"data.dataset {dataset!r} is not supported; "
                f"choose one of {sorted(_TASK_CLASSES)}"
            )
        module, name = path.split(":")
        task = getattr(importlib.import_module(module), name)()
        assert task.dataset == dataset, (path, task.dataset)
        _TASKS[dataset] = task
    return _TASKS[dataset]


def list_datasets() -> list[str]:
    """Datasets that recipes can train on."""
    return sorted(_TASK_CLASSES)
