"""Table names are spelled once, in mfg_assets.lake.names (issue 14, "Names")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from mfg_assets.lake import names
from mfg_assets.lake.registry import TABLES

PACKAGE = Path(__file__).resolve().parents[2] / "mfg_assets"
# Folders the literal check skips. lake/ is where names are declared.
SKIPPED = {
    "lake",
}


def _constants() -> dict[str, str]:
    return {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}


def test_every_registered_table_has_exactly_one_constant_and_vice_versa() -> None:
    registered = [spec.qualified_name for spec in TABLES]
    values = list(_constants().values())
    assert sorted(values) == sorted(registered)
    assert len(set(values)) == len(values), "two constants spell the same table"
    # the constant's name follows from the table's: LAYER_NAME
    for constant, value in _constants().items():
        assert constant == value.replace(".", "_").upper()


def test_names_module_is_dependency_free() -> None:
    """The edge runtime may import it: no polars, pandera, pyarrow (or anything else)."""
    code = (
        "import sys; import mfg_assets.lake.names; "
        "heavy = {'polars', 'pandera', 'pyarrow', 'deltalake', 'dagster'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    assert (PACKAGE / "lake" / "__init__.py").read_text().strip() == ""


def _docstrings(tree: ast.AST) -> set[int]:
    # expression-statement strings (module/class/function docstrings) are prose, not names
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def table_name_literals(source: str, registered: set[str]) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    docs = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in registered
        and id(node) not in docs
    ]


def test_the_checker_sees_a_literal_and_skips_a_docstring() -> None:
    source = '"""silver.labels"""\nX = "silver.labels"\ndef f():\n    "silver.labels"\n'
    assert table_name_literals(source, {"silver.labels"}) == [(2, "silver.labels")]


def asset_key_literals(source: str, registered: set[str]) -> list[tuple[int, str]]:
    """Hand-spelled asset keys of registered tables: a two-string list or tuple literal
    ``[layer, name]`` (``dg.AssetKey(["silver", "labels"])``, ``deps=[("silver", "labels")]``)
    where ``TableSpec.asset_key_path`` (via ``table(names.X)``) says it once."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.List | ast.Tuple) and len(node.elts) == 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            qualified = ".".join(e.value for e in node.elts)
            if qualified in registered:
                found.append((node.lineno, qualified))
    return found


def test_the_checker_sees_a_hand_spelled_asset_key() -> None:
    source = (
        'import dagster as dg\n'
        'a = dg.AssetKey(["silver", "labels"])\n'
        'b = dg.AssetKey(("silver", "labels"))\n'
        'c = ["silver", "labels", "x"]\n'  # not a two-part key
        'd = dg.AssetKey(["models", "labels"])\n'  # not a registered table
        'e = dg.AssetKey(table(SILVER_LABELS).asset_key_path)\n'
    )
    assert asset_key_literals(source, {"silver.labels"}) == [
        (2, "silver.labels"), (3, "silver.labels")]


def test_no_table_name_literal_outside_lake() -> None:
    registered = {spec.qualified_name for spec in TABLES}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SKIPPED:
            continue
        source = path.read_text()
        for line, value in table_name_literals(source, registered):
            found.append(f"mfg_assets/{relative}:{line}: {value!r}")
        for line, value in asset_key_literals(source, registered):
            found.append(f"mfg_assets/{relative}:{line}: asset key of {value!r} spelled by hand "
                         "(use table(names.X).asset_key_path)")
    assert not found, "use mfg_assets.lake.names instead of:\n" + "\n".join(found)
