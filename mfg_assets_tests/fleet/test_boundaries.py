"""Room boundaries of the fleet (DESIGN.md): fleet/ never imports Dagster, the edge runtime
never imports fleet/, and defs/edge.py holds Dagster definitions only (every top-level
function in it touches ``dg``)."""

from __future__ import annotations

import ast
from pathlib import Path

import mfg_assets

PACKAGE = Path(mfg_assets.__file__).parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def test_fleet_never_imports_dagster_and_edge_never_imports_fleet():
    fleet = sorted((PACKAGE / "fleet").glob("*.py"))
    assert {p.name for p in fleet} >= {"bundles.py", "rollout.py", "deploy.py"}
    for path in fleet:
        bad = {n for n in imported(path) if n.split(".")[0] == "dagster"
               or n.startswith("mfg_assets.defs")}
        assert not bad, f"{path.name} imports {sorted(bad)}"
    for path in sorted((PACKAGE / "edge").glob("*.py")):
        bad = {n for n in imported(path) if n.startswith("mfg_assets.fleet")}
        assert not bad, f"edge/{path.name} imports {sorted(bad)}"


def test_every_top_level_function_in_defs_edge_touches_dagster():
    tree = ast.parse((PACKAGE / "defs" / "edge.py").read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert functions
    for fn in functions:
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        assert "dg" in names, f"defs/edge.py:{fn.name} never touches Dagster: wrong room"
