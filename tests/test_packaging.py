"""The package works when installed: a wheel carries the bundled models, their index and the
recipes, and finds them without the checkout; an editable install reads the checkout's folders.

Each test builds from a copy of the source tree (the checkout is left untouched) into a fresh
virtual environment that sees the system's packages (torch and friends are not reinstalled) and
runs from another folder, checking that the ``zoo`` it imports is the one it installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.resources import checkout_root

ROOT = checkout_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="needs the source checkout to build from")

# What a build needs, relative to the project root.
SOURCES = ["zoo", "model_cards", "training/recipes", "pyproject.toml", "setup.py", "MANIFEST.in",
           "README.md"]

_CHECK = r"""
import json, os, sys
import zoo
from zoo.data.paths import default_data_root, require_data
from zoo.resources import model_cards_dir, recipes_dir
from zoo.train.recipe import resolve_recipe_path

model = zoo.load("egnn-nbody")  # an alias, from the bundled folder, offline
# Every registered model loads offline, every bundled recipe resolves by name.
loaded = sorted(zoo.load(n).zoo_info["name"] for n in zoo.list_models())
recipes = sorted(p.stem for p in recipes_dir().glob("*.yaml")
                 if resolve_recipe_path(p.stem).parent == recipes_dir())
try:
    require_data("rmd17/aspirin/train.xyz")
    missing = None
except FileNotFoundError as err:
    missing = str(err)
print(json.dumps({
    "zoo": zoo.__file__, "cards": str(model_cards_dir()), "recipes": str(recipes_dir()),
    "folder": model.zoo_info["folder"], "name": model.zoo_info["name"],
    "recipe": str(resolve_recipe_path("egnn-nbody.standard")),
    "data_root": str(default_data_root()), "missing": missing,
    "loaded": loaded, "recipes_by_name": recipes,
}))
"""


def _copy_sources(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "_bundled")
    for relative in SOURCES:
        src, target = ROOT / relative, dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore)
        else:
            shutil.copy2(src, target)
    return dest


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ZOO_DATA_DIR", "ZOO_MODEL_CARDS_DIR")}
    return {**env, "HF_HUB_OFFLINE": "1", "ZOO_CACHE_DIR": str(tmp_path / "cache"),
            "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _venv(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path]:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
         tmp_path, env)
    return venv, venv / "bin" / "python"


def _pip_install(python: Path, args: list[str], cwd: Path, env: dict[str, str]) -> None:
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--no-build-isolation", "--ignore-installed", *args], cwd, env)


def _check(venv: Path, python: Path, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    cwd.mkdir(exist_ok=True)
    out = json.loads(_run([str(python), "-c", _CHECK], cwd, env).strip().splitlines()[-1])
    listing = _run([str(venv / "bin" / "zoo"), "list"], cwd, env)
    assert "egnn-nbody.standard" in listing and "(also: egnn-nbody)" in listing
    assert "usage: zoo train" in _run(
        [str(venv / "bin" / "zoo"), "train", "egnn-nbody.standard", "--help"], cwd, env
    )
    return out


def test_wheel_installs_a_self_contained_package(tmp_path):
    src = _copy_sources(tmp_path / "src")
    env = _env(tmp_path)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path / "dist"), str(src)], tmp_path, env)
    [wheel] = (tmp_path / "dist").glob("zoo-*.whl")
    venv, python = _venv(tmp_path, env)
    _pip_install(python, [str(wheel)], tmp_path, env)
    out = _check(venv, python, tmp_path / "elsewhere", env)

    package = Path(out["zoo"]).parent
    assert package.is_relative_to(venv), f"imported {out['zoo']}, not the installed zoo"
    assert Path(out["cards"]) == package / "_bundled" / "model_cards"
    assert Path(out["recipes"]) == package / "_bundled" / "recipes"
    assert Path(out["folder"]) == package / "_bundled" / "model_cards" / "egnn-nbody.standard"
    assert out["name"] == "egnn-nbody.standard"
    assert Path(out["recipe"]).parent == package / "_bundled" / "recipes"
    # No checkout around: the data default is in the cache, and the error says so.
    assert Path(out["data_root"]) == tmp_path / "cache" / "data"
    assert "installed package" in out["missing"] and "ZOO_DATA_DIR" in out["missing"]
    shipped = sorted(p.name for p in (package / "_bundled" / "model_cards").iterdir())
    assert shipped == sorted(p.name for p in (ROOT / "model_cards").iterdir())
    published = sorted(p.name for p in (ROOT / "model_cards").iterdir() if p.is_dir())
    assert out["loaded"] == published
    assert out["recipes_by_name"] == sorted(
        p.stem for p in (ROOT / "training" / "recipes").glob("*.yaml"))


def test_editable_install_reads_the_checkout_folders(tmp_path):
    src = _copy_sources(tmp_path / "src")
    env = _env(tmp_path)
    venv, python = _venv(tmp_path, env)
    _pip_install(python, ["-e", str(src)], tmp_path, env)
    out = _check(venv, python, tmp_path / "elsewhere", env)

    assert Path(out["zoo"]).parent == src / "zoo"
    assert Path(out["cards"]) == src / "model_cards"
    assert Path(out["recipes"]) == src / "training" / "recipes"
    assert Path(out["folder"]) == src / "model_cards" / "egnn-nbody.standard"
    assert Path(out["data_root"]) == (tmp_path / "shared" / "data").resolve()
    assert "checkout" in out["missing"]
    assert not (src / "zoo" / "_bundled").exists()
