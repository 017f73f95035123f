"""Errors raised while saving, finding, downloading and loading checkpoints.

Every error subclasses :class:`ZooError`, so ``except zoo.hub.errors.ZooError`` catches them all;
each also subclasses the closest builtin (``LookupError``, ``ValueError``, ``OSError``) so that
generic handlers keep working.
"""

from __future__ import annotations

from pathlib import Path

# One base class for the whole package, defined where nothing else is imported.
from zoo.errors import ZooError

__all__ = [
    "CheckpointError",
    "CorruptFileError",
    "DownloadError",
    "IncompatibleVersionError",
    "InvalidNameError",
    "OfflineError",
    "UnknownModelError",
    "ZooError",
]


class UnknownModelError(ZooError, LookupError):
    """A model name that is neither registered nor an existing folder."""

    def __init__(
        self,
        name: str,
        suggestions: list[str],
        known: list[str],
        *,
        architecture_without_weights: bool = False,
        recipes: list[str] | None = None,
        architecture_models: list[tuple[str, list[str]]] | None = None,
        predicts: bool = False,
    ) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        self.architecture_without_weights = architecture_without_weights
        #: ``(model name, its aliases)`` of the published models of the architecture ``name``.
        self.architecture_models = list(architecture_models or [])
        listing = ", ".join(known) if known else "none"
        if self.architecture_models:
            # An architecture name given where a model is expected: name its published models
            # (plain names first, the ones a user would type).
            items = [f"{model} (also {', '.join(aliases)})" if aliases else model
                     for model, aliases in self.architecture_models]
            first_model, first_aliases = self.architecture_models[0]
            example = first_aliases[0] if first_aliases else first_model
            predict = f" or `zoo predict {example} ...`" if predicts else ""
            message = (
                f"{name!r} is an architecture, not a published model. Its published models: "
                f"{', '.join(items)}; load one by its name, e.g. zoo.load({example!r})"
                f"{predict}, or build the architecture untrained with "
                f"zoo.create_model({name!r})."
            )
        elif architecture_without_weights:
            # An architecture the user can build is not "unknown": say what is missing and how
            # to get it instead of suggesting near-miss names.
            train = (f" Train it with `zoo train {recipes[0]}`"
                     + (f" (recipes: {', '.join(recipes)})" if len(recipes) > 1 else "") + ","
                     if recipes else "")
            message = (
                f"{name!r} is an architecture with no published weights yet.{train} or build it "
                f"untrained with zoo.create_model({name!r}). Published models: {listing} "
                "(see zoo.list_models())."
            )
        else:
            hint = (f" Did you mean {', '.join(repr(s) for s in suggestions)}?"
                    if suggestions else "")
            message = (f"unknown model {name!r}.{hint} Registered models: {listing} "
                       "(see zoo.list_models()).")
        super().__init__(message)

    def __str__(self) -> str:  # LookupError would otherwise print the repr of the message
        return str(self.args[0])


class InvalidNameError(ZooError, ValueError):
    """A name that looks like a path but is not an existing folder.

    Model names never become paths unchecked: only ``[A-Za-z0-9._-]`` names that do not start
    with a dot are looked up in the registry.
    """


class CheckpointError(ZooError, ValueError):
    """A checkpoint folder or model that does not follow the zoo's format."""


class CorruptFileError(ZooError, OSError):
    """A file whose sha256 (or size) differs from the recorded one.

    Attributes
    ----------
    path
        The file.
    expected, actual
        The recorded and the measured sha256 (hex).
    removed
        Whether the file was removed from the Hugging Face cache (so a later load downloads it
        again instead of meeting the same bad copy).
    """

    def __init__(
        self,
        path: str | Path,
        expected: str,
        actual: str,
        *,
        expected_size: int | None = None,
        actual_size: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.expected_size = expected_size
        self.actual_size = actual_size
        self.removed = False
        super().__init__(str(path))

    def __str__(self) -> str:
        sizes = ""
        if self.expected_size is not None and self.actual_size != self.expected_size:
            sizes = f" It has {self.actual_size} bytes, not {self.expected_size} (truncated?)."
        where = (
            " The file was removed from the Hugging Face cache; loading again downloads it anew."
            if self.removed
            else ""
        )
        return (
            f"corrupt file {self.path}: sha256 {self.actual} does not match the expected "
            f"{self.expected}.{sizes}{where}"
        )


class IncompatibleVersionError(ZooError, RuntimeError):
    """A checkpoint that needs a newer zoo than the one installed."""


class OfflineError(ZooError, OSError):
    """Downloads are off (``HF_HUB_OFFLINE=1``, ``local_files_only``); the model is not cached."""


class DownloadError(ZooError, OSError):
    """A file could not be downloaded, or failed its checks once downloaded.

    The zoo's one download error: raised for the Hub (or the mirror in ``HF_ENDPOINT``) and for
    the dataset archives (:mod:`zoo.data.fetch`: a refused URL, a truncated transfer, a size or
    checksum mismatch, an unsafe archive member).
    """
