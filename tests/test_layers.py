"""The package's shape: one way down the layers, no import cycles, modules and functions
small enough to read (README, "Architecture").

Every module of ``batl_jax`` is parsed with :mod:`ast`, so the test sees the imports a
function makes when it runs (the lazy ones too), not only those at the top of a file.
Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

PACKAGE = "batl_jax"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Low to high; a module may import its own layer or a lower one. The unit is the first
# name below batl_jax (a module, or a package with everything in it).
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0 base: no model, no data, no strategy; pure helpers and the run's files.
    (
        "errors",
        "faults",
        "sharding",
        "seeds",
        "run_files",
        "lock",
        "progress",
        "results",
        "summary",
        "plots",
        "writers",
        "checkpointing",
        "stopping",
    ),
    # 1 leaves: each receives values, never the experiment. The config's defaults gather
    # the leaves' own (data.DEFAULT_BUCKETS), so the config sits beside them; no leaf
    # reads it (FORBIDDEN below).
    ("data", "tasks", "model", "kernels", "config", "config_checks"),
    # 2
    ("strategies",),
    # 3
    ("features", "train", "analysis"),
    # 4 the parts of a run and one round.
    ("setup", "rounds", "reference", "oracle", "resume", "labeled_dataset"),
    # 5 the order of the phases, with their side effects.
    ("loop",),
    # 6 entry points; a unit named nowhere above lands here.
)
TOP = len(LAYERS)
# Pairs inside one layer that must stay apart (importer, imported).
FORBIDDEN = {("data", "tasks")} | {
    (leaf, config)
    for leaf in ("data", "tasks", "model", "kernels")
    for config in ("config", "config_checks")
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name, resolved to a module that exists
    where: str  # file:line


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _sources()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking_ids(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _resolve(base: str, names: list[str]) -> list[str]:
    """The batl_jax modules ``from base import names`` loads: base.name where that is a
    module, else base itself."""
    found = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
    if len(found) < len(names) and base in MODULES:
        found.append(base)
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT.parent) else str(path)


def _imports(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_ids(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        where = f"{_shown(path)}:{getattr(node, 'lineno', 0)}"
        targets: list[str] = []
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                # `import batl_jax.a.b` binds batl_jax but loads a.b: count the deepest module.
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE + ".") or target == PACKAGE:
                    targets.append(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base == PACKAGE or base.startswith(PACKAGE + "."):
                targets = _resolve(base, [a.name for a in node.names])
        found += [Import(name, t, where) for t in targets if t != name and t != PACKAGE]
    return found


ALL_IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def _unit(module: str) -> str:
    # The package itself (batl_jax/__init__.py: the lazy ``batl_jax.select``) is an entry.
    return module.split(".")[1] if "." in module else "__init__"


def _layer(unit: str) -> int:
    return next((i for i, units in enumerate(LAYERS) if unit in units), TOP)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _graph(key) -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for imp in ALL_IMPORTS:
        # A package's __init__ gathering its own submodules is how packages are built.
        if _is_package(imp.importer) and imp.imported.startswith(imp.importer + "."):
            continue
        a, b = key(imp.importer), key(imp.imported)
        if a != b:
            edges.setdefault(a, set()).add(b)
            where.setdefault((a, b), imp.where)
    return edges, where


def _describe(cycles: list[list[str]], edges, where) -> list[str]:
    lines = []
    for component in cycles:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        for a in component:
            for b in sorted(edges.get(a, set()) & members):
                lines.append(f"  {where[(a, b)]}: {a} -> {b}")
    return lines


def test_the_parser_sees_the_package():
    # A test that finds nothing would pass on anything: it must see the known imports.
    assert len(MODULES) > 40
    pairs = {(i.importer, i.imported) for i in ALL_IMPORTS}
    assert ("batl_jax.loop", "batl_jax.rounds") in pairs
    units = {_unit(m) for m in MODULES if m != PACKAGE}
    named = {u for layer in LAYERS for u in layer}
    assert named <= units, f"layers name units that do not exist: {sorted(named - units)}"


def test_no_import_cycle_between_modules():
    edges, where = _graph(lambda m: m)
    problems = _describe(_cycles(edges), edges, where)
    assert not problems, "import cycles in batl_jax:\n" + "\n".join(problems)


def test_no_import_cycle_between_packages():
    edges, where = _graph(_unit)
    problems = _describe(_cycles(edges), edges, where)
    assert not problems, "import cycles between batl_jax's packages:\n" + "\n".join(problems)


def _upward(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        a, b = _unit(imp.importer), _unit(imp.imported)
        if a == b:
            continue
        if _layer(b) > _layer(a):
            problems.append(
                f"{imp.where}: {imp.importer} (layer {_layer(a)}) imports "
                f"{imp.imported} (layer {_layer(b)})"
            )
        elif (a, b) in FORBIDDEN:
            problems.append(f"{imp.where}: {imp.importer} must not import {imp.imported}")
    return sorted(problems)


def test_imports_go_down_the_layers():
    problems = _upward(ALL_IMPORTS)
    assert not problems, "imports that go up the layers:\n" + "\n".join(problems)


def test_the_checks_catch_what_they_forbid():
    up = Import("batl_jax.kernels.kmeans", "batl_jax.strategies.base", "k.py:1")
    across = Import("batl_jax.data.loading", "batl_jax.tasks.relation", "d.py:2")
    down = Import("batl_jax.loop", "batl_jax.kernels.kmeans", "l.py:3")
    assert _upward([up, across, down]) == [
        "d.py:2: batl_jax.data.loading must not import batl_jax.tasks.relation",
        "k.py:1: batl_jax.kernels.kmeans (layer 1) imports batl_jax.strategies.base (layer 2)",
    ]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_are_small():
    too_long = [
        f"{_shown(path)}: {n} lines"
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(too_long)


def test_functions_are_short():
    too_long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{_shown(path)}:{node.lineno}: {node.name} {n} lines")
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(too_long)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from batl_jax import kernels\n", {"batl_jax.kernels"}),
        ("from batl_jax.kernels.kmeans import kmeans_select\n", {"batl_jax.kernels.kmeans"}),
        ("def f():\n    import batl_jax.loop\n", {"batl_jax.loop"}),
        ("import typing\nif typing.TYPE_CHECKING:\n    from batl_jax import loop\n", set()),
        ("from .. import loop\n", {"batl_jax.loop"}),
    ],
)
def test_the_parser_reads_every_kind_of_import(tmp_path, source, expected):
    # Read as if it were batl_jax/strategies/probe.py (the name places relative imports).
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert {i.imported for i in _imports("batl_jax.strategies.probe", path)} == expected
