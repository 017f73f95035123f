"""The typed recipe: every section a pydantic model, validated and coerced when it is read.

YAML 1.1 reads ``1e-3`` as a string and ``--set`` values arrive as strings: pydantic coerces such
values to the declared type, and refuses what cannot be coerced (``lr: fast``, ``epochs: 2.7``),
out-of-range values (``batch_size: 0``, a negative lr) and unknown keys (``schedul:``), naming the
key. Code uses attributes (``recipe.training.epochs``); sections also read like mappings
(``recipe["training"]["epochs"]``), kept for users' scripts that read recipes that way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from zoo.hub.errors import ZooError


class RecipeError(ZooError, ValueError):
    """A recipe value has the wrong type, is out of range, or its key is unknown."""


class Section(BaseModel):
    """A recipe section: typed fields, unknown keys refused, readable as a mapping."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` where the section has no such field."""
        return getattr(self, key) if key in type(self).model_fields else default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  (mapping iteration)
        return iter(type(self).model_fields)

    def keys(self):
        """Field names, as a mapping's keys."""
        return type(self).model_fields.keys()

    def items(self):
        """``(name, value)`` pairs, as a mapping's items."""
        return ((k, getattr(self, k)) for k in type(self).model_fields)

    def __len__(self) -> int:
        return len(type(self).model_fields)


class ModelSection(Section):
    """Architecture, preset and extra constructor arguments."""

    architecture: str
    preset: str
    args: dict[str, Any] = Field(default_factory=dict)


class CRControllerSection(Section):
    """Constraint relaxation: the level schedule (METHODS.md)."""

    schedule: Literal["triangle", "constant"] = "triangle"
    peak: float = Field(1.0, ge=0.0)
    # Last epochs at level 0 (the schedule spans the epochs before them); see CRController.
    cooldown_epochs: int = Field(0, ge=0)


class ACEControllerSection(Section):
    """ACE: primal and dual step sizes, constraint form."""

    eta_p: float = Field(9e-4, gt=0.0)
    eta_d: float = Field(8e-4, gt=0.0)
    form: Literal["equality", "resilient"] = "equality"
    rho: float = Field(1.0, gt=0.0)
    u_init: float = 0.0
    # Augmented Lagrangian weight (ACEController): 0 is the published algorithm.
    damping: float | Literal["critical"] = 0.0


class RECMControllerSection(Section):
    """RECM-style level modulation."""

    beta: float = Field(0.1, gt=0.0)
    eta: float = Field(0.25, gt=0.0)
    kappa: float = Field(0.3, ge=0.0)
    s_max: float = Field(1.0, gt=0.0)
    # "relative": the demand's consistency drives the level, less a noise threshold
    # (RECMController); "raw" is the reconstruction as first documented.
    demand: Literal["raw", "relative"] = "raw"
    threshold: float = Field(0.0, ge=0.0, lt=1.0)


_CONTROLLERS: dict[str, type[Section]] = {
    "cr": CRControllerSection, "ace": ACEControllerSection, "recm": RECMControllerSection,
}


class RelaxationSection(Section):
    """Which relaxation method trains the model, its branches and regulariser."""

    method: Literal["none", "cr", "ace", "recm"] = "none"
    form: Literal["linear", "mlp", "lowrank", "conv"] = "mlp"
    hidden_factor: int = Field(4, ge=1)
    # Rank of ``lowrank`` branches (zoo.relax.relax caps it at each site's smaller dimension).
    rank: int = Field(16, ge=1)
    lambda_reg: float = Field(0.01, ge=0.0)
    # Cheaper estimates of the symmetry-violation term (zoo.relax.relax): on this many random
    # rows per site (null: every row, exact), every k-th step times k (1: every step).
    penalty_rows: int | None = Field(1024, ge=1)
    penalty_every: int = Field(1, ge=1)
    # The branches' output layers start at PyTorch's default initialisation times this factor
    # (0: at zero; the constraint-relaxation paper's Equiformer code uses 0.01).
    init_scale: float = Field(0.0, ge=0.0)
    # Typed by the method's own section (``_CONTROLLERS``) in :meth:`Recipe.from_dict`.
    controller: dict[str, Any] = Field(default_factory=dict)


class OptimizerSection(Section):
    """Optimiser name and hyperparameters."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(5.0e-4, gt=0.0)
    weight_decay: float = Field(1.0e-6, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    amsgrad: bool = False


class ScheduleSection(Section):
    """Learning-rate schedule (per epoch)."""

    name: Literal["cosine", "constant", "step", "plateau"] = "cosine"
    warmup_epochs: int = Field(10, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    step_size: int = Field(20, ge=1)
    gamma: float = Field(0.7, gt=0.0, le=1.0)
    # plateau: ReduceLROnPlateau on the validation metric.
    factor: float = Field(0.8, gt=0.0, lt=1.0)
    patience: int = Field(5, ge=0)
    # plateau only: the run's final stage. From epoch ``anneal_start`` on, the learning rate
    # follows a cosine from the value the plateau had reached down to ``lr * min_lr_ratio`` over
    # ``anneal_epochs`` epochs, then stays there. A plateau run is open-ended (extended across
    # sessions), so the stage is declared when it is decided: a resumed run may add or move it
    # as long as it starts at or after the next epoch, which leaves the earlier epochs unchanged.
    anneal_start: int | None = Field(None, ge=0)
    anneal_epochs: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _anneal_needs_plateau(self) -> ScheduleSection:
        if self.anneal_start is not None and self.name != "plateau":
            raise ValueError(
                f"schedule.anneal_start applies to the plateau schedule; the {self.name!r} "
                "schedule already ends where it was planned to. Remove anneal_start or use "
                "name: plateau"
            )
        return self


class TrainingSection(Section):
    """Epochs, batches, devices, dtype and what is exported."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    augment_rotations: bool = True
    devices: int = Field(1, ge=1)
    dtype: Literal["float32", "float64"] = "float32"
    # "last": export the weights of the last epoch; "best": of the epoch with the best
    # validation metric of the projected model (the N-body papers' protocol).
    keep: Literal["last", "best"] = "last"
    # Decay of the exponential moving average of the weights that is validated and exported
    # (0: no average, the last step's weights).
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)


class ExportSection(Section):
    """Licence and the published name a variant belongs to."""

    license: str = "mit"
    variant_of: str | None = None


class DataSection(Section):
    """Base of every dataset's data section (each task subclasses it, :mod:`zoo.tasks`)."""

    dataset: str


class CappedSplitsData(DataSection):
    """A data section with a local root and optional caps on the samples of each split (for
    quick runs on a subset)."""

    root: str | None = None
    max_train: int | None = Field(None, ge=1)
    max_val: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)


class LossSection(Section):
    """Base of every dataset's loss section (each task subclasses it, :mod:`zoo.tasks`)."""

    kind: str

    def describe(self) -> str:
        """The loss in words for a card: its kind, then its other fields
        (``"l1, energy weight 1.0, forces weight 80.0"``)."""
        fields = self.described_fields()
        kind = fields.pop("kind")
        return ", ".join([str(kind)] + [f"{k.replace('_', ' ')} {v}" for k, v in fields.items()])

    def described_fields(self) -> dict[str, Any]:
        """The fields :meth:`describe` names (default: all of them)."""
        return self.model_dump()


class Recipe(Section):
    """A complete, validated training recipe.

    Build it with :func:`zoo.train.recipe.load_recipe` (file or name, defaults filled) or
    :meth:`from_dict` (a complete mapping); :meth:`to_dict` gives plain data for YAML and JSON.
    """

    name: str = Field(min_length=1)
    seed: int = Field(0, ge=0)
    # Serialised as the dataset's own section, not the base class.
    data: SerializeAsAny[DataSection]
    model: ModelSection
    relaxation: RelaxationSection = Field(default_factory=RelaxationSection)
    loss: SerializeAsAny[LossSection]
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    export: ExportSection = Field(default_factory=ExportSection)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], data_model: type[DataSection],
                  loss_model: type[LossSection]) -> Recipe:
        """Validate ``raw`` with the dataset's own data and loss sections.

        Raises
        ------
        RecipeError
            Naming every bad key (``training.epochs: ...``).
        """
        if not isinstance(raw, dict):
            raise RecipeError(f"a recipe must be a mapping of sections, got {type(raw).__name__}")
        errors = []
        sections: dict[str, Any] = dict(raw)
        for key, model in (("data", data_model), ("loss", loss_model)):
            try:
                sections[key] = model.model_validate(raw.get(key, {}))
            except ValidationError as error:
                errors.append(_describe(error, prefix=key))
        relaxation = raw.get("relaxation")
        if isinstance(relaxation, dict) and relaxation.get("method") in _CONTROLLERS:
            # Each method has its own controller keys: a typo such as `schedul:` is named.
            given = relaxation.get("controller") or {}
            try:
                checked = _CONTROLLERS[relaxation["method"]].model_validate(given).model_dump()
                controller = {k: v for k, v in checked.items() if k in given}
                sections["relaxation"] = {**relaxation, "controller": controller}
            except ValidationError as error:
                errors.append(_describe(error, prefix="relaxation.controller"))
        try:
            recipe = cls.model_validate(sections) if not errors else None
        except ValidationError as error:
            errors.append(_describe(error))
        if errors:
            raise RecipeError("invalid recipe: " + "; ".join(errors))
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """Plain nested data (for ``recipe.yaml`` and ``config.json``)."""
        return self.model_dump(mode="json")


def _describe(error: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``section.key: what is wrong (got VALUE)``."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(x) for x in ((prefix,) if prefix else ()) + tuple(item["loc"]))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        got = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "missing") else f" (got {got!r})"
        parts.append(f"{loc or 'recipe'}: {message}{shown}")
    return "; ".join(parts)
