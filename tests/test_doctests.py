"""Every docstring example in the package runs (pure functions carry examples)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trainsound
import trainsound.bridge
import trainsound.patches

# clients/, bridge/ and patches/ are separate folders mapped under one name: walk each.
MODULES = sorted(
    {"trainsound", "trainsound.bridge", "trainsound.patches"}
    | {
        m.name
        for pkg in (trainsound, trainsound.bridge, trainsound.patches)
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
        if not m.name.endswith("__main__")  # importing it runs the CLI
    }
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
