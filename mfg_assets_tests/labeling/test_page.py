"""The labeling page: served locally, driven by a real headless Chromium over CDP."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mfg_assets.labeling.page import make_server
from mfg_assets.labeling.store import append_verdict, read_labels
from mfg_assets.lake.registry import table
from mfg_assets.settings import get_settings
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.brokers import free_port, stop_process
from mfg_assets_tests.labeling import frames
from mfg_assets_tests.labeling.frames import PLACE, T0

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "data" / "screenshots" / "labeling.png"
WINDOW_MS = int(T0.timestamp() * 1000)


def _png() -> bytes:
    pixels = np.full((64, 64), 90, np.uint8)
    pixels[20:40, 10:54] = 230  # a bright scratch
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def served(lake):
    """A lake with a flagged image and a near-threshold sensor window, and the page on it."""
    lake.append(table("silver.edge_predictions"), frames.predictions([
        {"edge_id": "cam-01", "source_id": "img-42", "score": 0.97, "threshold": 0.6,
         "model": "vision_defect", "value": "scratch"},
        {"edge_id": "edge-weld1", "source_id": f"weld-01/{WINDOW_MS}", "score": 0.58,
         "threshold": 0.6, "value": "false"},
    ]))
    image = table("silver.inspection_images")
    lake.append(image, pl.DataFrame([{
        **PLACE, "ts": T0, "date": T0.date(), "ingest_batch_id": "b", "camera_id": "cam-01",
        "image_id": "img-42", "unit_id": None, "width": 64, "height": 64, "label": None,
        "png": _png()}], schema=image.polars_schema))
    readings = table("silver.sensor_readings")
    lake.append(readings, pl.DataFrame([{
        **PLACE, "ts": T0 + timedelta(seconds=10 * i), "date": T0.date(),
        "ingest_batch_id": "b", "machine_id": "weld-01", "machine_type": "welder",
        "sensor": sensor, "value": float(np.sin(i / 6) * scale), "unit": None}
        for i in range(60) for sensor, scale in (("current", 40.0), ("temperature", 3.0))],
        schema=readings.polars_schema))
    contract = load_contract(get_settings().contract_path)
    server = make_server(lake, lambda v: append_verdict(lake, contract, v), port=0,
                         operator="")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lake, server.server_address[1]
    server.shutdown()
    server.server_close()


def _request(port: int, path: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_page_lists_the_flag_first_with_its_image_and_the_window_plot(served):
    _, port = served
    status, page = _request(port, "/")
    assert status == 200
    assert page.index("img-42") < page.index(f"weld-01/{WINDOW_MS}")  # the flag first
    assert "data:image/png;base64," + base64.b64encode(_png()).decode()[:40] in page
    assert "<polyline" in page and ">current<" in page and ">temperature<" in page


def test_forged_posts_are_refused(served):
    lake, port = served
    _, page = _request(port, "/")
    token = page.split('name=token value="', 1)[1].split('"', 1)[0]
    form = f"token={token}&item=0&operator=op7&verdict=reject".encode()
    own = {"Origin": f"http://127.0.0.1:{port}"}
    assert _request(port, "/", headers={"Host": "evil.example"})[0] == 421
    assert _request(port, "/verdict", form)[0] == 403  # no Origin, no Referer
    assert _request(port, "/verdict", form, {"Origin": "http://evil.example"})[0] == 403
    bad = form.replace(token.encode(), b"forged")
    assert _request(port, "/verdict", bad, own)[0] == 403
    assert _request(port, "/verdict", form.replace(b"item=0", b"item=9"), own)[0] == 403
    assert read_labels(lake).height == 0
    no_operator = form.replace(b"operator=op7", b"operator=")
    assert _request(port, "/verdict", no_operator, own)[0] == 400
    assert read_labels(lake).height == 0
    assert _request(port, "/verdict", form, own)[0] == 200  # 303 followed to the page
    assert read_labels(lake).get_column("source_id").to_list() == ["img-42"]


class Cdp:
    """The few Chrome DevTools Protocol calls the test needs, over one websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=20))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 15.0):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:  # the page is navigating: its context is gone for a moment
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(expression)


@pytest.fixture
def chromium(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); browser test skipped")
    pytest.importorskip("websockets", reason="the CDP client needs websockets")
    port = free_port()
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*", "--window-size=1600,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail("headless chromium did not open its debugging port in 30 s")
            time.sleep(0.2)
        from websockets.sync.client import connect

        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield Cdp(ws)
    finally:
        stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.integration
def test_an_operator_rejects_a_flag_in_a_real_browser(served, chromium):
    lake, port = served
    chromium.call("Page.enable")
    chromium.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
    chromium.wait_for("document.querySelectorAll('.item').length === 2")
    assert chromium.eval("document.querySelector('#item-0 img').naturalWidth") == 64
    assert chromium.eval("document.querySelector('#item-1 svg polyline') !== null")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium.call("Page.captureScreenshot", format="png")["data"]
    SCREENSHOT.write_bytes(base64.b64decode(shot))
    chromium.eval("""(() => {
        const form = document.querySelector('#item-0 form');
        form.querySelector('input[name=operator]').value = 'op-anna';
        form.querySelector('input[name=comment]').value = 'glare on the lens';
        form.querySelector('button[value=reject]').click();
    })()""")
    chromium.wait_for("location.search === '?saved=1' && document.readyState === 'complete'")
    assert chromium.eval("document.querySelector('.saved').textContent") == "verdict recorded"
    assert chromium.eval("document.querySelectorAll('.item').length") == 1  # judged: gone
    row = read_labels(lake).row(0, named=True)
    assert (row["edge_id"], row["source_id"], row["verdict"], row["operator_id"],
            row["comment"], row["bundle_id"], row["model"]) == (
        "cam-01", "img-42", "reject", "op-anna", "glare on the lens", "bundle-1",
        "vision_defect")
    assert lake.read(table("bronze.feedback")).height == 1
