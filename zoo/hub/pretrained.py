"""Registry of published models, timm-style.

One frozen :class:`PretrainedEntry` per published model: where it lives on the Hugging Face Hub
(``repo_id`` and the pinned commit ``revision``), the sha256 and size of every file of that
commit, the dataset, the licence and the headline metrics. The architecture arguments are *not*
here: they live in the checkpoint's ``config.json``.

The published models are data, not code: ``index.json`` beside the bundled model folders
(:func:`zoo.resources.model_cards_dir`), read when this module is imported::

    {"format_version": 1,
     "models": {"equiformer-md17-aspirin.standard": {
         "architecture": "equiformer", "repo_id": "zoo-models/equiformer-md17-aspirin.standard",
         "revision": null, "files": {"config.json": {"sha256": "...", "size": 1788}, ...},
         "dataset": "...", "licence": "MIT", "metrics": {"energy_mae": 47.87, ...},
         "min_zoo_version": "0.1.0", "description": "...", "paper": null}},
     "aliases": {"equiformer-md17-aspirin": "equiformer-md17-aspirin.standard"}}

An alias is another name of an entry (a plain name such as ``equiformer-md17-aspirin`` names the
best variant of its family). The index is written by :func:`zoo.hub.index.record_model`, which
``zoo publish`` and the training scripts call; nobody edits it by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zoo._registry import BUILTIN_ARCHITECTURES
from zoo.hub.errors import UnknownModelError
from zoo.resources import model_cards_dir, recipes_dir

# Names are used as folder names (bundled cards, cache) and in messages: keep them boring.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
REQUIRED_FILES = ("config.json", "model.safetensors")
#: The registry file, beside the bundled model folders.
INDEX_NAME = "index.json"
INDEX_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PretrainedEntry:
    """What the zoo knows about one published model.

    Attributes
    ----------
    name
        Registry name, e.g. ``"equiformer-md17-aspirin"``.
    architecture
        Registered architecture the checkpoint builds (checked against its ``config.json``).
    repo_id
        Hugging Face Hub model repository, ``"org/name"``.
    revision
        Pinned commit sha (40 hex digits) of that repository, or ``None`` for a model that is
        bundled in ``model_cards/`` but not uploaded yet (then only the bundled folder serves
        it, and a Hub download says so).
    sha256
        File name to sha256 (hex) for every file of the repository at ``revision``; must include
        ``config.json`` and ``model.safetensors``.
    dataset, licence
        Training data and licence of the weights.
    aliases
        Other names that resolve to this entry.
    min_zoo_version
        Oldest zoo release that can load the checkpoint.
    metrics
        Headline test metrics, e.g. ``{"energy_mae": 5.2, "forces_mae": 7.1}`` (meV, meV/Å).
    description, paper
        One line for listings; a citation or URL.
    sizes
        File name to size in bytes, for the files of ``sha256`` (all of them, or none).
    """

    name: str
    architecture: str
    repo_id: str
    revision: str | None
    sha256: Mapping[str, str]
    dataset: str
    licence: str
    aliases: tuple[str, ...] = ()
    min_zoo_version: str = "0.1.0"
    metrics: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    paper: str | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            if not SAFE_NAME.fullmatch(name):
                raise ValueError(f"model name {name!r} must match {SAFE_NAME.pattern}")
        if self.revision is not None and not _COMMIT_SHA.fullmatch(self.revision):
            raise ValueError(
                f"{self.name}: revision must be a pinned commit sha (40 hex digits), "
                f"got {self.revision!r}"
            )
        missing = [f for f in REQUIRED_FILES if f not in self.sha256]
        if missing:
            raise ValueError(f"{self.name}: sha256 lacks {', '.join(missing)}")
        for filename, digest in self.sha256.items():
            if not SAFE_NAME.fullmatch(filename):
                raise ValueError(f"{self.name}: file name {filename!r} is not a plain file name")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"{self.name}: sha256 of {filename} is not 64 lowercase hex")
        if self.sizes and set(self.sizes) != set(self.sha256):
            raise ValueError(f"{self.name}: sizes must cover exactly the files of sha256")
        for filename, size in self.sizes.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ValueError(f"{self.name}: size of {filename} must be a count of bytes")
        # Read-only views: a frozen entry must not be edited through its dicts either.
        object.__setattr__(self, "sha256", MappingProxyType(dict(self.sha256)))
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "sizes", MappingProxyType(dict(self.sizes)))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the entry."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["sha256"] = dict(self.sha256)
        out["metrics"] = dict(self.metrics)
        out["sizes"] = dict(self.sizes)
        out["aliases"] = list(self.aliases)
        return out

    def to_record(self) -> dict[str, Any]:
        """The entry as it is stored in ``index.json`` (name and aliases are keys there)."""
        return {
            "architecture": self.architecture,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "files": {
                filename: {"sha256": digest, "size": self.sizes.get(filename)}
                for filename, digest in sorted(self.sha256.items())
            },
            "dataset": self.dataset,
            "licence": self.licence,
            "metrics": dict(self.metrics),
            "min_zoo_version": self.min_zoo_version,
            "description": self.description,
            "paper": self.paper,
        }

    @classmethod
    def from_record(
        cls, name: str, record: Mapping[str, Any], aliases: tuple[str, ...] = ()
    ) -> PretrainedEntry:
        """The entry of ``index.json``'s ``models[name]`` (see :meth:`to_record`)."""
        files = record["files"]
        sizes = {f: v["size"] for f, v in files.items() if v.get("size") is not None}
        return cls(
            name=name,
            architecture=record["architecture"],
            repo_id=record["repo_id"],
            revision=record.get("revision"),
            sha256={f: v["sha256"] for f, v in files.items()},
            sizes=sizes,
            dataset=record.get("dataset", ""),
            licence=record.get("licence", ""),
            aliases=aliases,
            min_zoo_version=record.get("min_zoo_version", "0.1.0"),
            metrics=record.get("metrics", {}),
            description=record.get("description", ""),
            paper=record.get("paper"),
        )


_MODELS: dict[str, PretrainedEntry] = {}
_ALIASES: dict[str, str] = {}


def register_pretrained(entry: PretrainedEntry, *, replace: bool = False) -> PretrainedEntry:
    """Add ``entry`` to the registry.

    Parameters
    ----------
    entry
        The published model.
    replace
        Allow replacing an entry of the same name (its old aliases are dropped).

    Returns
    -------
    PretrainedEntry
        ``entry``, so that the call can be used as an expression.
    """
    taken = {entry.name, *entry.aliases}
    if entry.name in _MODELS and not replace:
        raise ValueError(f"model {entry.name!r} is already registered")
    for alias in taken:
        owner = _MODELS[alias].name if alias in _MODELS else _ALIASES.get(alias)
        if owner is not None and owner != entry.name:
            raise ValueError(f"name {alias!r} is already taken by model {owner!r}")
    if entry.name in _MODELS:
        unregister_pretrained(entry.name)
    _MODELS[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name
    return entry


def unregister_pretrained(name: str) -> None:
    """Remove a model (by name or alias) and its aliases from the registry."""
    entry = get_pretrained(name)
    del _MODELS[entry.name]
    for alias in entry.aliases:
        _ALIASES.pop(alias, None)


@contextlib.contextmanager
def registered(entry: PretrainedEntry, *, replace: bool = False) -> Iterator[PretrainedEntry]:
    """Register ``entry`` for the duration of a ``with`` block (tests, experiments).

    A replaced entry is restored on exit.
    """
    previous = _MODELS.get(entry.name)
    register_pretrained(entry, replace=replace)
    try:
        yield entry
    finally:
        if _MODELS.get(entry.name) is entry:
            unregister_pretrained(entry.name)
        if previous is not None:
            register_pretrained(previous)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered model name or alias."""
    return name in _MODELS or name in _ALIASES


def get_pretrained(name: str) -> PretrainedEntry:
    """The entry of a model name or alias; an unknown name suggests the closest ones."""
    canonical = _ALIASES.get(name, name)
    try:
        return _MODELS[canonical]
    except KeyError:
        candidates = sorted({*_MODELS, *_ALIASES})
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        if name in BUILTIN_ARCHITECTURES:
            published = [(model, list(entry.aliases)) for model, entry in sorted(_MODELS.items())
                         if entry.architecture == name]
            published.sort(key=lambda item: not item[1])  # models with a plain name first
            raise UnknownModelError(
                name, close, sorted(_MODELS), architecture_without_weights=not published,
                recipes=None if published else _recipes_for(name),
                architecture_models=published, predicts=_predicts(name),
            ) from None
        raise UnknownModelError(name, close, sorted(_MODELS)) from None


def _predicts(architecture: str) -> bool:
    """Whether ``zoo predict`` takes the architecture's input (molecules and point clouds)."""
    from zoo._registry import get_architecture

    return getattr(get_architecture(architecture).cls, "input_kind", None) in {"atoms",
                                                                              "point_cloud"}


def _recipes_for(architecture: str) -> list[str]:
    """Names of the bundled recipes whose ``model.architecture`` is ``architecture`` (an error
    path only: reading a few small YAML files is fine here)."""
    import yaml

    names = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        try:
            model = (yaml.safe_load(path.read_text()) or {}).get("model") or {}
        except (OSError, yaml.YAMLError):
            continue  # a broken recipe is reported where it is used, not in this hint
        if isinstance(model, dict) and model.get("architecture") == architecture:
            names.append(path.stem)
    return sorted(names, key=lambda n: not n.endswith(".standard"))  # the plain recipe first


def list_models(pattern: str = "*") -> list[str]:
    """Names of the published models matching a shell-style ``pattern``.

    Parameters
    ----------
    pattern
        ``fnmatch`` pattern, e.g. ``"equiformer-md17-*"``.

    Returns
    -------
    list of str
        Sorted registry names (aliases are not listed).
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def info(name: str) -> dict[str, Any]:
    """Everything the registry knows about a model, as a plain dict.

    Parameters
    ----------
    name
        Model name or alias.

    Returns
    -------
    dict
        The fields of :class:`PretrainedEntry` (name, aliases, architecture, dataset, licence,
        repo_id, revision, sha256, sizes, min_zoo_version, metrics, description, paper).
    """
    return get_pretrained(name).to_dict()


# --- the published models: index.json ---------------------------------------------------------
def index_path() -> Path:
    """The registry file shipped with zoo: ``index.json`` beside the bundled model folders."""
    return model_cards_dir() / INDEX_NAME


def check_index_format(data: Any, path: str | Path) -> None:
    """Raise ``ValueError`` unless ``data`` (a parsed ``index.json``) has this zoo's format."""
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != INDEX_FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not {INDEX_FORMAT_VERSION}; "
                         "it is not an index this zoo can read (a newer zoo wrote it?)")


def read_index(path: str | Path) -> list[PretrainedEntry]:
    """The entries of an ``index.json`` file, each with its aliases.

    Parameters
    ----------
    path
        The file (see the module docstring for its format).

    Returns
    -------
    list of PretrainedEntry
        One per model, in name order.

    Raises
    ------
    ValueError
        An unknown format version, an alias of a model the file does not hold, or a malformed
        entry (the message names it).
    """
    data = json.loads(Path(path).read_text())
    check_index_format(data, path)
    models = data.get("models", {})
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(data.get("aliases", {}).items()):
        if target not in models:
            raise ValueError(f"{path}: alias {alias!r} names {target!r}, which is not a model")
        aliases.setdefault(target, []).append(alias)
    return [
        PretrainedEntry.from_record(name, record, tuple(aliases.get(name, ())))
        for name, record in sorted(models.items())
    ]


def _register_bundled_index() -> None:
    path = index_path()
    if path.is_file():  # an install without bundled models has an empty registry
        for entry in read_index(path):
            register_pretrained(entry)


_register_bundled_index()
