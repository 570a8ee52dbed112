"""The shape of the code, checked: layers import downwards only, no import cycles, small parts.

Layers, lowest first: ``models`` (the core: torch and numpy, no ZenML/MLflow/BentoML) <
``registry`` < ``serving`` < ``steps`` < ``pipelines``. Every import counts, also one inside a
function. Run ``pytest tests/unit/test_architecture.py -q`` to see an offending import by name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["models", "registry", "serving", "steps", "pipelines"]
RANK = {name: i for i, name in enumerate(LAYERS)}
CORE_FORBIDDEN = {"zenml", "mlflow", "bentoml"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Every module of the five layers, by dotted name."""
    out = {}
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def imports(module: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import in a module, lazy ones included."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                )
            for alias in node.names:
                # `from models import evaluation` imports the sub-module models.evaluation
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def project_edges() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a sub-module import also loads its package)."""
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set()
        for name, _ in imports(module):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_layers_only_import_downwards() -> None:
    upward = [
        f"{module} ({MODULES[module].relative_to(REPO)}:{line}) imports {name}"
        for module in MODULES
        for name, line in imports(module)
        if name.split(".")[0] in RANK and RANK[name.split(".")[0]] > RANK[module.split(".")[0]]
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_core_imports_no_mlops_framework() -> None:
    leaks = [
        f"{module}:{line} imports {name}"
        for module in MODULES
        if module.startswith("models")
        for name, line in imports(module)
        if name.split(".")[0] in CORE_FORBIDDEN
    ]
    assert not leaks, "models/ must run with torch alone:\n" + "\n".join(leaks)


def test_no_import_cycle_between_modules() -> None:
    assert cycles(project_edges()) == []


def test_no_import_cycle_between_the_core_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in project_edges().items():
        if module.count(".") < 1 or not module.startswith("models."):
            continue
        source = ".".join(module.split(".")[:2])
        packages.setdefault(source, set()).update(
            ".".join(t.split(".")[:2]) for t in targets if t.startswith("models.") and t != "models"
        )
    for source, targets in packages.items():
        targets.discard(source)
    assert cycles(packages) == []


def test_the_core_is_packages_only() -> None:
    loose = sorted(p.name for p in (REPO / "models").glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules at the top of models/ (put them in a package): {loose}"
    for package in (
        p for p in (REPO / "models").iterdir() if p.is_dir() and p.name != "__pycache__"
    ):
        if any(package.glob("*.py")):
            doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
            assert doc, f"{package.relative_to(REPO)}/__init__.py says nothing about the package"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_functions_stay_small(module: str) -> None:
    path = MODULES[module]
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, (
        f"{path.relative_to(REPO)} is over {MAX_FILE_LINES} lines"
    )
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            start = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
            length = node.end_lineno - start + 1
            source = "\n".join(text.splitlines()[node.lineno - 1 : node.end_lineno])
            assert length <= MAX_FUNCTION_LINES or "# long because" in source, (
                f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {length} lines; split it "
                "or say why in a '# long because ...' comment"
            )
