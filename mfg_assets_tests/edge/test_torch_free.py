"""The edge runtime is a device's program: importing it never loads the platform's stack
(issue 14). Before the fix, ``mfg_assets.edge.predictor`` imported the torch exporter and the
runtime took 2.4 s to import, torch included."""

from __future__ import annotations

import subprocess
import sys

import pytest

EDGE_MODULES = (
    "mfg_assets.edge.runtime", "mfg_assets.edge.cli", "mfg_assets.edge.store",
    "mfg_assets.edge.bundle", "mfg_assets.edge.predictor", "mfg_assets.edge.windows",
    "mfg_assets.edge.signing", "mfg_assets.edge.cache", "mfg_assets.edge.storefs",
    "mfg_assets.edge.sparkplug_input",
)
FORBIDDEN = ("torch", "dagster", "polars", "mlflow", "deltalake", "duckdb", "pyarrow", "onnx",
             "pandas", "pandera", "sklearn", "prophet", "mfg_assets.fleet", "mfg_assets.defs",
             "mfg_assets.lake", "mfg_assets.ml")


def _top_level(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts) + 1)}


def test_importing_the_edge_loads_none_of_the_platform():
    code = (
        f"import {', '.join(EDGE_MODULES)}\n"
        "import sys\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                            capture_output=True, text=True, timeout=120, check=True)
    loaded = set(result.stdout.split())
    timed = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
             if line.startswith("import time:")}
    assert "mfg_assets.edge.runtime" in loaded and "mfg_assets.edge.runtime" in timed
    for modules, how in ((loaded, "sys.modules"), (timed, "-X importtime")):
        names = set().union(*(_top_level(m) for m in modules))
        bad = sorted(f for f in FORBIDDEN if f in names)
        assert not bad, f"{how}: importing the edge loaded {bad}"


def test_a_local_bundle_store_needs_no_pyarrow(tmp_path):
    code = (
        "import sys\n"
        "from mfg_assets.edge.store import BundleStore\n"
        f"store = BundleStore({str(tmp_path)!r})\n"
        "assert store.bundles() == [] and store.assignment('edge-x') is None\n"
        "print('pyarrow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["verify", "--help"]])
def test_mfg_edge_help_is_torch_free(argv):
    code = ("import sys\nfrom mfg_assets.edge.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'dagster', 'polars') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip().endswith("[]")
    assert "mfg-edge" in result.stdout
