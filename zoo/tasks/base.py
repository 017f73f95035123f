"""The benchmark base class: what differs between, say, rMD17, N-body and ModelNet40.

A :class:`Task` owns a benchmark's recipe sections (``data``, ``loss``), its splits, the model a
run starts from, the loss and validation metrics of a batch (plain torch: the one Lightning
module of :mod:`zoo.train.module` calls them), the test metrics a card reports and ``zoo verify``
re-measures, and the dataset entries of ``config.json``. Its card text and figures are a
:class:`TaskCard` of its own (:attr:`Task.card`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zoo.train.recipe_schema import DataSection, LossSection

if TYPE_CHECKING:
    from pathlib import Path

    from zoo.tasks.card_text import CardSections
    from zoo.train.recipe_schema import Recipe


@dataclass
class RootMeanSquare:
    """A validation metric over the whole epoch, not a mean of per-batch values:
    ``sqrt(sum of squares / count)``, summed over the batches (and devices) first."""

    squared_sum: torch.Tensor
    count: torch.Tensor


class TaskCard:
    """A benchmark's part of the model card: its sections and figures (the parts every card
    shares are :func:`zoo.train.card.render_card`'s)."""

    def sections(self, recipe: Recipe, results: dict[str, Any], info: dict[str, Any],
                 model) -> CardSections:
        """The card's benchmark-specific sections."""
        raise NotImplementedError

    def write_figures(self, model, data: Any, folder: Path, recipe: Recipe) -> None:
        """Extra figures for the card, written into the export ``folder`` (default: none)."""


class Task:
    """Base class of the benchmarks that recipes train on (one subclass per ``data.dataset``).

    Attributes
    ----------
    dataset
        The recipe's ``data.dataset`` value.
    defaults
        Recipe values of this benchmark that differ from the shared section defaults (the model
        at least), merged over them.
    data_model, loss_model
        The typed ``data`` and ``loss`` recipe sections of this benchmark.
    primary_metric
        Key of :meth:`evaluate`'s result that ranks models (the card's headline number).
    higher_is_better
        Whether a larger ``primary_metric`` is better (accuracy) or worse (errors).
    validation_curve
        The logged per-epoch validation metric (of the projected model) matching
        ``primary_metric``; it selects between seeds and methods.
    comparison_columns
        ``(metric key, column header, format)`` of the test metrics a published comparison
        shows; the first also gets a before-projection column.
    select_on
        ``"validation"`` (the default) or ``"test"``: what picks the best method when a family
        of runs is published (``"test"`` only where a published family was selected that way).
    card
        The card text and figures of this benchmark.
    """

    dataset: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    data_model: ClassVar[type[DataSection]] = DataSection
    loss_model: ClassVar[type[LossSection]] = LossSection
    primary_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    validation_curve: ClassVar[str] = ""
    select_on: ClassVar[str] = "validation"
    comparison_columns: ClassVar[list[tuple[str, str, str]]] = []
    card: ClassVar[TaskCard] = TaskCard()

    # --- data and model --------------------------------------------------------------------
    def load_splits(self, recipe: Recipe, dtype: torch.dtype) -> tuple[Any, Any, Any]:
        """Train, validation and test data of the recipe's split."""
        raise NotImplementedError

    def load_test(self, data: dict[str, Any], root: str | None, dtype: torch.dtype) -> Any:
        """The test split named by an exported config's ``data`` (for ``zoo verify``)."""
        raise NotImplementedError

    def initial_model(self, recipe: Recipe, train: Any, init_from: Any):
        """The unrelaxed model a run starts from: fresh (fitted to ``train`` where the benchmark
        needs it) or the published model ``init_from`` (a name or folder).

        The default builds the recipe's architecture and preset, or loads ``init_from``.
        """
        if init_from is not None:
            return starting_model(init_from)
        from zoo._registry import create_model

        m = recipe.model
        return create_model(m.architecture, m.preset, **m.args)

    # --- training (plain torch; zoo.train.module drives it) ---------------------------------
    def training_loss(self, model, batch: Any, recipe: Recipe,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of a training batch in ``epoch`` and what to log (``train/``-prefixed)."""
        raise NotImplementedError

    def model_inputs(self, batch: Any) -> Any:
        """What the model's forward takes from a training or validation batch (default: the
        batch itself, e.g. a PyG ``Batch``); diagnostics run the model on it."""
        return batch

    def validation_metrics(self, model, batch: Any) -> dict[str, torch.Tensor | RootMeanSquare]:
        """Metrics of ``model`` (the projected one) on a validation batch, ``val/``-prefixed:
        tensors are averaged over the epoch's batches, :class:`RootMeanSquare` values summed."""
        raise NotImplementedError

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self, model, data: Any, batch_size: int) -> dict[str, Any]:
        """Test metrics of ``model`` on ``data`` (rounded as they go into the card)."""
        raise NotImplementedError

    def equivariance_errors(self, model, data: Any) -> dict[str, float]:
        """Largest relative equivariance errors on real inputs, ``{"float32", "float64"}``."""
        raise NotImplementedError

    def config_extra(self, recipe: Recipe, results: dict[str, Any]) -> dict[str, Any]:
        """Benchmark entries of the exported ``config.json`` (units, dataset, metrics)."""
        raise NotImplementedError

    # --- ranking ---------------------------------------------------------------------------
    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` beats ``b``."""
        return a > b if self.higher_is_better else a < b

    def best_of(self, values: list[float]) -> float:
        """The best of several metric values (NaN never wins)."""
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return math.nan
        return max(finite) if self.higher_is_better else min(finite)


def equivariance_errors_on(model, inputs: Any) -> dict[str, float]:
    """Largest relative equivariance error of ``model`` on ``inputs`` in float32 and float64
    (3 significant digits, as cards and configs record it)."""
    from zoo.equivariance import equivariance_report

    out = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        report = equivariance_report(model, inputs=inputs, dtype=dtype)
        out[name] = float(f"{max(report.values()):.3g}")
    return out


def starting_model(init_from: Any):
    """The model a fine-tuning run starts from: a published name or folder (loaded), or a model
    object (an independent copy: the caller's model is left as it was)."""
    from torch import nn

    if not isinstance(init_from, nn.Module):
        from zoo.hub.load import load

        return load(init_from)
    from zoo import relax

    if relax.branches(init_from):
        raise ValueError(
            "the model to fine-tune still has relaxation branches: pass the projected model "
            "(zoo.load(name), or zoo.relax.project(model)); fine-tuning attaches fresh ones"
        )
    model = init_from.clone() if hasattr(init_from, "clone") else copy.deepcopy(init_from)
    if hasattr(init_from, "zoo_info"):
        model.zoo_info = dict(init_from.zoo_info)
    return model
