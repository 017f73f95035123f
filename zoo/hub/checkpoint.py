"""The checkpoint folder: write it, read and verify it, rebuild the model from it.

A checkpoint is one folder holding exactly

- ``README.md``: the model card;
- ``config.json``: architecture name and constructor arguments (``model_args``), dtype, units and
  cutoff where the model has them, the relaxation recipe it was trained with, the versions of the
  zoo and of its libraries, the oldest zoo that can load it, and the sha256 and size of every
  weights file;
- ``model.safetensors``: the (projected) weights.

Nothing is pickled. Reading verifies every file against ``config.json`` (and against checksums
given by the caller, e.g. the registry) before a single tensor is built.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.data.cache import atomic_write_bytes
from zoo.errors import DeviceError, UnknownArchitectureError
from zoo.hub.errors import CheckpointError, CorruptFileError, IncompatibleVersionError
from zoo.hub.pretrained import SAFE_NAME

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1

_FLOAT_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
#: Key of ``config.json`` holding the sha256 of the rest of the config (see :func:`config_digest`).
DIGEST_KEY = "manifest_sha256"
# Written by save_pretrained itself; `extra` may not override them.
_RESERVED_KEYS = frozenset(
    {"architecture", "model_args", "dtype", "relaxation", "versions", "files", "format_version",
     DIGEST_KEY}
)
#: Keys a config's ``"relaxation"`` recipe may hold: those :func:`zoo.relax.relax` takes by name,
#: and ``"training"`` / ``"notes"`` for everything that only describes training.
RELAXATION_KEYS = frozenset(
    {"method", "form", "hidden_factor", "rank", "level", "regularize", "penalty_rows",
     "penalty_every", "init_scale", "training", "notes"}
)


# --- hashes and versions ----------------------------------------------------------------------
def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        # Hashing the mapped file avoids copying it into Python objects, and leaves it in the
        # page cache for safetensors' own mapping right after.
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def file_hashes(folder: str | Path) -> dict[str, str]:
    """sha256 of every plain file of a folder (what a registry entry's ``sha256`` holds)."""
    folder = Path(folder)
    return {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of a config's content, :data:`DIGEST_KEY` left out (the manifest digest).

    The config records the sha256 and size of every weights file, so this one digest covers the
    whole checkpoint, ``config.json`` included. It is computed on the parsed content (sorted
    keys, no whitespace), so re-indenting the file does not change it; editing a value does.
    """
    content = {k: v for k, v in config.items() if k != DIGEST_KEY}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_bytes(canonical.encode())


def config_bytes(config: Mapping[str, Any]) -> bytes:
    """``config.json``'s bytes for ``config``, with a fresh manifest digest."""
    config = {**config, DIGEST_KEY: config_digest(config)}
    return (json.dumps(config, sort_keys=True, indent=2) + "\n").encode()


def write_config(folder: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``config.json`` atomically with a fresh manifest digest (for tools that edit it).

    Returns
    -------
    pathlib.Path
        The file.
    """
    path = Path(folder) / CONFIG_NAME
    _write_atomic(path, config_bytes(config))
    return path


def parse_device(device: torch.device | str) -> torch.device:
    """A torch device from a device or its name, checked to exist on this machine.

    Raises
    ------
    zoo.errors.DeviceError
        For a name torch does not know (``"banana"``), or a CUDA / MPS device this machine
        does not have.
    """
    try:
        target = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N' (a GPU index)"
        ) from None
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {str(device)!r} asked for, but no CUDA GPU is usable here "
                "(torch.cuda.is_available() is False); use device 'cpu'"
            )
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(device)!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s); use 'cuda:0' to "
                f"'cuda:{torch.cuda.device_count() - 1}'"
            )
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(device)!r} asked for, but MPS is not available here; "
                          "use device 'cpu'")
    return target


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A floating torch dtype from a dtype or its name (``"float32"``, ``"torch.float64"``)."""
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(_FLOAT_DTYPES)}")
    return _FLOAT_DTYPES[name]


def check_zoo_version(required: str | None, what: str) -> None:
    """Raise :class:`IncompatibleVersionError` if ``what`` needs a newer zoo than this one."""
    if not required:
        return
    # `packaging` comes with huggingface_hub and torch; imported here to keep `import zoo` light.
    from packaging.version import Version

    import zoo

    if Version(required) > Version(zoo.__version__):
        raise IncompatibleVersionError(
            f"{what} needs zoo >= {required}, but zoo {zoo.__version__} is installed; "
            f"upgrade with `pip install -U 'zoo>={required}'`."
        )


def _library_versions() -> dict[str, str | None]:
    from importlib import metadata

    import zoo

    versions: dict[str, str | None] = {"zoo": zoo.__version__}
    for package in ("torch", "e3nn", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# --- writing ----------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    # A reader (or a crash) never sees a half-written file: write a sibling, then rename.
    atomic_write_bytes(path, data)


def _relaxation_branches(model: nn.Module) -> list[Any]:
    try:
        from zoo.relax import branches
    except ImportError:  # no relax module yet: nothing can have attached branches
        return []
    return list(branches(model))


def _tensors_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        # safetensors refuses tensors sharing memory (tied weights, views of one buffer):
        # give those a copy of their own so the file stays a flat, strict state dict.
        if storage.data_ptr() in storages or storage.nbytes() != t.nbytes:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[key] = t
    return tensors


def _model_dtype(tensors: Mapping[str, torch.Tensor]) -> str:
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) > 1:
        names = sorted(str(d).removeprefix("torch.") for d in dtypes)
        raise CheckpointError(
            f"the model mixes floating dtypes {names}; cast it to one dtype before saving"
        )
    return str(dtypes.pop()).removeprefix("torch.") if dtypes else "float32"


def _default_card(name: str, config: dict[str, Any]) -> str:
    relaxation = json.dumps(config["relaxation"], sort_keys=True)
    return (
        "---\n"
        "library_name: zoo\n"
        f"tags:\n- zoo\n- equivariant\n- {config['architecture']}\n"
        "---\n\n"
        f"# {name}\n\n"
        f"Architecture `{config['architecture']}`, weights in {config['dtype']}, "
        f"saved with zoo {config['versions']['zoo']}.\n\n"
        f"Relaxation recipe used in training: `{relaxation}`.\n\n"
        "```python\n"
        "import zoo\n\n"
        f'model = zoo.load("{name}")\n'
        "```\n"
    )


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    card: str | None = None,
    relaxation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model as a checkpoint folder (``README.md``, ``config.json``, ``model.safetensors``).

    Parameters
    ----------
    model
        A :class:`zoo.models.base.ZooModel` without relaxation branches (project it first).
    folder
        Destination; created if needed. Existing checkpoint files are replaced atomically.
    card
        Model card (markdown). ``None`` writes a minimal generated card.
    relaxation
        The relaxation recipe the model was trained with, e.g.
        ``{"method": "cr", "form": "mlp"}``; ``None`` records ``{"method": "none"}``.
        ``zoo.load(..., relaxed=True)`` passes its keys to :func:`zoo.relax.relax`, except
        ``"training"`` and ``"notes"``: put schedules and other training-only settings there.
    extra
        More top-level ``config.json`` entries (``units``, ``cutoff``, ``dataset``,
        ``min_zoo_version``, ...). The keys the zoo writes itself cannot be overridden.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    branches = _relaxation_branches(model)
    if branches:
        raise CheckpointError(
            f"the model still has {len(branches)} relaxation branch(es); project it "
            "(zoo.relax.project) before saving: published checkpoints are exactly equivariant"
        )
    architecture = getattr(model, "architecture", "")
    model_args = getattr(model, "model_args", None)
    if not architecture or not isinstance(model_args, dict):
        raise CheckpointError(
            f"{type(model).__name__} is not a registered zoo architecture (a ZooModel subclass "
            "built through zoo.create_model): its config could not be rebuilt"
        )
    extra = dict(extra or {})
    clash = sorted(_RESERVED_KEYS & set(extra))
    if clash:
        raise ValueError(f"extra may not set {clash}: save_pretrained writes them itself")
    relaxation = dict(relaxation) if relaxation is not None else {"method": "none"}
    if "method" not in relaxation:
        raise ValueError('relaxation must name its "method" (use {"method": "none"} for none)')
    _check_relaxation_keys(relaxation, "save_pretrained(relaxation=...)")

    from safetensors.torch import save as save_safetensors

    tensors = _tensors_for_saving(model)
    weights = save_safetensors(tensors, metadata={"format": "pt"})

    versions = _library_versions()
    config: dict[str, Any] = {
        "min_zoo_version": versions["zoo"],
        **extra,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "model_args": json.loads(json.dumps(model_args)),
        "dtype": _model_dtype(tensors),
        "relaxation": relaxation,
        "versions": versions,
        "files": {WEIGHTS_NAME: {"sha256": sha256_bytes(weights), "size": len(weights)}},
    }
    for key, value in (("units", getattr(model, "units", None)), ("cutoff", _cutoff(model))):
        if value is not None:
            config.setdefault(key, value)
    config_data = config_bytes(config)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = card if card is not None else _default_card(folder.resolve().name, config)
    # config.json goes last: until it is written, a half-saved folder fails verification
    # instead of pairing new weights with an old, valid-looking config.
    _write_atomic(folder / WEIGHTS_NAME, weights)
    _write_atomic(folder / CARD_NAME, text.encode())
    _write_atomic(folder / CONFIG_NAME, config_data)
    return folder


def _cutoff(model: nn.Module) -> float | None:
    args = getattr(model, "model_args", {})
    for key in ("cutoff", "r_max"):
        if isinstance(args.get(key), (int, float)):
            return float(args[key])
    return None


# --- reading and verifying --------------------------------------------------------------------
def _check(path: Path, data: bytes | None, *expected: tuple[str | None, int | None]) -> None:
    # Each `expected` is (sha256 or None, size or None); the file is hashed once for all of them.
    wanted = [(digest, size) for digest, size in expected if digest is not None or size is not None]
    if not wanted:
        return
    size = len(data) if data is not None else path.stat().st_size
    actual = sha256_bytes(data) if data is not None else sha256_file(path)
    for digest, expected_size in wanted:
        if (expected_size is not None and size != expected_size) or (
            digest is not None and actual != digest
        ):
            raise CorruptFileError(
                path, digest or "?", actual, expected_size=expected_size, actual_size=size
            )


def _read(folder: Path, filename: str) -> bytes:
    path = folder / filename
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {filename}: not a zoo checkpoint folder") from None


def _unknown_keys_with_hints(unknown: list[str], known: Any) -> str:
    """``'schedul' (did you mean 'schedule'?), 'x'``: each unknown key with its closest match."""
    import difflib

    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(known), n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return ", ".join(hints)


def _check_relaxation_keys(relaxation: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(relaxation) - RELAXATION_KEYS)
    if unknown:
        hints = _unknown_keys_with_hints(unknown, RELAXATION_KEYS)
        raise CheckpointError(
            f"{where}: unknown relaxation key(s) {hints}; known keys are "
            f"{sorted(RELAXATION_KEYS)} (put training-only settings under \"training\")"
        )


def _check_digest(config: Mapping[str, Any], path: Path) -> None:
    recorded = config.get(DIGEST_KEY)
    if recorded is None:  # written before digests (registry checksums cover bundled models)
        return
    if recorded != config_digest(config):
        raise CheckpointError(
            f"{path} was edited after it was saved: its content no longer matches its "
            f"{DIGEST_KEY}, so its model_args, energies or file checksums cannot be trusted. "
            f"Restore the file, or re-save the model with zoo.save_pretrained (deleting the "
            f"{DIGEST_KEY!r} entry accepts the edit knowingly)"
        )


def _validate_config(config: Any, path: Path) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    problems = []
    if not isinstance(config.get("architecture"), str):
        problems.append('"architecture" (a string)')
    if not isinstance(config.get("model_args"), dict):
        problems.append('"model_args" (an object)')
    files = config.get("files")
    if not isinstance(files, dict) or WEIGHTS_NAME not in files:
        problems.append(f'"files" recording the sha256 and size of {WEIGHTS_NAME}')
    if problems:
        raise CheckpointError(f"{path} lacks {', '.join(problems)}")
    for filename, record in files.items():
        # The names come from a downloaded file: they must not walk out of the folder.
        if not SAFE_NAME.fullmatch(filename) or not filename.endswith(".safetensors"):
            raise CheckpointError(f"{path} lists an invalid weights file name {filename!r}")
        if not isinstance(record, dict) or not {"sha256", "size"} <= set(record):
            raise CheckpointError(f"{path}: files[{filename!r}] needs sha256 and size")
    relaxation = config.get("relaxation", {"method": "none"})
    if not isinstance(relaxation, dict):
        raise CheckpointError(f'{path}: "relaxation" must be an object')
    _check_relaxation_keys(relaxation, str(path))
    parse_dtype(config.get("dtype", "float32"))
    return config


def read_config(
    folder: str | Path, expected_sha256: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read, verify and validate a checkpoint's ``config.json``.

    Parameters
    ----------
    folder
        Checkpoint folder.
    expected_sha256
        File name to sha256 from a trusted source (the registry); ``config.json``'s is checked.

    Returns
    -------
    dict
        The config.

    Raises
    ------
    CorruptFileError
        ``config.json`` differs from its expected sha256.
    IncompatibleVersionError
        The checkpoint needs a newer zoo.
    """
    folder = Path(folder)
    data = _read(folder, CONFIG_NAME)
    _check(folder / CONFIG_NAME, data, ((expected_sha256 or {}).get(CONFIG_NAME), None))
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not valid JSON: {err}") from None
    config = _validate_config(config, folder / CONFIG_NAME)
    check_zoo_version(config.get("min_zoo_version"), f"the checkpoint in {folder}")
    _check_digest(config, folder / CONFIG_NAME)
    return config


def _check_other_files(
    folder: Path, config: Mapping[str, Any], expected: Mapping[str, str]
) -> None:
    # Files the registry vouches for but that are not weights (the card): hashed from disk.
    for filename, digest in expected.items():
        if filename != CONFIG_NAME and filename not in config["files"]:
            path = folder / filename
            if not path.is_file():
                raise CheckpointError(f"{folder} has no {filename}")
            _check(path, None, (digest, None))


def read_checkpoint(
    folder: str | Path, expected_sha256: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a checkpoint folder.

    Every file is checked against the sha256 and size that ``config.json`` records, and against
    ``expected_sha256`` where given, before its tensors are read (``safetensors.torch.load_file``).
    A weights file replaced or rewritten between the check and the read is refused.

    Parameters
    ----------
    folder
        Checkpoint folder.
    expected_sha256
        File name to sha256 from a trusted source (the registry entry), or ``None``.

    Returns
    -------
    config : dict
        The parsed ``config.json``.
    tensors : dict of str to torch.Tensor
        The weights, on the CPU, in their stored dtype.

    Raises
    ------
    CorruptFileError
        A file whose content differs from its recorded checksum or size.
    CheckpointError
        A missing file or a malformed ``config.json``.
    IncompatibleVersionError
        The checkpoint needs a newer zoo.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    expected = dict(expected_sha256 or {})
    config = read_config(folder, expected)
    tensors: dict[str, torch.Tensor] = {}
    for filename, record in config["files"].items():
        path = folder / filename
        before = _identity(path)
        _check(path, None, (expected.get(filename), None), (record["sha256"], record["size"]))
        try:
            loaded = load_file(path)
        except Exception as err:  # safetensors' SafetensorError, or an OSError while mapping
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(
                f"{path} matches its recorded sha256 but is not a readable safetensors file "
                f"({reason}): it was written broken; re-export the model with "
                "zoo.save_pretrained"
            ) from None
        # Same inode, size and mtime after reading: the tensors come from the file just hashed
        # (a concurrent save_pretrained renames a new file into place; it cannot slip in).
        if _identity(path) != before:
            raise CheckpointError(f"{path} changed while it was being loaded; load it again")
        tensors.update(loaded)
    _check_other_files(folder, config, expected)
    return config, tensors


def _identity(path: Path) -> tuple[int, int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} has no {path.name}") from None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def verify_folder(
    folder: str | Path,
    expected_sha256: Mapping[str, str] | None = None,
    *,
    exact: bool = False,
) -> dict[str, Any]:
    """Verify a checkpoint folder's files without building tensors.

    Parameters
    ----------
    folder
        Checkpoint folder.
    expected_sha256
        File name to sha256 from a trusted source, or ``None``.
    exact
        Also require the folder to hold nothing but the card, the config, the weights and the
        PNG figures the card shows (hidden files aside), as a folder to publish must.

    Returns
    -------
    dict
        The config.
    """
    folder = Path(folder)
    expected = dict(expected_sha256 or {})
    config = read_config(folder, expected)
    for filename, record in config["files"].items():
        path = folder / filename
        if not path.is_file():
            raise CheckpointError(f"{folder} has no {filename}")
        _check(path, None, (expected.get(filename), None), (record["sha256"], record["size"]))
    _check_other_files(folder, config, expected)
    if exact:
        card = (folder / CARD_NAME).read_text() if (folder / CARD_NAME).is_file() else ""
        figures = {p.name for p in folder.glob("*.png") if f"]({p.name})" in card}
        wanted = {CONFIG_NAME, CARD_NAME, *config["files"], *figures}
        present = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
        if present != wanted:
            extra = sorted(present - wanted)
            missing = sorted(wanted - present)
            raise CheckpointError(
                f"{folder} must hold exactly {sorted(wanted)}"
                + (f"; unexpected: {extra}" if extra else "")
                + (f"; missing: {missing}" if missing else "")
            )
    return config


# --- rebuilding -------------------------------------------------------------------------------
def model_from_checkpoint(
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Rebuild the architecture from a config and load weights into it strictly.

    Parameters
    ----------
    config
        A checkpoint config (see :func:`read_config`).
    tensors
        Its weights (see :func:`read_checkpoint`).
    dtype
        Floating dtype of the returned model; ``None`` keeps the checkpoint's.
    device
        Device of the returned model; ``None`` keeps the CPU.

    Returns
    -------
    torch.nn.Module
        The model, in eval mode.
    """
    model = _build_architecture(config)
    # Load into a model of the stored dtype, so the weights arrive bit for bit; cast afterwards.
    stored = parse_dtype(config.get("dtype", "float32"))
    cast(model, dtype=stored)
    try:
        model.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the weights do not fit architecture {config['architecture']!r} built from the "
            f"config's model_args: {err}"
        ) from err
    return cast(model, dtype=dtype, device=device).eval()


def _build_architecture(config: Mapping[str, Any]) -> nn.Module:
    import inspect

    import zoo
    from zoo._registry import create_model, get_architecture

    architecture, model_args = config["architecture"], dict(config["model_args"])
    try:
        entry = get_architecture(architecture)
    except UnknownArchitectureError as err:
        raise CheckpointError(
            f"config.json names architecture {architecture!r}, which zoo {zoo.__version__} "
            f"does not have ({err}); upgrade zoo if the checkpoint comes from a newer version"
        ) from None
    parameters = inspect.signature(entry.cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    known = [name for name in parameters if name != "self"]
    unknown = [] if takes_any else sorted(set(model_args) - set(known))
    if unknown:
        raise CheckpointError(
            f"config.json model_args has unknown key(s) {_unknown_keys_with_hints(unknown, known)} "
            f"for architecture "
            f"{architecture!r}, which takes {known}"
        )
    try:
        return create_model(architecture, model_args=model_args)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"config.json model_args do not build architecture {architecture!r}: {err}"
        ) from None


def cast(
    model: nn.Module,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """``model.to(device, dtype)``, skipped where nothing would change.

    A cast is not free: architectures may recompute buffers on every ``to`` (e3nn's
    Clebsch-Gordan coefficients, re-derived in the new dtype).
    """
    target = parse_dtype(dtype) if dtype is not None else None
    device = parse_device(device) if device is not None else None
    tensors = [*model.parameters(), *model.buffers()]
    same_dtype = target is None or all(t.dtype == target for t in tensors if t.is_floating_point())
    same_device = device is None or all(_same_device(t.device, device) for t in tensors)
    if not (same_dtype and same_device):
        model.to(device=device, dtype=target)
    return model


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    # "cuda" means the current GPU; tensors always carry an index.
    if wanted.type == "cuda" and wanted.index is None and actual.type == "cuda":
        return actual.index == torch.cuda.current_device()
    return actual == wanted
