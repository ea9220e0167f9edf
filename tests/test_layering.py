"""The layering of ../shared/DESIGN.md, checked on every import statement of drtl/ (top-level and
inside functions): the library never imports Kubeflow or the pipeline glue, tracking never imports
stages, and stages never import orchestrators. (Module size is a review matter, not a test: a file is split
by concern, not by line count.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DRTL = Path(__file__).resolve().parents[1] / "drtl"
FILES = sorted(DRTL.rglob("*.py"))


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def module(path: Path) -> str:
    return ".".join(path.relative_to(DRTL.parent).with_suffix("").parts).removesuffix(".__init__")


def test_the_walk_sees_imports():
    assert "drtl.runner" in imports(DRTL / "orchestrate" / "experiment.py")  # the checker itself works
    assert len(FILES) > 40


@pytest.mark.parametrize("path", FILES, ids=lambda p: module(p))
def test_imports_point_down(path):
    mod, found = module(path), imports(path)
    top = {name.split(".")[0] for name in found}
    assert not top & {"kfp", "pipelines", "components"}, f"{mod} imports Kubeflow glue: {sorted(found)}"
    if mod.startswith("drtl.tracking"):
        assert not any(n.startswith(("drtl.stages", "drtl.orchestrate", "drtl.cli")) for n in found), mod
    if mod.startswith("drtl.stages"):
        assert not any(n.startswith(("drtl.orchestrate", "drtl.cli", "drtl.tracking")) for n in found), mod
    if not mod.startswith(("drtl.orchestrate", "drtl.cli", "drtl.stages", "drtl.runner", "drtl.plan")):
        assert not any(n.startswith(("drtl.stages", "drtl.orchestrate", "drtl.plan", "drtl.runner", "drtl.cli"))
                       for n in found), \
            f"{mod} (a library layer) imports an orchestration layer: {sorted(found)}"


def _graph() -> dict[str, set[str]]:
    """drtl module -> the drtl modules it imports (anywhere in the file; a name imported from a
    package counts as its submodule when one of that name exists)."""
    mods = {module(p): p for p in FILES}

    def owner(name: str) -> str:
        while name and name not in mods:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    graph = {}
    for m, p in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "drtl"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "drtl" \
                    and not node.level:
                deps |= {owner(f"{node.module}.{a.name}") for a in node.names}
        graph[m] = deps - {m, ""}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    """No two drtl modules import each other, directly or through others (function-level imports
    included): a lower layer never reaches back up, e.g. for a CLI handler or a hidden hook."""
    graph = _graph()
    assert "drtl.runner" in graph["drtl.orchestrate.experiment"]  # the graph is built from the real files
    assert "drtl.config" in graph["drtl.runner"]
    assert cycles(graph) == []
