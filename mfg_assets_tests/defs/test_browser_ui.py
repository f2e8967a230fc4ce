"""The Dagster UI as a person sees it, in headless Chromium, after a small training run:
no pop-up to dismiss, the model's plot inline, its MLflow run and version as links, its
metrics rounded, and the run listed under its job's name. Screenshots: data/screenshots/.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mfg_assets.console import rounded, rounded_all
from mfg_assets.defs.metadata import mlflow_figure, mlflow_run_link
from mfg_assets_tests.brokers import free_port, stop_process
from mfg_assets_tests.labeling.test_page import chromium  # noqa: F401  (the CDP fixture)
from mfg_assets_tests.ml.test_gate_train_cli import write_runs

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "data" / "screenshots"
BIN = Path(sys.executable).parent


def test_rounded_keeps_four_significant_digits_and_leaves_the_rest():
    assert rounded(0.85061893) == 0.8506
    assert rounded(-2.1336e-05) == -2.134e-05
    assert rounded(1234567.8) == 1235000.0
    assert rounded(3) == 3 and rounded("x") == "x" and rounded(True) is True
    assert rounded(float("nan")) != rounded(float("nan"))  # NaN stays NaN
    assert rounded_all({"r2": 0.123456, "rows": 309}) == {"r2": 0.1235, "rows": 309}


def test_mlflow_links_and_inline_figure_fit_the_ui(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.plant:5000/")
    assert mlflow_run_link("abc").value == "http://mlflow.plant:5000/#/runs/abc"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    figure = mlflow_figure("0123456789abcdef0123456789abcdef", "figures/importances.png", "imp")
    assert figure.value.startswith("![imp](http://127.0.0.1:5000/get-artifact?path=figures/")
    assert len(figure.value) < 1000  # the UI renders markdown inline only below 1,000 chars


def _wait_http(url: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}")


def _serve(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def trained_ui(tmp_path: Path):
    """MLflow server + one `mfg train process_yield` on a DAGSTER_HOME + dagster-webserver."""
    home, data = tmp_path / "dagster", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    mlflow_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFG_", "MLFLOW_"))}
    env |= {"DAGSTER_HOME": str(home), "MFG_DATA_DIR": str(data),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}"}
    procs = [_serve([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                     str(mlflow_port), "--workers", "1",
                     "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "--artifacts-destination", str(tmp_path / "artifacts")],
                    tmp_path / "mlflow.log", env)]
    try:
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", 300, tmp_path / "mlflow.log")
        write_runs(tmp_path / "runs.csv", signal=True)
        mfg = str(BIN / "mfg")
        for command in (["import", "table", str(tmp_path / "runs.csv"), "--as", "process_runs",
                         "--label", "yield", "--pass-threshold", "80"],
                        ["train", "process_yield", "--budget", "1"]):
            done = subprocess.run([mfg, *command], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr
        procs.append(_serve([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p",
                             str(ui_port), "-w", "workspace.yaml"], tmp_path / "ui.log", env))
        _wait_http(f"http://127.0.0.1:{ui_port}/server_info", 180, tmp_path / "ui.log")
        yield ui_port, mlflow_port
    finally:
        for proc in procs:
            stop_process(proc)


def _shot(cdp, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    path.write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"]))
    return path


def _open(cdp, url: str, ready: str, timeout_s: float = 90.0) -> None:
    cdp.call("Page.navigate", url=url)
    try:
        cdp.wait_for(ready, timeout_s)
    except TimeoutError:
        text = cdp.eval("document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"{url}: {ready} never true; page text:\n{text[:3000]}") from None


NO_POPUP = "!document.body.innerText.includes('Join the Dagster community')"


@pytest.mark.integration
@pytest.mark.slow
def test_model_page_shows_plot_links_and_rounded_metrics(trained_ui, chromium):  # noqa: F811
    ui_port, mlflow_port = trained_ui
    cdp = chromium
    cdp.call("Page.enable")
    base = f"http://127.0.0.1:{ui_port}"

    # the asset's latest materialization: plots inline (loaded from the MLflow server)
    _open(cdp, f"{base}/assets/models/process_yield?view=events",
          "[...document.images].some(i => i.src.includes('/get-artifact?') && i.complete "
          "&& i.naturalWidth > 100)")
    assert cdp.eval(NO_POPUP)
    assert cdp.eval("!document.body.innerText.includes('[Show Markdown]') || "
                    "[...document.images].some(i => i.src.includes('/get-artifact?'))")
    links = cdp.eval("[...document.querySelectorAll('a')].map(a => a.href)")
    assert any(f"127.0.0.1:{mlflow_port}/#/runs/" in href for href in links), links
    assert any(f"127.0.0.1:{mlflow_port}/#/models/" in href for href in links), links
    text = cdp.eval("document.body.innerText")
    assert "holdout/r2" in text
    long_floats = [t for t in text.split() if t.replace(".", "", 1).replace("-", "", 1)
                   .isdigit() and "." in t and len(t.split(".")[1]) > 6]
    assert not long_floats, long_floats  # metrics rounded, no 0.8506189343 in the catalog
    cdp.eval("[...document.images].find(i => i.src.includes('/get-artifact?'))"
             ".scrollIntoView({block: 'center'})")
    time.sleep(0.5)
    _shot(cdp, "dagster_model_asset.png")
    run_link = next(href for href in links if "/#/runs/" in href)

    # the link opens the run in the MLflow UI
    _open(cdp, run_link, "document.body.innerText.includes('process_yield')")
    _shot(cdp, "mlflow_run.png")

    # the runs list: the training run under its job's name, no pop-up over it
    _open(cdp, f"{base}/runs", "document.body.innerText.includes('demo_train')")
    assert cdp.eval(NO_POPUP)
    _shot(cdp, "dagster_runs.png")
