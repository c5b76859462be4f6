"""Nothing of the simulator in the production path (issue 10, item 2): a grep over the code.

Production code is every module outside ``departments/`` (the simulated departments),
``tests/``, ``bench/`` and ``quality/evaluation.py`` (ground-truth evaluation, the one
module that knows the simulator's files). In it:

- no string names a simulator file (``registry.sqlite``, ``manifest.json`` …), a
  department code or a dataset code: the hub asks the catalogue. Docstrings and comments
  may give an example; string literals are code;
- only the main job and the CLI import ``quality.evaluation`` (run after the scorecard);
- nothing imports ``departments``, except the explicit simulate path of the main job and
  the CLI: an import inside a function of ``pipelines/main_job.py`` or ``pipelines/cli.py``
  whose name says so (contains ``simulat``: ``simulate_if_needed``, ``simulated_systems``,
  ``simulate``, ``simulate_serve``, ``_simulated_connections``). Those functions import it
  lazily, so a hub without a simulator folder never loads it.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from catalog.loader import load_catalogue
from departments.simulate import SPECS

REPO = Path(__file__).resolve().parents[1]
PRODUCTION = (
    "catalog", "lakehouse", "quality", "masking", "curated", "marts", "pipelines", "share_api",
)  # fmt: skip
EVALUATION = REPO / "quality" / "evaluation.py"
SIMULATE_PATH = {REPO / "pipelines" / "main_job.py", REPO / "pipelines" / "cli.py"}
# the lake side of the truth evaluation (reads the lake for quality.evaluation): imported by
# the main job and the CLI only, like the evaluation itself
TRUTH_RUN = REPO / "pipelines" / "truth_run.py"
# the need model against the simulator's need truth, for the CLI's `models backtest` only
NEED_TRUTH = REPO / "pipelines" / "need_truth.py"
CLI_MODELS = REPO / "pipelines" / "cli_models.py"
SIMULATOR_FILES = (
    "registry.sqlite",
    "manifest.json",
    "defects.parquet",
    "clean.parquet",
    "text_pii.parquet",
    "api_token",
)
FILE = {name: re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)") for name in SIMULATOR_FILES}
TOKEN = re.compile(r"[a-z][a-z0-9_]*")


def production_modules() -> list[Path]:
    files = [p for top in PRODUCTION for p in sorted((REPO / top).rglob("*.py"))]
    return [p for p in files if p != EVALUATION]


@functools.cache
def codes() -> set[str]:
    """Every department and dataset code the catalogue or the simulator knows."""
    cat = load_catalogue()
    out = set(cat.departments) | {ds.code for _, ds in cat.datasets()}
    return out | {s.dept for s in SPECS} | {s.code for s in SPECS}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring."""
    skip = docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def named_in(path: Path, known: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for line, text in strings(tree):
        found += [f"{line}: {name}" for name in SIMULATOR_FILES if FILE[name].search(text)]
        found += [f"{line}: {tok!r}" for tok in TOKEN.findall(text) if tok in known]
    return found


def departments_imports(path: Path, package: str = "departments") -> list[tuple[int, str | None]]:
    """(line, enclosing function name or None) of every import of ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            modules = []
            if isinstance(child, ast.Import):
                modules = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                modules = [child.module or ""]
            if any(m == package or m.startswith(f"{package}.") for m in modules):
                out.append((child.lineno, function))
            visit(child, name)

    visit(tree, None)
    return out


def test_there_is_production_code_to_check():
    modules = production_modules()
    assert len(modules) > 50 and EVALUATION.exists() and EVALUATION not in modules
    assert {"gaj", "registered_residents", "iot"} <= codes()


@pytest.mark.parametrize("path", production_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_simulator_file_department_or_dataset_code_in_production_code(path: Path):
    assert named_in(path, codes()) == []


@pytest.mark.parametrize("path", production_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_departments_imported_only_in_the_explicit_simulate_path(path: Path):
    imports = departments_imports(path)
    if path in SIMULATE_PATH:
        assert all(fn is not None and "simulat" in fn for _, fn in imports), imports
    else:
        assert imports == []


@pytest.mark.parametrize("path", production_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_scorecard_never_evaluates_against_a_truth(path: Path):
    """Ground-truth evaluation runs after the production path, from the main job and the
    CLI only: nothing else (ingest, gate, scorecard, leak scan, Dagster assets) imports it."""
    imports = departments_imports(path, "quality.evaluation")
    assert imports == [] or path in SIMULATE_PATH | {TRUTH_RUN, NEED_TRUTH}
    assert departments_imports(path, "pipelines.truth_run") == [] or path in SIMULATE_PATH
    assert departments_imports(path, "pipelines.need_truth") == [] or path == CLI_MODELS


def test_the_checks_can_fail(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""A docstring may say gaj and registry.sqlite."""\n'
        "import departments.simulate\n"
        "def run():\n"
        "    from departments.server import serve\n"
        "    return 'sqlite:registry.sqlite', \"gaj\", f'{1}/mzj/x', 'dept_api_token'\n",
        encoding="utf-8",
    )
    found = named_in(bad, {"gaj", "mzj"})
    assert found == ["5: registry.sqlite", "5: 'gaj'", "5: 'mzj'"]
    assert departments_imports(bad) == [(2, None), (4, "run")]
    assert all(
        fn is not None and "simulat" in fn
        for _, fn in departments_imports(REPO / "pipelines" / "main_job.py")
    )


# the layout: which top-level package may import which (ARCHITECTURE.md; curated/ sits
# between quality/masking and marts)
MAY_IMPORT = {
    "catalog": set(),
    "lakehouse": {"catalog"},
    "quality": {"catalog"},
    "masking": {"catalog"},
    "curated": {"catalog", "lakehouse", "masking", "quality"},
    "marts": {"catalog", "lakehouse", "masking", "curated", "quality"},
    "share_api": {"catalog", "lakehouse", "masking"},
}


def imported_tops(path: Path) -> set[str]:
    """The top-level packages of ours a module imports."""
    ours = set(PRODUCTION) | {"departments", "bench", "tests"}
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & ours


@pytest.mark.parametrize("top", sorted(MAY_IMPORT))
def test_each_package_imports_only_what_the_layout_allows(top: str):
    wrong = {
        str(p.relative_to(REPO)): sorted(imported_tops(p) - MAY_IMPORT[top] - {top})
        for p in sorted((REPO / top).rglob("*.py"))
    }
    assert not {k: v for k, v in wrong.items() if v}
