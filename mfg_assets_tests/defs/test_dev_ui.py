"""`make dev` is ready to use: the UI serves the code location, automation sensors run,
and headless Chromium renders the asset groups."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mfg_assets_tests.brokers import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def _default_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def dagster_dev(tmp_path: Path):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), MFG_DATA_DIR=str(tmp_path / "data"))
    dagster = Path(sys.executable).with_name("dagster")
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # `dagster dev` maps SIGTERM onto its SIGINT handler: where the test runner was started
        # in the background (SIGINT ignored, inherited), it would ignore SIGTERM too
        preexec_fn=_default_interrupts,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            raise AssertionError((tmp_path / "dev.log").read_text()[-3000:])
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dagster dev, its webserver, daemon, code server
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def test_dev_ui_loads_location_and_runs_automation_sensors(dagster_dev, tmp_path):
    port = dagster_dev
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        entries = graphql(
            port,
            "{ workspaceOrError { ... on Workspace { locationEntries { "
            "name loadStatus locationOrLoadError { __typename } } } } }",
        )
        status = entries["workspaceOrError"]["locationEntries"][0]
        if status["loadStatus"] == "LOADED":
            break
        time.sleep(1)
    assert status["locationOrLoadError"]["__typename"] == "RepositoryLocation", status
    sensors = graphql(
        port,
        "{ sensorsOrError(repositorySelector: {repositoryName: "
        '"__repository__", repositoryLocationName: "mfg_assets"}) '
        "{ ... on Sensors { results { name sensorState { status } } } } }",
    )
    states = {s["name"]: s["sensorState"]["status"] for s in sensors["sensorsOrError"]["results"]}
    assert states["automation"] == "RUNNING"
    assert states["bronze_delta_versions"] == "RUNNING"

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium): UI render not checked")
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"http://127.0.0.1:{port}/asset-groups/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for group in ("bronze", "silver"):
        assert group in dom, dom[-2000:]
