"""Where the files that ship with zoo live: the bundled model folders and the training recipes.

A source checkout (and an editable install, ``pip install -e .``) reads the project's top-level
folders in place: ``model_cards/`` and ``training/recipes/``. A built wheel (``pip install .``)
carries copies of them inside the package, ``zoo/_bundled/model_cards/`` and
``zoo/_bundled/recipes/``, put there at build time by the hook in ``setup.py``; the installed
copies win when they exist, so an installed package never reaches outside itself.

This module imports nothing from zoo: everything else may use it.
"""

from __future__ import annotations

from pathlib import Path

#: The ``zoo`` package folder.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a built wheel puts the bundled folders (see ``setup.py``).
BUNDLED_DIR = PACKAGE_DIR / "_bundled"


def checkout_root() -> Path | None:
    """The project root when zoo runs from a source checkout or an editable install.

    Returns
    -------
    pathlib.Path or None
        The folder holding the ``zoo`` package, ``pyproject.toml`` and ``model_cards/``;
        ``None`` for an installed package (its parent folder is ``site-packages``).
    """
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "model_cards").is_dir():
        return root
    return None


def _shipped(installed: str, in_checkout: str) -> Path:
    copy = BUNDLED_DIR / installed
    if copy.is_dir():
        return copy
    return PACKAGE_DIR.parent / in_checkout


def model_cards_dir() -> Path:
    """The folder of the bundled model folders and of the registry, ``index.json``.

    Returns
    -------
    pathlib.Path
        ``zoo/_bundled/model_cards`` in an installed package, else ``<project root>/model_cards``.
    """
    return _shipped("model_cards", "model_cards")


def recipes_dir() -> Path:
    """The folder of the training recipes (``<name>.yaml``, one per published model).

    Returns
    -------
    pathlib.Path
        ``zoo/_bundled/recipes`` in an installed package, else
        ``<project root>/training/recipes``.
    """
    return _shipped("recipes", "training/recipes")
