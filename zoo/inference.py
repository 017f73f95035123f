"""Energies and forces of a zoo model on ``ase.Atoms`` frames.

::

    import zoo
    from zoo.inference import predict

    model = zoo.create_model("equiformer", preset="small")
    out = predict(model, frames)          # frames: list of ase.Atoms
    out["energy"]                         # numpy [n_frames], eV
    out["forces"][i]                      # numpy [n_atoms_i, 3], eV/Å

"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import nn

from zoo.data import frames_to_batch, validate_frame
from zoo.errors import ExtrapolationWarning, InputError, OutOfMemoryError

__all__ = ["MIN_DISTANCE", "predict"]

#: Closest two atoms of a frame may be (Å). Bonds are longer than 0.5 Å (H2: 0.74 Å); atoms
#: closer than this are a broken geometry (a duplicated atom), not chemistry.
MIN_DISTANCE = 0.1

#: Peak memory of one edge (a pair of atoms closer than the cutoff) in a forward pass with
#: forces, float32 (float64 twice that), for the widest published Equiformer preset: measured as
#: the growth of peak RSS from 400 to 1000 atoms, ~63 kB for ``medium-l1`` (the aspirin model),
#: ~35 kB for ``small-l1`` and ~38 kB for ``small``. An upper estimate is the useful one here.
BYTES_PER_EDGE = 65_000

_INPUT_KINDS = {
    "atoms": "molecules (ase.Atoms frames)",
    "point_cloud": "point clouds (arrays [n, 3]; zoo.point_clouds.predict_point_cloud)",
    "nbody": "N-body systems (zoo.data.load_nbody graphs)",
    "grid": "smoke-plume grids (tensors [batch, frames, 2, H, W])",
}


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """Floating dtype and device of the model's first floating parameter (or buffer)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def _as_frame_list(frames: Atoms | Iterable[Atoms]) -> list[Atoms]:
    if isinstance(frames, Atoms):
        return [frames]
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise TypeError(
            f"frames must be an ase.Atoms or a list of ase.Atoms, got {type(frames).__name__}"
        )
    frame_list = list(frames)
    if not frame_list:
        raise ValueError("predict needs at least one frame; got an empty list of frames")
    for i, atoms in enumerate(frame_list):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"frame {i} is a {type(atoms).__name__}, expected an ase.Atoms")
    return frame_list


def model_name(model: nn.Module) -> str:
    """How messages name a model: its registry name or folder, else its architecture."""
    info = getattr(model, "zoo_info", None) or {}
    name = info.get("name") or getattr(model, "architecture", "") or type(model).__name__
    return f"model {name!r}"


def check_input_kind(model: nn.Module, kind: str) -> None:
    """Raise :class:`zoo.errors.InputError` if a zoo model predicts on another kind of input."""
    expected = getattr(model, "input_kind", None)
    if expected is not None and expected != kind:
        raise InputError(
            f"{model_name(model)} predicts on {_INPUT_KINDS.get(expected, expected)}, not on "
            f"{_INPUT_KINDS[kind].split(' (')[0]}: pick a model made for this input"
        )


def _symbols(numbers: Iterable[int]) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in sorted(numbers))


def _closest_pair(positions: np.ndarray) -> tuple[int, int, float] | None:
    """The closest pair of atoms nearer than :data:`MIN_DISTANCE`, or ``None``."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(positions).query_pairs(MIN_DISTANCE, output_type="ndarray")
    if len(pairs) == 0:
        return None
    distances = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
    i, j = pairs[int(distances.argmin())]
    return int(i), int(j), float(distances.min())


def check_frames(model: nn.Module, frames: Sequence[Atoms]) -> None:
    """Refuse frames a molecule model cannot predict meaningfully, naming the frame.

    Refused, with :class:`zoo.errors.InputError`: periodic frames (any ``pbc``) for a model of
    isolated molecules (every zoo model: none reads the cell); elements outside the model's
    training data (``model.elements``, where the model records them); two atoms closer than
    :data:`MIN_DISTANCE` (coincident atoms). Warned about, with
    :class:`zoo.errors.ExtrapolationWarning`: frames of another molecule than the one a
    single-molecule model (rMD17) was trained on.
    """
    check_input_kind(model, "atoms")
    elements = getattr(model, "elements", None)
    periodic = getattr(model, "periodic", False)
    for i, atoms in enumerate(frames):
        validate_frame(atoms, i, source="input frames", labels="ignore")
        if not periodic and atoms.pbc.any():
            raise InputError(
                f"frame {i} is periodic (pbc={atoms.pbc.tolist()}), but {model_name(model)} "
                "treats every frame as an isolated molecule and would ignore the cell; set "
                "atoms.pbc = False to predict the isolated molecule"
            )
        if elements is not None:
            unseen = set(atoms.numbers.tolist()) - set(elements)
            if unseen:
                raise InputError(
                    f"frame {i} has element(s) {_symbols(unseen)}, which {model_name(model)} "
                    f"never saw in training (it knows {_symbols(elements)} only): its "
                    "energies and forces for them would be meaningless"
                )
        pair = _closest_pair(np.asarray(atoms.positions, dtype=np.float64))
        if pair is not None:
            a, b, distance = pair
            raise InputError(
                f"frame {i}: atoms {a} and {b} are {distance:.3g} Å apart (closer than "
                f"{MIN_DISTANCE} Å: coincident atoms have no meaningful energy); remove the "
                "duplicate or fix the geometry"
            )
    _warn_on_other_molecules(model, frames)


def training_formulas(model: nn.Module) -> list[str] | None:
    """Formulas of the molecules a model was trained on, where its config says (rMD17)."""
    from zoo.data.rmd17 import MOLECULE_FORMULAS

    config = (getattr(model, "zoo_info", None) or {}).get("config") or {}
    data = config.get("data") or {}
    molecule = data.get("molecule")
    if data.get("dataset") == "rmd17" and molecule in MOLECULE_FORMULAS:
        return [MOLECULE_FORMULAS[molecule]]
    return None


def _warn_on_other_molecules(model: nn.Module, frames: Sequence[Atoms]) -> None:
    from ase.formula import Formula

    formulas = training_formulas(model)
    if not formulas:
        return
    known = [Formula(f).count() for f in formulas]
    others = [i for i, atoms in enumerate(frames) if atoms.symbols.formula.count() not in known]
    if others:
        first = frames[others[0]].get_chemical_formula()
        warnings.warn(
            f"{model_name(model)} was trained on {' and '.join(formulas)} only; "
            f"{len(others)} of {len(frames)} frame(s) are other molecules (frame {others[0]}: "
            f"{first}): their energies are extrapolations and can be far off (per-element "
            "reference energies fitted on one molecule do not transfer to others)",
            ExtrapolationWarning,
            stacklevel=3,
        )


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in text or (
        "out of memory" in text.lower()
    )


def _memory_error(chunk: Sequence[Atoms], start: int, cutoff: float | None,
                  err: BaseException) -> OutOfMemoryError:
    from zoo.models.graph import radius_graph

    atoms = sum(len(a) for a in chunk)
    edges = ""
    if cutoff is not None:
        try:
            n_edges = sum(
                radius_graph(torch.as_tensor(a.positions), None, cutoff).shape[1] for a in chunk
            )
            edges = (f", {n_edges} atom pairs within {cutoff:g} Å, about "
                     f"{n_edges * BYTES_PER_EDGE / 1e9:.1f} GB in float32")
        except (RuntimeError, MemoryError):  # too large even to count the pairs
            pass
    span = f"frame {start}" if len(chunk) == 1 else f"frames {start}-{start + len(chunk) - 1}"
    return OutOfMemoryError(
        f"out of memory predicting {span} ({atoms} atoms{edges}): a forward pass with forces "
        f"needs ~{BYTES_PER_EDGE // 1000} kB per atom pair within the cutoff; use a smaller "
        f"batch_size (--batch-size 1), split the frames, or a machine with more memory "
        f"({type(err).__name__})"
    )


def predict(
    model: nn.Module,
    frames: Atoms | Sequence[Atoms],
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Predict energies and forces of ``frames`` with ``model``.

    The frames are batched with :func:`zoo.data.frames_to_batch` in the model's parameter
    dtype. The model runs in eval mode; the train/eval flag of every submodule is restored
    afterwards, even when the call fails. No autograd graph survives the call, no ``.grad`` is
    written to the parameters, and ``torch.get_default_dtype()`` is left unchanged. A relaxed
    model (:func:`zoo.relax.relax`) is evaluated as it is, branches included, but its branches
    do not compute or keep their training regularisers.

    Parameters
    ----------
    model
        An energy/force model (e.g. a zoo ``Equiformer``) taking a PyG ``Batch`` with ``z``,
        ``pos`` and ``batch`` and returning ``{"energy": [n_graphs], "forces": [n_atoms, 3]}``.
    frames
        A list (or other sequence) of ``ase.Atoms``, or a single ``ase.Atoms``. Only atomic
        numbers and positions are used; labels stored on the frames are ignored. An array or
        tensor of coordinates (``[n, 3]`` or ``[b, n, 3]``) is a point cloud instead, and goes
        to :func:`zoo.point_clouds.predict_point_cloud` (class probabilities).
    batch_size
        Number of frames per forward pass (a positive integer). Results do not depend on it
        beyond floating-point rounding. Memory grows with the atom pairs closer than the
        cutoff (5 Å for the zoo's Equiformers): about 40 kB per pair for the ``small`` preset
        in float32, twice that in float64. A molecule has about 20 pairs per atom, a dense
        liquid 40 to 60, so a 2000-atom condensed-phase frame needs 3 to 5 GB: predict such
        frames one at a time.
    device
        Where to put the input batches. ``None`` (the default) uses the model's device; the
        model itself is never moved.

    Returns
    -------
    dict
        ``"energy"``: ``numpy.ndarray`` of shape ``[n_frames]``; ``"forces"``: a list with one
        ``numpy.ndarray`` of shape ``[n_atoms_i, 3]`` per frame (present when the model returns
        forces). Arrays have the model's floating dtype (float32 or float64), in the model's
        units (eV, eV/Å for the zoo models).

    Raises
    ------
    ValueError
        When ``frames`` is empty or ``batch_size`` is not a positive integer.
    TypeError
        When ``frames`` is not an ``ase.Atoms`` or a sequence of them.
    zoo.data.InvalidFrameError
        When a frame has no atoms, an unknown element or non-finite positions.
    zoo.errors.InputError
        When the model predicts on other inputs (a point-cloud classifier), or a frame is
        periodic, holds elements outside the model's training data, or two atoms closer than
        :data:`MIN_DISTANCE` (see :func:`check_frames`).
    zoo.errors.OutOfMemoryError
        When a batch does not fit in memory; the message says how much it needs.

    Warns
    -----
    zoo.errors.ExtrapolationWarning
        When a model trained on one molecule (rMD17) gets frames of another composition.

    Examples
    --------
    >>> out = predict(model, frames, batch_size=16)        # doctest: +SKIP
    >>> out["energy"].shape, out["forces"][0].shape        # doctest: +SKIP
    ((100,), (21, 3))
    """
    if isinstance(frames, (np.ndarray, torch.Tensor)):
        # Coordinates rather than molecules: a point-cloud classifier.
        from zoo.point_clouds import predict_point_cloud

        return predict_point_cloud(model, frames, batch_size=batch_size)
    frame_list = _as_frame_list(frames)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_frames(model, frame_list)
    dtype, model_device = _model_dtype_device(model)
    if device is not None:
        from zoo.hub.checkpoint import parse_device

        target = parse_device(device)  # a zoo.errors.DeviceError for "banana" or a missing GPU
    else:
        target = model_device

    training_flags = [(module, module.training) for module in model.modules()]
    energies: list[np.ndarray] = []
    forces: list[np.ndarray] = []
    has_forces = True
    model.eval()  # also keeps relaxed branches from computing their training regularisers
    try:
        for start in range(0, len(frame_list), batch_size):
            chunk = frame_list[start : start + batch_size]
            batch = frames_to_batch(chunk, dtype=dtype, device=target)
            try:
                outputs = model(batch)
            except (RuntimeError, MemoryError) as err:
                if not _is_out_of_memory(err):
                    raise
                del batch
                raise _memory_error(chunk, start, getattr(model, "cutoff", None), err) from None
            energy = outputs["energy"].detach()
            if energy.shape != (len(chunk),):
                raise ValueError(
                    f"model returned energy of shape {tuple(energy.shape)} for {len(chunk)} "
                    f"frames; expected ({len(chunk)},)"
                )
            energies.append(energy.cpu().numpy())
            if "forces" in outputs and has_forces:
                flat = outputs["forces"].detach().cpu().numpy()
                sizes = [len(atoms) for atoms in chunk]
                if flat.shape != (sum(sizes), 3):
                    raise ValueError(
                        f"model returned forces of shape {flat.shape}; expected "
                        f"({sum(sizes)}, 3)"
                    )
                forces.extend(np.split(flat, np.cumsum(sizes)[:-1]))
            else:
                has_forces = False
            del outputs, batch, energy
    finally:
        for module, flag in training_flags:
            module.training = flag

    result: dict[str, Any] = {"energy": np.concatenate(energies)}
    if has_forces:
        result["forces"] = forces
    return result

