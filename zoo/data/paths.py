"""Where the reference data lives.

The data is large and shared between checkouts, so it is kept outside the package. The
environment variable ``ZOO_DATA_DIR`` names the folder. Without it, a source checkout (or an
editable install) uses ``<project root>/../shared/data``, where the project root is the folder
that holds the ``zoo`` package; an installed package, which has no project root, uses
``<cache root>/data`` (``$ZOO_CACHE_DIR/data`` or ``~/.cache/zoo/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.data.cache import cache_root
from zoo.resources import checkout_root

ENV_VAR = "ZOO_DATA_DIR"


def default_data_root() -> Path:
    """Return the data root used when ``ZOO_DATA_DIR`` is not set.

    Returns
    -------
    pathlib.Path
        In a checkout, ``<project root>/../shared/data``, normalised (no ``..`` left in it);
        in an installed package, ``<cache root>/data`` (see :func:`zoo.data.cache.cache_root`).
    """
    root = checkout_root()
    if root is not None:
        return (root.parent / "shared" / "data").resolve()
    return cache_root() / "data"


def _default_source() -> str:
    if checkout_root() is not None:
        return f"the checkout's default <project root>/../shared/data, since ${ENV_VAR} is not set"
    return (
        f"the installed package's default <cache root>/data (${{ZOO_CACHE_DIR}} or "
        f"~/.cache/zoo), since ${ENV_VAR} is not set"
    )


def data_root() -> Path:
    """Return the folder that holds the reference data.

    Returns
    -------
    pathlib.Path
        The value of the environment variable ``ZOO_DATA_DIR`` (``~`` expanded) when it is set
        and not empty, otherwise :func:`default_data_root`. The folder need not exist.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return default_data_root()


def require_data(relpath: str | os.PathLike[str]) -> Path:
    """Return ``data_root() / relpath``, or raise a helpful error when it does not exist.

    Parameters
    ----------
    relpath
        Path relative to the data root, e.g. ``"rmd17/aspirin/train.xyz"``.

    Returns
    -------
    pathlib.Path
        The absolute path of the existing file or folder.

    Raises
    ------
    FileNotFoundError
        When the path is missing. The message says where it looked and how to fix it.
    """
    root = data_root()
    path = root / relpath
    if path.exists():
        return path
    source = (
        f"from ${ENV_VAR}={os.environ[ENV_VAR]!r}"
        if os.environ.get(ENV_VAR, "").strip()
        else _default_source()
    )
    raise FileNotFoundError(
        f"Reference data {str(relpath)!r} not found at {path} (data root {root}, {source}). "
        f"Point the environment variable {ENV_VAR} at the folder that holds 'rmd17/', e.g. "
        f"`export {ENV_VAR}=/path/to/shared/data`, or download the full revised MD17 archive "
        f"with `python -c 'import zoo.data; zoo.data.download_rmd17()'` (writes "
        f"<data root>/rmd17/<molecule>/all.xyz)."
    )
