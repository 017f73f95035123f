"""Where the reference data lives.

The data is kept outside the project (it is large and shared between checkouts): by default in
``<project root>/../shared/data``, where the project root is the folder that holds the ``zoo``
package. The environment variable ``ZOO_DATA_DIR`` overrides that default.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ZOO_DATA_DIR"

# zoo/data/paths.py -> parents[2] is the project root (the folder that holds ``zoo/``).
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """Return the data root used when ``ZOO_DATA_DIR`` is not set.

    Returns
    -------
    pathlib.Path
        ``<project root>/../shared/data``, normalised (no ``..`` left in it).
    """
    return (_PROJECT_ROOT.parent / "shared" / "data").resolve()


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
        else f"the default, since ${ENV_VAR} is not set"
    )
    raise FileNotFoundError(
        f"Reference data {str(relpath)!r} not found at {path} (data root {root}, {source}). "
        f"Point the environment variable {ENV_VAR} at the folder that holds 'rmd17/', e.g. "
        f"`export {ENV_VAR}=/path/to/shared/data`, or download the full revised MD17 archive "
        f"with `python -c 'import zoo.data; zoo.data.download_rmd17()'` (writes "
        f"<data root>/rmd17/<molecule>/all.xyz)."
    )
