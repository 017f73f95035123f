"""Base class of every zoo architecture.

A :class:`ZooModel` captures its constructor arguments when built (so its config round-trips to
JSON), declares its symmetry group and how group elements act on its inputs and outputs (used by
:mod:`zoo.testing`), and declares its relaxation sites (used by :mod:`zoo.relax`).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class SymmetryGroup:
    """Which transformations a model is equivariant to.

    Attributes
    ----------
    rotations
        Continuous 3D rotations, SO(3).
    reflections
        Improper rotations too, O(3).
    translations
        Translations of the input coordinates.
    permutations
        Permutations of the input set (atoms, particles, points).
    discrete
        Name of a finite group acting instead of SO(3), e.g. ``"C4"``; ``None`` for SO(3).
    """

    rotations: bool = True
    reflections: bool = False
    translations: bool = False
    permutations: bool = False
    discrete: str | None = None


@dataclass
class GroupElement:
    """One transformation: ``x -> rotation @ x + translation``, then a permutation of the set.

    ``permutation[i]`` is the index of the original element that goes to position ``i``.
    For a discrete group, ``rotation`` is its matrix on the plane or space it acts on.
    """

    rotation: torch.Tensor
    translation: torch.Tensor | None = None
    permutation: torch.Tensor | None = None


@dataclass(frozen=True)
class RelaxationSite:
    """A place where a relaxed model adds a non-equivariant branch.

    Attributes
    ----------
    module
        Dotted path of the submodule whose output gets ``+ level * branch(first input)``.
    rep_in, rep_out
        Representations of its first input and its output (see :mod:`zoo.relax.representations`).
    """

    module: str
    rep_in: Any
    rep_out: Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if hasattr(value, "__str__") and type(value).__module__.startswith("e3nn"):
        return str(value)  # irreps are stored as strings
    return value


_W3J_BUFFER = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")


@torch.no_grad()
def _refresh_wigner_buffers(module: nn.Module) -> None:
    from e3nn import o3

    for owner in module.modules():
        refresh = getattr(owner, "refresh_constants", None)
        if refresh is not None and owner is not module:
            reference = next(iter(owner.buffers()), None)
            if reference is not None:
                refresh(reference.dtype, reference.device)
        for name, buffer in owner._buffers.items():
            match = _W3J_BUFFER.search(name) if buffer is not None else None
            if match is None or not buffer.is_floating_point():
                continue
            l1, l2, l3 = (int(v) for v in match.groups())
            exact = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
            buffer.copy_(exact.to(dtype=buffer.dtype, device=buffer.device).reshape(buffer.shape))


class ZooModel(nn.Module):
    """Base class of the registered architectures.

    Subclasses define ``symmetry``, :meth:`relaxation_sites`, :meth:`example_inputs`,
    :meth:`act_on_inputs` and :meth:`act_on_outputs`; ``exactly_equivariant = False`` marks an
    architecture whose equivariance error is reported rather than guaranteed.
    """

    architecture: ClassVar[str] = ""
    symmetry: ClassVar[SymmetryGroup] = SymmetryGroup()
    # False for baselines and approximately equivariant models (e.g. the smoke-plume CNNs):
    # ``symmetry`` then names the group their error is *measured* against, not a guarantee.
    exactly_equivariant: ClassVar[bool] = True
    # What the model predicts on, for readable errors when it gets something else:
    # "atoms" (ase.Atoms frames / PyG batches of z, pos), "point_cloud", "nbody", "grid".
    input_kind: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def capturing_init(self, *args: Any, **kw: Any) -> None:
            # Only the outermost constructor records: a subclass calling super().__init__
            # must not overwrite the arguments it was itself built with.
            outermost = not hasattr(self, "_capturing")
            if outermost:
                object.__setattr__(self, "_capturing", True)
            init(self, *args, **kw)
            if outermost:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                captured = {k: v for k, v in bound.arguments.items() if k != "self"}
                self.model_args = _jsonable(captured)
                json.dumps(self.model_args)  # fail at build time, not at save time
                object.__delattr__(self, "_capturing")

        cls.__init__ = capturing_init

    def config(self) -> dict[str, Any]:
        """``{"architecture": ..., "model_args": ...}``: enough for :func:`zoo.create_model`."""
        args = json.loads(json.dumps(self.model_args))
        return {"architecture": self.architecture, "model_args": args}

    def clone(self, dtype: torch.dtype | None = None, device: Any = None) -> ZooModel:
        """An independent copy, rebuilt from the config (and relaxation recipe) and loaded.

        Prefer this to ``copy.deepcopy``: e3nn's compiled tensor products lose the names of their
        Clebsch-Gordan buffers through a deep copy, so a deep-copied model cast to float64 keeps
        float32-rounded coefficients (equivariant only to ~1e-7).
        """
        twin = type(self)(**self.model_args)
        recipe = getattr(self, "relaxation_recipe", None)
        if recipe is not None:
            from zoo.relax import relax

            relax(twin, **recipe)
        reference = next(self.parameters())
        twin.to(dtype=reference.dtype, device=reference.device)
        twin.load_state_dict(self.state_dict())
        twin.to(dtype=dtype or reference.dtype, device=device or reference.device)
        return twin.train(self.training)

    def _apply(self, fn, recurse: bool = True):
        # e3nn stores Clebsch-Gordan coefficients as buffers built in the default dtype at
        # construction; a cast to float64 would keep float32-rounded values and break float64
        # equivariance at ~1e-8. Re-derive them in the buffer's new dtype after every cast.
        result = super()._apply(fn, recurse)
        _refresh_wigner_buffers(self)
        return result

    # --- what each architecture declares -------------------------------------------------
    def relaxation_sites(self) -> list[RelaxationSite]:
        """The submodules that get a non-equivariant branch when relaxed."""
        raise NotImplementedError

    def example_inputs(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float64
    ) -> Any:
        """A random input of the right kind, for equivariance tests."""
        raise NotImplementedError

    def act_on_inputs(self, inputs: Any, g: GroupElement) -> Any:
        """The input transformed by ``g`` (a new object; ``inputs`` is left unchanged)."""
        raise NotImplementedError

    def act_on_outputs(self, outputs: Any, g: GroupElement) -> Any:
        """The output transformed by ``g``: ``model(act_on_inputs(x, g))`` should equal it."""
        raise NotImplementedError

    def set_size(self, inputs: Any) -> torch.Tensor | None:
        """Graph index per set element (for per-graph permutations), or ``None``."""
        return None
