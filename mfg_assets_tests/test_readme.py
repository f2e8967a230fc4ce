"""Every command in the README's ```bash blocks runs, as written, on a fresh lakehouse.

Each line is run by bash in a scratch folder (MFG_DATA_DIR=./data there) with the project's
venv first on PATH; `mqtt://127.0.0.1:1883` is a private mosquitto; the placeholder inputs
of `mfg import` (DIR, labels.csv, runs.parquet, readings.csv) are small generated files.
Long-running services and multi-minute jobs are skipped by name, with the reason, and a
README command that is neither run nor skipped fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLANT_BROKER = "mqtt://127.0.0.1:1883"

# Command prefix -> why it is not run here.
SKIP = {
    "make demo": "installs the venv and runs the whole demo (many minutes); its stand-in below "
    "builds the silver table the next commands query; the demo: mfg_assets_tests/test_demo*",
    "make test": "the whole test suite, this test included",
    "make dev": "a long-running service (Dagster UI + daemon): defs/test_dev_ui.py starts it",
    "make mlflow": "a long-running service (the MLflow UI): defs/test_browser_ui.py starts it",
    "mfg gateway": "a long-running service: mfg_assets_tests/gateway/ runs it on mosquitto",
    "mfg demo": "minutes of simulated plant, models and live edges (the closed loop: "
    "loop/test_loop.py)",
    "mfg edge run": "a long-running service: mfg_assets_tests/edge/ runs it on mosquitto",
    "mfg edge verify data/bundles/bundles/<bundle-id>": "needs a built bundle (the id is a "
    "placeholder): edge/ and fleet/ tests verify real bundles",
    "mfg train": "trains a model family on the lakehouse (minutes for vision): "
    "ml/test_gate_train_cli.py runs it on imported tables, promoted and refused",
    "python benchmarks/bench_loop.py": "a benchmark of four closed-loop runs (tens of minutes)",
}


def readme_commands() -> list[str]:
    """The lines of the README's ```bash blocks, comments and blank lines left out."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def skip_reason(command: str) -> str | None:
    return next((why for prefix, why in SKIP.items() if command.startswith(prefix)), None)


def test_readme_commands_are_found_and_each_skip_names_a_command():
    commands = readme_commands()
    assert any(c.startswith("mfg validate") for c in commands)
    assert len(commands) >= 20
    for prefix in SKIP:  # a stale skip entry would hide a new command
        assert any(c.startswith(prefix) for c in commands), prefix


def _inputs(cwd: Path) -> None:
    """The files the `mfg import` examples name, small and valid."""
    import polars as pl
    from PIL import Image

    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    images = cwd / "DIR"
    images.mkdir()
    rows = []
    for i, label in enumerate(["ok", "ok", "scratch", "ok"]):
        Image.new("L", (32, 32), 40 * i).save(images / f"img{i}.png")
        rows.append({"file": f"img{i}.png", "label": label,
                     "ts": (now + timedelta(minutes=i)).isoformat()})
    pl.DataFrame(rows).write_csv(cwd / "labels.csv")
    pl.DataFrame({
        "unit_id": [f"u{i}" for i in range(20)],
        "ts": [now + timedelta(minutes=i) for i in range(20)],
        "pressure": [float(i) for i in range(20)],
        "yield": [80.0 + i for i in range(20)],
    }).write_parquet(cwd / "runs.parquet")
    pl.DataFrame({
        "machine_id": ["weld-01"] * 10,
        "sensor": ["current"] * 10,
        "ts": [(now + timedelta(seconds=10 * i)).isoformat() for i in range(10)],
        "value": [90.0 + i for i in range(10)],
    }).write_csv(cwd / "readings.csv")


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch, broker) -> tuple[Path, dict[str, str]]:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(Path(sys.executable).parents[1])
    _inputs(cwd)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFG_", "DAGSTER_"))}
    env |= {"MFG_DATA_DIR": str(cwd / "data"), "COLUMNS": "120",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    return cwd, env | {"MFG_TEST_BROKER": broker.url}


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = command.replace(PLANT_BROKER, env["MFG_TEST_BROKER"])
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_readme_command_runs(scratch):
    cwd, env = scratch
    ran, skipped = [], []
    for command in readme_commands():
        if command.startswith("make demo"):
            # stand-in: the silver table the quick start's queries read
            done = _run("mfg import table readings.csv --as sensor_readings", cwd, env)
            assert done.returncode == 0, done.stderr
        if (why := skip_reason(command)) is not None:
            skipped.append((command, why))
            continue
        done = _run(command, cwd, env)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, done.stderr
        ran.append(command)
    assert len(ran) >= 12, ran
    print(f"ran {len(ran)} README commands, skipped {len(skipped)}")
