"""The package layering of docs/architecture.md, read from the source with `ast`.

A package may import from its own package and from packages on lower floors; never from a higher floor, nor from
another package on its own floor. Lazy imports inside functions count too: a layering that only holds at import
time still couples the packages. `tasks/` is checked as `class_jax.tasks`, and the gin files' imports (gin/ is
installed as `class_jax.gin`) must name modules that exist.
"""

import ast
import importlib.util
import pathlib
import re
from typing import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Lowest first. Packages on one floor are independent of each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("runtime",),
    ("models",),
    ("checkpoints", "corpus", "evaluation"),
    ("mining",),
    ("tasks",),
    ("trainer",),
    ("retrieval",),
    ("fid",),
    ("demo",),
    ("commands",),
    ("cli",),
)
FLOOR_OF = {package: floor for floor, packages in enumerate(FLOORS) for package in packages}


def _module_files() -> Iterator[tuple[str, pathlib.Path]]:
    """(dotted module name, file) of every Python module the project installs."""
    for root, prefix in ((REPO / "class_jax", "class_jax"), (REPO / "tasks", "class_jax.tasks")):
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([prefix, *parts]), path


def package_of(module: str) -> str | None:
    """The first-level package of a class_jax module ('class_jax.mining.clr_pt.rule' -> 'mining')."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "class_jax" else None


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every class_jax import in `source`, relative imports resolved against `module`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def layering_violations(edges: list[tuple[str, int, str, str]]) -> list[str]:
    """Every import edge (file, line, from-package, to-package) that goes against FLOORS."""
    problems = []
    for file, line, source, target in edges:
        if source == target:
            continue
        for package in (source, target):
            if package not in FLOOR_OF:
                problems.append(f"{file}:{line}: package {package!r} has no floor in FLOORS")
        if source in FLOOR_OF and target in FLOOR_OF and FLOOR_OF[target] >= FLOOR_OF[source]:
            relation = "on the same floor as" if FLOOR_OF[target] == FLOOR_OF[source] else "above"
            problems.append(f"{file}:{line}: {source} imports {target}, which is {relation} it")
    return problems


def package_cycles(edges: list[tuple[str, int, str, str]]) -> list[list[str]]:
    """Cycles in the package graph (each as the list of packages along it)."""
    graph: dict[str, set[str]] = {}
    for _, _, source, target in edges:
        if source != target:
            graph.setdefault(source, set()).add(target)
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _project_edges() -> list[tuple[str, int, str, str]]:
    edges = []
    for module, path in _module_files():
        source = package_of(module)
        text = path.read_text(encoding="utf-8")
        # class_jax/__init__.py, and the one-release aliases of moved modules (they point to the new home).
        if source is None or text.startswith('"""DEPRECATED_ALIAS'):
            continue
        for line, name in imported_modules(text, module):
            target = package_of(name)
            if target is not None and target != "gin":
                edges.append((str(path.relative_to(REPO)), line, source, target))
    return edges


def test_every_import_follows_the_floors():
    edges = _project_edges()
    assert len(edges) > 300  # the walk really read the project
    assert layering_violations(edges) == []


def test_deprecated_aliases_are_the_known_ones():
    aliases = sorted(module for module, path in _module_files()
                     if path.read_text(encoding="utf-8").startswith('"""DEPRECATED_ALIAS'))
    assert aliases == ["class_jax.retrieval.refresh", "class_jax.trainer.checkpoints", "class_jax.trainer.partitioning"]


def test_no_cycle_between_packages():
    assert package_cycles(_project_edges()) == []


def test_the_checks_catch_what_they_are_for():
    upward = [("class_jax/models/x.py", 3, "models", "trainer")]
    sideways = [("class_jax/corpus/x.py", 5, "corpus", "evaluation")]
    unknown = [("class_jax/newpkg/x.py", 1, "newpkg", "runtime")]
    assert layering_violations(upward) == ["class_jax/models/x.py:3: models imports trainer, which is above it"]
    assert "on the same floor" in layering_violations(sideways)[0]
    assert "has no floor" in layering_violations(unknown)[0]
    assert package_cycles([("a", 1, "fid", "demo"), ("b", 1, "demo", "fid")]) == [["demo", "fid", "demo"]]
    lazy = "def f():\n    from class_jax.trainer import train\n"
    assert list(imported_modules(lazy, "class_jax.models.x")) == [(2, "class_jax.trainer.train")]
    relative = "from ..runtime import errors\n"
    assert list(imported_modules(relative, "class_jax.models.x")) == [(1, "class_jax.runtime.errors")]


def test_every_package_has_a_floor_and_a_module_list():
    packages = {path.name for path in (REPO / "class_jax").iterdir() if (path / "__init__.py").is_file()}
    packages |= {"tasks", "cli"}
    assert packages - {"gin"} == set(FLOOR_OF)
    for init in [*(REPO / "class_jax").rglob("__init__.py"), REPO / "tasks" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        modules = {path.stem for path in init.parent.glob("*.py") if path.stem != "__init__"}
        modules |= {path.name for path in init.parent.iterdir() if (path / "__init__.py").is_file()}
        missing = sorted(name for name in modules if not re.search(rf"\b{re.escape(name)}\b", doc))
        assert not missing, f"{init.relative_to(REPO)}: its docstring does not list {missing}"


@pytest.mark.parametrize("gin_file", sorted((REPO / "gin").rglob("*.gin")), ids=lambda p: str(p.relative_to(REPO)))
def test_gin_files_import_existing_current_modules(gin_file):
    for match in re.finditer(r"^(?:from (\S+) import (\w+)|import (\S+))", gin_file.read_text(), re.MULTILINE):
        if match.group(1) == "__gin__":
            continue
        name = f"{match.group(1)}.{match.group(2)}" if match.group(1) else match.group(3)
        assert importlib.util.find_spec(name) is not None, f"{gin_file}: no module {name}"
        assert not _is_deprecated_alias(name), f"{gin_file}: {name} is a deprecated alias; import its new home"


def _is_deprecated_alias(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return bool(spec and spec.origin and "DEPRECATED_ALIAS" in pathlib.Path(spec.origin).read_text(encoding="utf-8"))
