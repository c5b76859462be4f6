"""quality.deferred: a deferred module runs on its first attribute use, once, and is then the
real module for every importer (generated packages, each test its own names)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quality.deferred import defer, is_deferred

RUNS = "runs"  # each module of the package appends its name to the parent's RUNS list


@pytest.fixture
def package(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A package ``deferred_pkg_<test>`` with a submodule ``sub`` and ``sub.inner``, on sys.path."""
    name = f"deferred_pkg_{request.node.name}"
    root = tmp_path / name
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(f"{RUNS} = ['{name}']\nVALUE = 1\n")
    (root / "sub" / "__init__.py").write_text(
        f"import {name}\n{name}.{RUNS}.append('sub')\nVALUE = 2\n\ndef twice(x):\n    return 2 * x\n"
    )
    (root / "sub" / "inner.py").write_text(f"import {name}\n{name}.{RUNS}.append('inner')\n")
    sys.path.insert(0, str(tmp_path))
    yield name
    sys.path.remove(str(tmp_path))
    for m in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[m]


def test_an_import_binds_the_stand_in_and_runs_nothing(package: str) -> None:
    defer(package)
    module = importlib.import_module(package)
    assert is_deferred(package) and RUNS not in vars(module)
    assert module.__spec__.name == package and module.__file__.endswith("__init__.py")
    assert module.VALUE == 1  # the first attribute read runs the real module
    assert not is_deferred(package) and sys.modules[package] is not module
    assert sys.modules[package].runs == [package]  # once, whatever is read after
    assert module.runs is sys.modules[package].runs


def test_a_submodule_is_bound_in_its_parent_and_runs_on_first_use(package: str) -> None:
    parent = importlib.import_module(package)
    defer(f"{package}.sub")
    sub = parent.sub  # as ``from package import sub`` would bind it
    assert is_deferred(f"{package}.sub") and parent.runs == [package]
    assert sub.twice(21) == 42 and parent.runs == [package, "sub"]
    assert parent.sub is sys.modules[f"{package}.sub"] and not is_deferred(f"{package}.sub")


def test_importing_below_a_stand_in_runs_the_real_package_first(package: str) -> None:
    defer(f"{package}.sub")
    inner = importlib.import_module(f"{package}.sub.inner")  # reads the stand-in's __path__
    parent = sys.modules[package]
    assert parent.runs == [package, "sub", "inner"] and inner.__name__ == f"{package}.sub.inner"
    assert sys.modules[f"{package}.sub"].VALUE == 2


def test_a_module_imported_already_or_not_installed_is_left_alone(package: str) -> None:
    real = importlib.import_module(package)
    defer(package)
    assert sys.modules[package] is real and not is_deferred(package)
    defer(f"{package}_not_installed")
    assert f"{package}_not_installed" not in sys.modules
    assert not is_deferred(f"{package}_not_installed")


def test_a_missing_attribute_is_the_real_modules_error(package: str) -> None:
    defer(package)
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = module.no_such_name
    assert sys.modules[package].runs == [package]
