"""Every docstring example of the three packages runs as a doctest in the default suite."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("dlnvolume", "samplers", "analysis")


def _modules() -> list[str]:
    names = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        names.append(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, extraglobs={"np": importlib.import_module("numpy")}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_the_collector_finds_examples():
    """Guard against a collector that silently finds nothing."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    n = sum(len(t.examples) for name in _modules() for t in finder.find(importlib.import_module(name), name))
    assert n >= 10
