"""Import hygiene: every module imports on its own, no module-level import loops, the registry
and the small shared modules import nothing from zoo, and loading or verifying a model does not
import Lightning."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

PACKAGE = Path(zoo.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "_bundled" not in path.parts and "__pycache__" not in path.parts
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(name: str) -> set[str]:
    """The zoo modules ``name`` imports when it is executed: statements at module level (also
    inside ``if``/``try`` there), not those in functions or under ``if TYPE_CHECKING``."""
    is_package = MODULES[name].name == "__init__.py"
    found: set[str] = set()

    def target(module: str | None, level: int) -> str | None:
        if not level:
            return module
        base = name.split(".")[: len(name.split(".")) - level + (1 if is_package else 0)]
        return ".".join(base + ([module] if module else []))

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in MODULES)
            elif isinstance(node, ast.ImportFrom):
                module = target(node.module, node.level)
                for alias in node.names:
                    if f"{module}.{alias.name}" in MODULES:
                        found.add(f"{module}.{alias.name}")  # a submodule
                    elif module in MODULES:
                        found.add(module)

    visit(ast.parse(MODULES[name].read_text()).body)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: module_level_imports(name) for name in MODULES}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "name", ["zoo._registry", "zoo.resources", "zoo.symmetry", "zoo.data.cache"]
)
def test_shared_modules_import_nothing_from_zoo(name):
    assert module_level_imports(name) == set()


def test_builtin_architecture_table_matches_the_registrations():
    from zoo._registry import _ARCHITECTURES, BUILTIN_ARCHITECTURES

    zoo.list_architectures()  # imports every builtin architecture file
    for name, module in BUILTIN_ARCHITECTURES.items():
        assert _ARCHITECTURES[name].cls.__module__ == module, name
    builtin = {n for n, e in _ARCHITECTURES.items() if e.cls.__module__.startswith("zoo.")}
    assert builtin == set(BUILTIN_ARCHITECTURES)


def _third_party_imports() -> list[str]:
    """Top-level names of the non-zoo, non-stdlib libraries zoo imports at module level."""
    names = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return sorted(n for n in names - set(sys.stdlib_module_names) if n not in ("zoo", "__future__"))


# One fresh interpreter preloads the third-party libraries (seconds), then forks a child per zoo
# module: each child starts with no zoo module imported and imports one.
_FORK_EACH = r"""
import importlib, json, os, sys, traceback
for library in sys.argv[2].split(","):
    try:
        importlib.import_module(library)
    except Exception:
        pass  # an optional dependency: the module that needs it says so when imported
assert not [m for m in sys.modules if m == "zoo" or m.startswith("zoo.")]
failed = []
for name in sys.argv[1].split(","):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            print(f"--- import {name} failed:", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print(json.dumps(failed))
"""


def _env() -> dict[str, str]:
    # One thread: forking a process whose thread pools are running is not safe.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_on_its_own(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _FORK_EACH, ",".join(sorted(MODULES)),
         ",".join(_third_party_imports())],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert failed == [], result.stderr[-8000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports_alone_in_a_fresh_interpreter(name, tmp_path):
    result = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                            text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]


_NO_LIGHTNING = r"""
import json, sys
import zoo
from zoo.cli import build_parser
from zoo.tasks import get_task
import zoo.verify

build_parser()
model = zoo.load("egnn-nbody")  # bundled: no network
for dataset in ("rmd17", "nbody", "modelnet40", "smoke-rotation"):
    get_task(dataset)  # what zoo verify uses to re-measure a card's metrics
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("lightning", "pytorch_lightning"))))
"""


def test_load_and_verify_do_not_import_lightning(tmp_path):
    result = subprocess.run([sys.executable, "-c", _NO_LIGHTNING], capture_output=True,
                            text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
