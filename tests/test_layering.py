"""The library's structure, read from the source (ast) so that it cannot drift: each module
imports only from the layers below it, every name is imported from the module that defines it
(no re-exports), and a run folder's file names are written in one place (imlib.runs.RunFiles).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from imlib.io import PROJECT_ROOT

# Bottom to top. A module imports from the layers below its own, and from the modules listed
# before it in its own layer (each layer in an order that respects its own imports). Imports
# for type annotations only (under ``if TYPE_CHECKING:``) are no dependency and may point up.
LAYERS = (
    # core: no notion of a run or a study
    ("_checks", "registry", "io", "progress", "paper", "intervals", "nmi", "degradations",
     "labels", "variants", "metrics", "calibration", "models", "data", "datasets", "style"),
    ("runs",),  # what a run is: settings, files, completion, checkpoints
    ("train",),  # the engine
    ("slurm",),  # asking SLURM: its settings, its cluster, its jobs
    ("launch",),  # where the runs train: this process, local processes, SLURM
    # the study and its results
    ("study", "records", "results", "histories", "nmi_study", "evaluate", "corruptions",
     "study_evaluation"),
    # what a reader sees
    ("thumbnails", "verdicts", "class_information", "report", "figure_parts", "plots",
     "information_plots", "explorer"),
    ("outputs", "execution", "pipeline"),  # the runner behind run_all.sh: folders, kernels, CLI
)
RANK = {module: (layer, position) for layer, modules in enumerate(LAYERS)
        for position, module in enumerate(modules)}
IMLIB = PROJECT_ROOT / "imlib"
RUN_FILE_NAMES = ("config.json", "history.jsonl", "last.pt", "best.pt", "result.json",
                  "diverged.json", "job.json")


@cache
def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(IMLIB.glob("*.py")) if p.stem != "__init__"}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    return {id(inner) for node in ast.walk(tree)
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
            for statement in node.body for inner in ast.walk(statement)}


def _imlib_imports(tree: ast.Module, annotations: bool = True
                   ) -> list[tuple[str, list[str], int]]:
    """Every ``from imlib.X import names`` and ``import imlib.X`` anywhere in ``tree``
    (functions included; TYPE_CHECKING blocks unless ``annotations`` is False):
    (X, names, line)."""
    skipped = set() if annotations else _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imlib."):
            found.append((node.module.split(".")[1], [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module == "imlib":
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], [], node.lineno) for a in node.names
                      if a.name.startswith("imlib.")]
    return found


@cache
def _defined(module: str) -> set[str]:
    """Names ``imlib.<module>`` defines at its top level (functions, classes, assignments)."""
    names = set()
    for node in _modules()[module].body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):  # a = ..., and a, b = ...
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_module_has_a_layer():
    unplaced = sorted(set(_modules()) - set(RANK))
    assert not unplaced, f"place {unplaced} in LAYERS of {__file__}"


def test_modules_import_only_from_the_layers_below():
    wrong = [f"imlib/{module}.py:{line} imports imlib.{imported}"
             for module, tree in _modules().items() if module in RANK
             for imported, _, line in _imlib_imports(tree, annotations=False)
             if imported in RANK and not RANK[imported] < RANK[module]]
    assert not wrong, "\n".join(wrong)


def _sources() -> list[Path]:
    folders = ("imlib", "notebooks", "tests", "benchmarks")
    return [p for folder in folders for p in sorted((PROJECT_ROOT / folder).glob("*.py"))]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_names_are_imported_from_the_module_that_defines_them(path):
    modules = _modules()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    wrong = [f"{path.name}:{line}: {name} is not defined in imlib.{module}"
             for module, names, line in _imlib_imports(tree) if module in modules
             for name in names if name not in _defined(module)]
    assert not wrong, "\n".join(wrong)


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


@pytest.mark.parametrize("path", [p for p in _sources() if p.parent.name in ("imlib", "notebooks")
                                  and p.name != "runs.py"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_run_file_names_are_written_only_by_run_files(path):
    """Code (docstrings and comments aside) names a run's files through imlib.runs.RunFiles."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docstrings = _docstrings(tree)
    wrong = [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and id(node) not in docstrings
             and any(name in node.value for name in RUN_FILE_NAMES)]
    assert not wrong, "use imlib.runs.RunFiles:\n" + "\n".join(wrong)
