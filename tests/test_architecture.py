"""The package's shape: no import cycle between its modules (imports inside functions count too),
no module importing another module's private names, data formats independent of the config schema."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "po_bench"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(mod: str) -> tuple[set[str], list[str], list[str]]:
    """(po_bench modules imported, private names imported from them, private attributes used on them)."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text())
    deps: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}  # local name -> po_bench module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("po_bench"):
                    deps.add(a.name)
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(mod, path.name == "__init__.py", node)
            if not src.startswith("po_bench"):
                continue
            for a in node.names:
                sub = f"{src}.{a.name}"
                if sub in MODULES:  # `from po_bench.data import world`: a module
                    deps.add(sub)
                    aliases[a.asname or a.name] = sub
                else:
                    deps.add(src)
                    if a.name.startswith("_") and src != mod:
                        private.append(f"{mod} imports {src}.{a.name}")
    attrs = [
        f"{mod} uses {aliases[n.value.id]}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id in aliases
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
    ]
    return {d for d in deps if d in MODULES and d != mod}, private, attrs


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def test_the_walk_sees_the_package():
    assert len(MODULES) > 30 and "po_bench.pipeline" in MODULES
    assert "po_bench.stages" in GRAPH["po_bench.pipeline"]
    assert "po_bench.generation.logprobs" in GRAPH["po_bench.judges.implicit"]  # function-level imports count


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_private_names_across_modules(mod):
    _, private, attrs = imports_of(mod)
    assert private == [] and attrs == []


def test_data_formats_do_not_import_the_config_schema():
    formats = [m for m in MODULES if m.startswith("po_bench.data.formats.")]
    assert len(formats) >= 5  # the format families
    for m in formats + ["po_bench.data.formats", "po_bench.data.world"]:
        assert "po_bench.config" not in GRAPH[m], m


def _imports_trl(path: Path) -> bool:
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import) and any(a.name.split(".")[0] == "trl" for a in n.names):
            return True
        if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").split(".")[0] == "trl":
            return True
    return False


TRL_PACKAGE = "po_bench.training.trl"  # the one package that touches TRL


def test_one_package_owns_trl():
    owners = {m for m, p in MODULES.items() if _imports_trl(p)}
    assert owners and all(m.startswith(TRL_PACKAGE + ".") for m in owners), sorted(owners)


# The floors, lowest first: a module may import its own floor and the floors below it, never above.
# The entry points (po_bench/cli/, and __main__.py for `python -m po_bench`) stand on top of everything:
# they may import anything, and nothing else in the package imports them.
LOWER = ("po_bench.common", "po_bench.store", "po_bench.data", "po_bench.generation")
HIGHER = ("po_bench.training", "po_bench.judges", "po_bench.results")
CLI = ("po_bench.cli",)
ENTRY_POINTS = CLI + ("po_bench.__main__",)


def _in(mod: str, floors: tuple[str, ...]) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in floors)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = [f"{m} imports {d}" for m, deps in graph.items() if _in(m, LOWER) for d in sorted(deps) if _in(d, HIGHER)]
    bad += [
        f"{m} imports {d}" for m, deps in graph.items() if not _in(m, ENTRY_POINTS) for d in sorted(deps) if _in(d, CLI)
    ]
    # the losses are pure functions over per-sequence statistics: nothing from po-bench
    for m in ("po_bench.training.losses",):
        bad += [f"{m} imports {d}" for d in sorted(graph[m])]
    return bad


def test_lower_floors_import_nothing_from_higher_ones():
    assert layering_violations(GRAPH) == []


def test_the_layering_check_sees_a_violation():
    graph = {m: set(d) for m, d in GRAPH.items()}
    graph["po_bench.data.world"].add("po_bench.results.stats")
    graph["po_bench.training.losses"].add("po_bench.common")
    graph["po_bench.pipeline"].add("po_bench.cli.table")
    graph["po_bench.cli.data"].add("po_bench.training.models")  # an entry point may import anything
    assert layering_violations(graph) == [
        "po_bench.data.world imports po_bench.results.stats",
        "po_bench.pipeline imports po_bench.cli.table",
        "po_bench.training.losses imports po_bench.common",
    ]
