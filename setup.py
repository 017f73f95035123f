"""Build hook: ship the bundled model folders and the training recipes inside the package.

Everything else is configured in ``pyproject.toml``. The project keeps ``model_cards/`` and
``training/recipes/`` at its top level (they are what the Hub repositories and ``zoo train``
show); a built wheel carries copies as ``zoo/_bundled/model_cards`` and ``zoo/_bundled/recipes``,
which :mod:`zoo.resources` finds. An editable install copies nothing: it reads the top-level
folders in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# Top-level folder -> folder inside the built package.
BUNDLED = {"model_cards": "zoo/_bundled/model_cards", "training/recipes": "zoo/_bundled/recipes"}


def _visible(path: Path) -> bool:
    return not any(part.startswith(".") or part == "__pycache__" for part in path.parts)


class BuildPyWithBundled(build_py):
    """``build_py`` that also copies the bundled folders into the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the top-level folders in place
        for source, target in BUNDLED.items():
            src = ROOT / source
            if not src.is_dir():
                raise FileNotFoundError(f"{src} is missing: cannot bundle it into the package")
            dest = Path(self.build_lib) / target
            shutil.rmtree(dest, ignore_errors=True)
            for path in sorted(src.rglob("*")):
                relative = path.relative_to(src)
                if path.is_file() and _visible(relative):
                    (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest / relative)


setup(cmdclass={"build_py": BuildPyWithBundled})
