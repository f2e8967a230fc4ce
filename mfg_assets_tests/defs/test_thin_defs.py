"""Thin means thin: every top-level function and class in ``mfg_assets/defs/`` is Dagster.

A function there that never touches Dagster (no ``dg.`` name, nothing imported from
``dagster``) is plain logic in the wrong room: it belongs in ``ml/``, ``fleet/``,
``monitoring/``, ``lake/`` ..., where it is tested without Dagster. A class must be a Dagster
one (``dg.Config``, ``dg.ConfigurableResource``, ...). The check reads the source (AST), so it
also covers modules nobody imports in a test.
"""

from __future__ import annotations

import ast

import pytest

from mfg_assets.settings import PACKAGE_DIR

DEFS = PACKAGE_DIR / "defs"

# module:name -> why it may stay. Keep it short; every entry is a debt or a real exception.
ALLOWED: dict[str, str] = {}


def _imports(tree: ast.Module) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """Names bound to dagster (``import dagster as dg``, ``from dagster import X``), and
    names imported from sibling ``mfg_assets.defs`` modules (local -> (module, name))."""
    dagster: set[str] = set()
    siblings: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            dagster.update(a.asname or a.name.split(".")[0] for a in node.names
                           if a.name == "dagster" or a.name.startswith("dagster."))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "dagster":
                dagster.update(a.asname or a.name for a in node.names)
            elif module.startswith("mfg_assets.defs."):
                siblings.update({a.asname or a.name: (module.rsplit(".", 1)[1], a.name)
                                 for a in node.names})
    return dagster, siblings


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def analyse(sources: dict[str, str]) -> dict[str, list[str]]:
    """Module -> its top-level functions and classes that never reference Dagster.

    Referencing Dagster: a dagster name, or a top-level definition of this or a sibling
    defs module that does (``table_metadata`` building metadata via ``table_schema``, a
    helper checking for a ``LakehouseResource``). A class must derive from such a name.
    """
    trees = {m: ast.parse(src) for m, src in sources.items()}
    imports = {m: _imports(t) for m, t in trees.items()}
    defs = {m: {n.name: n for n in t.body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
            for m, t in trees.items()}
    dagster: dict[str, set[str]] = {m: set(imports[m][0]) for m in trees}
    changed = True
    while changed:  # to a fixed point: Dagster-ness flows through calls and imports
        changed = False
        for m in trees:
            known = dagster[m] | {local for local, (other, name) in imports[m][1].items()
                                  if name in dagster.get(other, set())}
            for name, node in defs[m].items():
                if name in known:
                    continue
                refs = (set().union(*map(_names, node.bases)) if isinstance(node, ast.ClassDef)
                        else _names(node))
                if refs & known:
                    known.add(name)
            if known != dagster[m]:
                dagster[m], changed = known, True
    return {m: [name for name in defs[m] if name not in dagster[m]] for m in trees}


def offenders(source: str) -> list[str]:
    return analyse({"module": source})["module"]


def test_the_check_catches_plain_code_and_passes_dagster_code():
    plain = (
        "import dagster as dg\n"
        "from dagster import asset\n"
        "def policy(x): return x + 1\n"
        "class Plan: pass\n"
        "@dg.asset\ndef a(): return policy(1)\n"
        "@asset\ndef b(): return 2\n"
        "def key(n: str) -> dg.AssetKey: return None\n"
        "class C(dg.Config): n: int = 1\n"
    )
    assert offenders(plain) == ["policy", "Plan"]
    # a module that does not import dagster at all: everything in it is plain
    # without a dagster import, a name that merely looks like it is not Dagster
    assert offenders("def f(dg): return dg.x\n") == ["f"]


def test_dagster_ness_flows_through_calls_and_sibling_imports():
    found = analyse({
        "metadata": "import dagster as dg\n"
                    "def schema(): return dg.TableSchema([])\n"
                    "def meta(): return {'s': schema()}\n"
                    "def plain(): return 1\n",
        "models": "from mfg_assets.defs.metadata import meta, plain\n"
                  "def wires(): return meta()\n"
                  "def policy(): return plain()\n",
    })
    assert found == {"metadata": ["plain"], "models": ["policy"]}


MODULES = sorted(p for p in DEFS.glob("*.py") if p.name != "__init__.py")
FOUND = analyse({p.stem: p.read_text() for p in MODULES})


@pytest.mark.parametrize("module", [p.stem for p in MODULES])
def test_defs_modules_hold_only_dagster_definitions(module: str):
    found = [name for name in FOUND[module] if f"{module}:{name}" not in ALLOWED]
    assert not found, (
        f"defs/{module}.py: {', '.join(found)} never reference Dagster. Move them to their "
        "room (ml/, fleet/, monitoring/, lake/ ...) and test them there without Dagster."
    )


def test_the_allow_list_names_what_exists():
    """An entry outlives its function only by mistake: remove it when the code moves."""
    present = {f"{module}:{name}" for module, names in FOUND.items() for name in names}
    assert not set(ALLOWED) - present, sorted(set(ALLOWED) - present)
