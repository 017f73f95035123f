"""Registry of published models, timm-style.

One frozen :class:`PretrainedEntry` per published model: where it lives on the Hugging Face Hub
(``repo_id`` and the pinned commit ``revision``), the sha256 of every file of that commit, the
dataset, the licence and the headline metrics. The architecture arguments are *not* here: they
live in the checkpoint's ``config.json``.

Adding a model is one block at the bottom of this module::

    register_pretrained(PretrainedEntry(
        name="equiformer-md17-aspirin",
        architecture="equiformer",
        repo_id="zoo-models/equiformer-md17-aspirin",
        revision="<commit sha printed by zoo.publish>",
        sha256={"README.md": "...", "config.json": "...", "model.safetensors": "..."},
        dataset="MD17 aspirin, 950 training frames",
        licence="MIT",
        metrics={"energy_mae": 5.2, "forces_mae": 7.1},
    ))

:func:`zoo.publish` prints such a block, filled in, for the folder it uploads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from zoo.hub.errors import UnknownModelError

# Names are used as folder names (bundled cards, cache) and in messages: keep them boring.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
REQUIRED_FILES = ("config.json", "model.safetensors")


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
        # Read-only views: a frozen entry must not be edited through its dicts either.
        object.__setattr__(self, "sha256", MappingProxyType(dict(self.sha256)))
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of the entry."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["sha256"] = dict(self.sha256)
        out["metrics"] = dict(self.metrics)
        out["aliases"] = list(self.aliases)
        return out


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
        raise UnknownModelError(name, close, sorted(_MODELS)) from None


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
        repo_id, revision, sha256, min_zoo_version, metrics, description, paper).
    """
    return get_pretrained(name).to_dict()


# --- published models -------------------------------------------------------------------------
# One register_pretrained(PretrainedEntry(...)) block per model, printed by
# training/publish_md17.py (or zoo.publish once a model is uploaded). Bundled models are served
# from model_cards/<name>/ and verified against these checksums; revision=None until uploaded.

register_pretrained(PretrainedEntry(
    name="equiformer-md17-aspirin",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-aspirin",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "fd5da67545e243beccd96f3c52156d8470c4c8c4961ec5df9cd2c8a17382d305",
        "comparison.png": "27aa1c8b48e98d219236da7a17a3f2e5626ec5f78280aadee8f301a8a774ea34",
        "config.json": "a560354b328e901e3ce5d9c1ffaebd60dc8bb2a264aaac1a5f81e2edbf25e184",
        "model.safetensors": "6cdd0f31935385ef10e78393a475d1cb8ff9b89ec6419d6c09d431b1acd86357",
        "training_curves.png": "3f691300c08b8529bf53de16d9b2ccff337c7c71d938c7b5869ee3b945a08b1f"
    },
    dataset="rMD17 aspirin, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 47.8697, "forces_mae": 79.337},
    description="standard training (no relaxation), 40 epochs, small preset",
))
register_pretrained(PretrainedEntry(
    name="equiformer-md17-aspirin.cr",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-aspirin.cr",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "c2dfcf5ea61dbf2bbb25973ea0f4613b925dea46141616d9e6c0aa191d0503a3",
        "comparison.png": "27aa1c8b48e98d219236da7a17a3f2e5626ec5f78280aadee8f301a8a774ea34",
        "config.json": "491f5b584174fb302379729e21b8e624c10c9e922defb4d281bfbe6812c96df9",
        "model.safetensors": "72141c674088ce03251e67ce0e841e8d2b3fa09b386150ae3a6fdce0f6a2f273",
        "training_curves.png": "003a8e6f400015996c8450180024ca1d1d5df3ba203c4e2d3d99f187999c038e"
    },
    dataset="rMD17 aspirin, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 50.294, "forces_mae": 79.6385},
    description="constraint-relaxation (CR) training, 40 epochs, small preset",
))
register_pretrained(PretrainedEntry(
    name="equiformer-md17-aspirin.standard",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-aspirin.standard",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "17680e84ecac81597381f5cb0ce0d8e07753a557f4b5be516e4c5861539caf25",
        "comparison.png": "27aa1c8b48e98d219236da7a17a3f2e5626ec5f78280aadee8f301a8a774ea34",
        "config.json": "ee25ca4c0393decd2fdad65dfed045d366909c8dc55e24408f088f6e22be63ad",
        "model.safetensors": "6cdd0f31935385ef10e78393a475d1cb8ff9b89ec6419d6c09d431b1acd86357",
        "training_curves.png": "3f691300c08b8529bf53de16d9b2ccff337c7c71d938c7b5869ee3b945a08b1f"
    },
    dataset="rMD17 aspirin, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 47.8697, "forces_mae": 79.337},
    description="standard training (no relaxation), 40 epochs, small preset",
))
register_pretrained(PretrainedEntry(
    name="equiformer-md17-ethanol",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-ethanol",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "103c627819c758d07789dfb35440e434a2e5ee73866f3877405aace0a0259f7e",
        "comparison.png": "6a1b507e616bb7d5fc55d66d712e74b02a81aa2c8087c061fe016746cdfa4c40",
        "config.json": "c981b99ea5e347804be0c6b6a531c4cc51468a3707c4a4d36ff7f3dc8266acf7",
        "finetune_ethanol.png": "fad182bcb71ac48c6b4c73cf9b48761840ec7c049fb388d2dc6a55b18d6e86f1",
        "model.safetensors": "50e125b9c5dd72fb8a645f1d2b405a577b330f19eac4944fc51c3e7d2023d840",
        "training_curves.png": "a50d9d490dc57a698f6c17288500d9e6cd6c467bf3496797a1effac8b181f683"
    },
    dataset="rMD17 ethanol, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 13.0094, "forces_mae": 44.4326},
    description="standard training (no relaxation), 40 epochs, small preset",
))
register_pretrained(PretrainedEntry(
    name="equiformer-md17-ethanol.cr",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-ethanol.cr",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "b478690bfc529006ebfcc75dd74cb2470eb9664a2698b4408b607ab2d9f9200d",
        "comparison.png": "6a1b507e616bb7d5fc55d66d712e74b02a81aa2c8087c061fe016746cdfa4c40",
        "config.json": "a8d04a963df659ca09ccdad6009617e1f938ac2b9e12dfa9ddb8523db5edf435",
        "model.safetensors": "fda53dd9551a5c4341ed240fad7a88e17d568660ed22e5bdc8405690febc4b5e",
        "training_curves.png": "9ccaba1fd02c0a4a2f693af4147838bba4ddef9cbf05d1eeb78a0df617c3f3a8"
    },
    dataset="rMD17 ethanol, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 13.7473, "forces_mae": 45.5353},
    description="constraint-relaxation (CR) training, 40 epochs, small preset",
))
register_pretrained(PretrainedEntry(
    name="equiformer-md17-ethanol.standard",
    architecture="equiformer",
    repo_id="zoo-models/equiformer-md17-ethanol.standard",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "206431da90735ba3a966edb1098ad78f814e887f96e297b8b5c94daaf0206aad",
        "comparison.png": "6a1b507e616bb7d5fc55d66d712e74b02a81aa2c8087c061fe016746cdfa4c40",
        "config.json": "d0f257ced29bafd6bf94d79d701007e6b4b5121147e2550aacca83123b58bd27",
        "model.safetensors": "50e125b9c5dd72fb8a645f1d2b405a577b330f19eac4944fc51c3e7d2023d840",
        "training_curves.png": "a50d9d490dc57a698f6c17288500d9e6cd6c467bf3496797a1effac8b181f683"
    },
    dataset="rMD17 ethanol, 950 training frames",
    licence="MIT",
    metrics={"energy_mae": 13.0094, "forces_mae": 44.4326},
    description="standard training (no relaxation), 40 epochs, small preset",
))

# --- EGNN, charged N-body (python training/run_family.py egnn-nbody) ---
register_pretrained(PretrainedEntry(
    name="egnn-nbody",
    architecture="egnn",
    repo_id="zoo-models/egnn-nbody",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "a624cfde5813d001a346d1423a97066c9dd61cd6c6d498be3751e0c517154818",
        "comparison.png": "e42899a9e1533da855403394f500296671353bccc5047a40ec4de7f6a6cb5f11",
        "config.json": "9735e2a3f637959b536ac5639c047f9467b7b23ce67043f0adc05d9bf69dfece",
        "model.safetensors": "e1d7103642a791336a9f3f61bc47e7759fdb7a7351bc9c8f0106e4358f59ea0a",
        "training_curves.png": "2e8d64f40e34b7f5bc3fea75e5b1251a366dcb78d6b73b759b137511ac85912b"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00903684},
    description="none training, 200 epochs, seed 0",
))
register_pretrained(PretrainedEntry(
    name="egnn-nbody.standard",
    architecture="egnn",
    repo_id="zoo-models/egnn-nbody.standard",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "43b458dba8046d58fcf76b871b7b4ea00f3e4d5c960a040709fc44fa922eeb42",
        "comparison.png": "e42899a9e1533da855403394f500296671353bccc5047a40ec4de7f6a6cb5f11",
        "config.json": "076049744f4fff9689e9d1ebe82f3b1b995199faa0fd4a0dfda0d23d5a857741",
        "model.safetensors": "e1d7103642a791336a9f3f61bc47e7759fdb7a7351bc9c8f0106e4358f59ea0a",
        "training_curves.png": "2e8d64f40e34b7f5bc3fea75e5b1251a366dcb78d6b73b759b137511ac85912b"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00903684},
    description="none training, 200 epochs, seed 0",
))
register_pretrained(PretrainedEntry(
    name="egnn-nbody.cr",
    architecture="egnn",
    repo_id="zoo-models/egnn-nbody.cr",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "b84a736dbc1588a1dc1e7f1cce6d29d514201f5f3398c8728f0d865a081cc30c",
        "comparison.png": "e42899a9e1533da855403394f500296671353bccc5047a40ec4de7f6a6cb5f11",
        "config.json": "4f6d39b12a1ac2e98c54d97f7fe6f19d250a66f7dab185647f8b20805accea6f",
        "model.safetensors": "d0de50f0cfa531437aa3e35b08d2e488ea520f3e1d48286ebdbbb5ed513d7fc5",
        "training_curves.png": "7d4296c4ae46dc4fe9f511083007938a4a6111c303a2e836aac90f1f7936df7f"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00922372},
    description="cr training, 200 epochs, seed 1",
))
register_pretrained(PretrainedEntry(
    name="egnn-nbody.ace",
    architecture="egnn",
    repo_id="zoo-models/egnn-nbody.ace",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "61fcf183ae518d70e9580cc9254470539ea6621ca4f8a0efd22044ba42d1ad0c",
        "comparison.png": "e42899a9e1533da855403394f500296671353bccc5047a40ec4de7f6a6cb5f11",
        "config.json": "dd83891720bc543049a3820200374feb9b316d064abf417bf8f67cd4ab831d34",
        "model.safetensors": "e3453c048938d9f9cee1d69d2feadd68e35c3ebfe5bb36a7d96d29f938f7ee4d",
        "training_curves.png": "adf4f1e91b247eab217a05b837f45a8b835f1788edf2b8fd6a02416a915303b8"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.0091798},
    description="ace training, 200 epochs, seed 0",
))
register_pretrained(PretrainedEntry(
    name="egnn-nbody.recm",
    architecture="egnn",
    repo_id="zoo-models/egnn-nbody.recm",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "438548c461294d80cb3aa42f373b2d83f89db5c844b708cbf16521935cec7930",
        "comparison.png": "e42899a9e1533da855403394f500296671353bccc5047a40ec4de7f6a6cb5f11",
        "config.json": "d5a692abaa2501d6f5391f6c071f5b5b2e70d06500a22cc07606568be36dbb0d",
        "model.safetensors": "0597a2c539fe5cfea4039fde4f0f00dfea0820080e8602bac920cc4a3249282b",
        "training_curves.png": "5e5b6a31dbeb20f69cd7459f06ebc95405c84a4c8c5d69d190295613edbfdccf"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00917758},
    description="recm training, 200 epochs, seed 0",
))

# --- SEGNN, charged N-body (python training/run_family.py segnn-nbody) ---
register_pretrained(PretrainedEntry(
    name="segnn-nbody",
    architecture="segnn",
    repo_id="zoo-models/segnn-nbody",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "a8b649b1fe68deae029df89a5080e1b77e3b5ff8eb7e8fe557d158d95c2720ef",
        "comparison.png": "83e6eda242e1670ec57a753d763ad52471e3f6a0963ee88171e98bdde6a69480",
        "config.json": "8ae8c70f0794d019c174fa51e121bfb3190f9f663a105801a2969640fb514630",
        "model.safetensors": "fc0a5ea323d79823d1e1466c9031506f2ad63e0041636993a37f26d94974923c",
        "training_curves.png": "389397b7a103169dfc92cb1a9a0ec6425e360235c70f42fcfc544449d51956b6"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00700223},
    description="none training, 80 epochs, seed 2",
))
register_pretrained(PretrainedEntry(
    name="segnn-nbody.standard",
    architecture="segnn",
    repo_id="zoo-models/segnn-nbody.standard",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "ba278e2230f873164e5a9a8196df1a885e35fb36874b7832781fdc28270e0128",
        "comparison.png": "83e6eda242e1670ec57a753d763ad52471e3f6a0963ee88171e98bdde6a69480",
        "config.json": "0fbbbcb9ec545b91e58039bd28a30c5e71d5fa8823d8658cbf036d36677aaed8",
        "model.safetensors": "fc0a5ea323d79823d1e1466c9031506f2ad63e0041636993a37f26d94974923c",
        "training_curves.png": "389397b7a103169dfc92cb1a9a0ec6425e360235c70f42fcfc544449d51956b6"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00700223},
    description="none training, 80 epochs, seed 2",
))
register_pretrained(PretrainedEntry(
    name="segnn-nbody.cr",
    architecture="segnn",
    repo_id="zoo-models/segnn-nbody.cr",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "9d536a4f347c078a96d25c4147f63e102950a22247444f9df79bb5e8b4a95e2f",
        "comparison.png": "83e6eda242e1670ec57a753d763ad52471e3f6a0963ee88171e98bdde6a69480",
        "config.json": "135be4f8c3f92b9b48e2037681c934585e0468e4c553a9de7193704a7a7c981d",
        "model.safetensors": "b5ad74b858316e9e16485fef89f0901450662c9d70f771ef3a6985481172d1bd",
        "training_curves.png": "089c8d4ae20b75154e645ebc992b9c3d21aaafb848d5e2071561bee01fd71621"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00700823},
    description="cr training, 80 epochs, seed 2",
))
register_pretrained(PretrainedEntry(
    name="segnn-nbody.ace",
    architecture="segnn",
    repo_id="zoo-models/segnn-nbody.ace",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "a3733a4f690acb1a0a9887f94bdf54015660f5f2383286eb04c38943c0044ba2",
        "comparison.png": "83e6eda242e1670ec57a753d763ad52471e3f6a0963ee88171e98bdde6a69480",
        "config.json": "2ae235ed0581b981d4954c7cc946e64b9a5d976e574172e8d335ee20fe0fa94d",
        "model.safetensors": "dd4f1b15c32a650da49e744b8d1400da84e59e532530ab4ca05808151a735876",
        "training_curves.png": "83552e801220ec0646e63957fafc32d9bbcb1e37b055ace272be6d8e0c789881"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00735198},
    description="ace training, 80 epochs, seed 2",
))
register_pretrained(PretrainedEntry(
    name="segnn-nbody.recm",
    architecture="segnn",
    repo_id="zoo-models/segnn-nbody.recm",
    revision=None,  # bundled in model_cards/; pinned when uploaded with `zoo publish`
    sha256={
        "README.md": "de5f6c3370954bc9aed60112ad770b7f2c7071019d9d733f046d6408b4900541",
        "comparison.png": "83e6eda242e1670ec57a753d763ad52471e3f6a0963ee88171e98bdde6a69480",
        "config.json": "62f2a5cb781acb5c1b4fcbd5ee000b60b58dcd17713f1c6125947570856c1c3c",
        "model.safetensors": "bbea2d256a2b07710f6068dd0a8014a95ce2e795c72439709c58e048faad0591",
        "training_curves.png": "91a894ba8a966c15e6651736689c8836bcedb40436241d8736a32936d7b122ce"
    },
    dataset="charged N-body (5 particles)",
    licence="MIT",
    metrics={"mse": 0.00727724},
    description="recm training, 80 epochs, seed 2",
))
