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
