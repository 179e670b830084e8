"""The house's layout, held by the suite (docs/architecture.md): few files at the top of ``bridge/`` and
``clients/``, no module over 400 lines, no import circle, and no import that runs back up the layers.

Every import counts — module level, inside a function, under ``TYPE_CHECKING`` — since each ties two
modules together. A new module joins the folder of its family; a new family gets a rank in
:data:`LAYERS` (and a line in docs/architecture.md) in the same change.
"""

from __future__ import annotations

import ast
import importlib
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Folder → import name (pyproject's package-dir).
ROOTS = {"clients": "trainsound", "bridge": "trainsound.bridge", "patches": "trainsound.patches"}
MAX_LINES = 400
#: ``.py`` files allowed at a folder's top, besides ``__init__.py`` and ``__main__.py``.
MAX_TOP = {"bridge": 8, "clients": 10}

#: Families from the bottom up: a module may import its own family and any family of a lower rank,
#: never a higher one. A family is a folder (``bridge.mapping``) or a top-level module (``bridge.table``).
LAYERS: dict[str, int] = {
    # bytes and errors: the standard library only
    "bridge.errors": 0,
    "bridge.wire": 1,
    "patches": 4,  # the pyo patch set and its host process: on sound, below the outputs that spawn it
    "bridge.protocol": 2,  # the documented import path of wire.protocol
    # what every family may use
    "bridge.ratelog": 2,
    "bridge.table": 2,
    "bridge.mapped": 2,
    "clients.errors": 2,
    # the training side's plain client
    "clients.transport": 3,
    "clients.stats": 3,
    "clients.osc": 4,
    # sound below everything that plays it
    "bridge.sound": 3,
    # the engine and what it is made of
    "bridge.alarms": 4,
    "bridge.mapping": 5,
    "bridge.config": 6,
    "bridge.outputs": 7,
    "bridge.receive": 7,
    "bridge.pipeline": 8,
    # TensorBoard logs as a client; recordings played back through the pipeline
    "bridge.tb": 5,
    "bridge.replay": 9,
    # what the bridge shows of itself, then the daemon and the commands that talk to it
    "bridge.web": 9,
    "bridge.service": 10,
    # the training side's framework adapters
    "clients.torch": 5,
    "clients.keras": 5,
    "clients": 6,  # trainsound/__init__: watch, log, Client
    "clients.lightning": 6,
    "clients.transformers": 6,
    "clients.optax": 6,
    # applications on top, then the command line
    "bridge.demo": 11,
    "bridge.netsounds": 12,
    "bridge": 13,  # bridge/__init__
    "bridge.cli": 13,
    "bridge.__main__": 14,
}


def module_files() -> dict[str, Path]:
    """Import name → file, for every module of the package."""
    out = {}
    for folder, name in ROOTS.items():
        for p in sorted((ROOT / folder).rglob("*.py")):
            parts = [*name.split("."), *p.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = p
    return out


MODULES = module_files()


def family(module: str) -> str:
    """``trainsound.bridge.mapping.engine`` → ``bridge.mapping``; ``trainsound.osc`` → ``clients.osc``.

    >>> family("trainsound.bridge.mapping.engine"), family("trainsound.torch.watch"), family("trainsound")
    ('bridge.mapping', 'clients.torch', 'clients')
    """
    for folder, name in sorted(ROOTS.items(), key=lambda kv: -len(kv[1])):
        if module == name:
            return folder
        if module.startswith(name + "."):
            first = module[len(name) + 1 :].split(".")[0]
            return folder if folder == "patches" else f"{folder}.{first}"
    raise ValueError(module)


@cache
def imports(module: str) -> frozenset[str]:
    """The package's modules that ``module`` imports, anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            # a package's own __init__ runs when one of its modules is imported: not an edge of its own
            if name and name != module and not module.startswith(name + "."):
                found.add(name)
    return frozenset(found)


def circles() -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    for root in MODULES:
        if root in index:
            continue
        work = [(root, iter(sorted(imports(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(imports(w)))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    yield sorted(comp)


@pytest.mark.parametrize("folder", sorted(MAX_TOP))
def test_few_files_at_the_top(folder: str) -> None:
    top = sorted(p.name for p in (ROOT / folder).glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= MAX_TOP[folder], (
        f"{folder}/ holds {len(top)} .py files at its top (at most {MAX_TOP[folder]}): {', '.join(top)}; "
        "a new module joins the folder of its family")


def test_no_module_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (one job each; split by job, not by length): {long}"


def test_no_import_circle() -> None:
    assert not list(circles())


def test_every_family_has_a_rank() -> None:
    unranked = sorted({family(m) for m in MODULES} - set(LAYERS))
    assert not unranked, f"families without a place in LAYERS (and docs/architecture.md): {unranked}"


def test_no_import_runs_back_up() -> None:
    up = [f"{m} ({family(m)}, {LAYERS[family(m)]}) imports {i} ({family(i)}, {LAYERS[family(i)]})"
          for m in sorted(MODULES) for i in sorted(imports(m))
          if family(i) != family(m) and LAYERS[family(i)] > LAYERS[family(m)]]
    assert not up, "imports that run back up:\n" + "\n".join(up)


def test_every_folder_is_a_listed_package() -> None:
    """A folder missing from pyproject's package list imports from the clone and vanishes from an install."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages - listed == set(), f"packages missing from pyproject.toml: {sorted(packages - listed)}"


def test_architecture_doc_has_a_line_per_folder() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    folders = sorted({p.parent.relative_to(ROOT).as_posix() for p in MODULES.values() if p.name == "__init__.py"})
    missing = [f for f in folders if not re.search(rf"^\s*{re.escape(f.split('/', 1)[-1])}/\s", doc, re.M)
               and f not in ROOTS]
    assert not missing, f"docs/architecture.md's tree has no line for: {missing}"


#: Tests at ``tests/bridge/``'s or ``tests/clients/``' top that span the families.
SPANNING_TESTS = {"test_bridge_e2e.py", "test_reasons_documented.py", "test_missing_extras.py"}


@pytest.mark.parametrize("folder", ["bridge", "clients"])
def test_tests_mirror_the_package(folder: str) -> None:
    """``tests/<folder>/<family>/`` for a family's tests; at ``tests/<folder>/``'s top only the tests of a module
    at ``<folder>/``'s top (``test_<module>…``) and the few that span the families."""
    top = {p.stem for p in (ROOT / folder).glob("*.py")} - {"__init__", "__main__"}
    loose = sorted(p.name for p in (ROOT / "tests" / folder).glob("test_*.py") if p.name not in SPANNING_TESTS
                   and not any(p.stem == f"test_{m}" or p.stem.startswith(f"test_{m}_") for m in top))
    assert not loose, f"tests at tests/{folder}/'s top that belong in a family's folder: {loose}"


#: The public import paths (README, docs/clients.md, docs/protocol.md): each must keep importing.
PUBLIC = [
    ("trainsound", "watch"), ("trainsound", "log"), ("trainsound", "Client"), ("trainsound", "send"),
    ("trainsound.keras", "Sonify"), ("trainsound.lightning", "Sonify"), ("trainsound.transformers", "Sonify"),
    ("trainsound.optax", "sonify"), ("trainsound.bridge.protocol", "parse_event"),
    ("trainsound.bridge.protocol", "PROTOCOL_VERSION"), ("trainsound.bridge.wire.protocol", "PROTOCOL_VERSION"),
    ("trainsound.osc", "pool_units"), ("trainsound.bridge.netsounds", "sonify_image"),
    ("trainsound.patches.pyo.base", "Patch"),
]


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_import_paths(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name)) or name.isupper()
