"""What training needs to know about a dataset: its data, model, Lightning task, metrics and card.

A recipe names its dataset (``data.dataset``); the :class:`TrainingFamily` registered for that
dataset supplies everything that differs between, say, energy/force regression on rMD17,
trajectory prediction on N-body and point-cloud classification on ModelNet40. The rest of
training (recipes, Lightning trainer, checkpoints, relaxation controllers, projection, export
and publishing) is shared.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, ClassVar

import torch

from zoo.train.recipe_schema import DataSection, LossSection

# dataset name -> module that defines and registers its family (imported on first use).
_FAMILY_MODULES = {
    "rmd17": "zoo.train.molecules",
    "nbody": "zoo.train.nbody",
    "modelnet40": "zoo.train.pointclouds",
    "smoke-rotation": "zoo.train.smoke",
}
_FAMILIES: dict[str, TrainingFamily] = {}


class TrainingFamily:
    """Base class of the per-dataset training families.

    Attributes
    ----------
    dataset
        The recipe's ``data.dataset`` value.
    defaults
        Recipe values of this dataset that differ from the shared section defaults (the model
        at least), merged over them.
    data_model, loss_model
        The typed ``data`` and ``loss`` recipe sections of this dataset.
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

    def load_data(self, recipe: dict[str, Any], dtype: torch.dtype) -> tuple[Any, Any, Any]:
        """Train, validation and test data of the recipe's split."""
        raise NotImplementedError

    def build_model(self, recipe: dict[str, Any], train: Any, init_from: str | None):
        """The unrelaxed model, fresh (fitted to ``train`` where needed) or from a published one.

        The default builds the recipe's architecture and preset, or loads ``init_from``.
        """
        if init_from is not None:
            from zoo.hub.load import load

            return load(init_from)
        from zoo._registry import create_model

        cfg = recipe["model"]
        return create_model(cfg["architecture"], cfg["preset"], **cfg["args"])

    def make_task(self, model, recipe: dict[str, Any], train: Any, val: Any):
        """The Lightning module that trains ``model``."""
        raise NotImplementedError

    def evaluate(self, model, data: Any, batch_size: int) -> dict[str, Any]:
        """Test metrics of ``model`` on ``data`` (rounded as they go into the card)."""
        raise NotImplementedError

    def equivariance_errors(self, model, data: Any) -> dict[str, float]:
        """Largest relative equivariance errors on real inputs, ``{"float32", "float64"}``."""
        raise NotImplementedError

    def load_test(self, data_cfg: dict[str, Any], root: str | None, dtype: torch.dtype) -> Any:
        """The test split named by an exported config's ``data`` (for ``zoo verify``)."""
        raise NotImplementedError

    def render_card(self, recipe: dict[str, Any], results: dict[str, Any], info: dict[str, Any],
                    curves: dict[str, list[tuple[int, float]]], model) -> str:
        """The model card (markdown with Hugging Face front matter)."""
        raise NotImplementedError

    def write_figures(self, model, data: Any, folder, recipe: dict[str, Any]) -> None:
        """Extra figures for the card, written into the export ``folder`` (default: none)."""

    def config_extra(self, recipe: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        """Dataset-specific entries of the exported ``config.json`` (units, dataset, metrics)."""
        raise NotImplementedError

    # --- shared helpers --------------------------------------------------------------------
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
    from zoo.testing import equivariance_report

    out = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        report = equivariance_report(model, inputs=inputs, dtype=dtype)
        out[name] = float(f"{max(report.values()):.3g}")
    return out


def register_family(family_cls: type[TrainingFamily]) -> type[TrainingFamily]:
    """Class decorator: make ``family_cls`` the family of its ``dataset``."""
    if not family_cls.dataset:
        raise ValueError(f"{family_cls.__name__} declares no dataset")
    _FAMILIES[family_cls.dataset] = family_cls()
    return family_cls


def get_family(dataset: str) -> TrainingFamily:
    """The training family of a dataset name (``rmd17``, ``nbody``, ``modelnet40``)."""
    if dataset not in _FAMILIES:
        module = _FAMILY_MODULES.get(dataset)
        if module is None:
            raise ValueError(
                f"data.dataset {dataset!r} is not supported; "
                f"choose one of {sorted(_FAMILY_MODULES)}"
            )
        importlib.import_module(module)
    return _FAMILIES[dataset]


def list_datasets() -> list[str]:
    """Datasets that recipes can train on."""
    return sorted(_FAMILY_MODULES)
