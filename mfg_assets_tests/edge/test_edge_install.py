"""`pip install 'mfg_assets[edge]'` into a fresh venv gives a working `mfg-edge` without torch.

The bundle is built and signed by the platform code in this process (torch -> ONNX); the
edge venv only verifies and runs it, against a private mosquitto, and must publish a
heartbeat and a prediction made by that bundle. Needs the package index (CI has it); the
install takes about a minute with a warm pip cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from mfg_assets.edge.store import BundleStore
from mfg_assets_tests.brokers import stop_process
from mfg_assets_tests.edge.helpers import camera_device, inspection_messages
from mfg_assets_tests.gateway.harness import connect_client, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]


def dir_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def install_edge_venv(target: Path) -> Path:
    """A fresh venv with the package installed from a copy of the sources (a non-editable
    build must not write build/ or egg-info into the working tree)."""
    source = target / "src"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "mfg_assets", source / "mfg_assets",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = target / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         f"{source}[edge]"],
        check=True, timeout=900,
    )
    return venv


def test_edge_extra_installs_a_torch_free_runtime_that_serves_a_platform_bundle(
    broker, make_vision_bundle, keys, tmp_path
):
    started = time.monotonic()
    venv = install_edge_venv(tmp_path / "edge-install")
    install_s = time.monotonic() - started
    python = str(venv / "bin" / "python")
    for module in ("torch", "dagster", "polars", "pyarrow", "onnx"):
        missing = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert missing.returncode != 0, f"{module} was installed into the edge venv"
    assert (venv / "bin" / "mfg-edge").exists()

    bundle = make_vision_bundle()  # built by fleet/export (torch) in this process
    store = BundleStore(tmp_path / "store")
    store.register(camera_device())
    store.publish(bundle.path)
    store.assign("edge-cam01", bundle.bundle_id)
    public_key = tmp_path / "keys" / "edge_signing_key.pub.pem"

    heartbeats: list[dict] = []
    predictions: list[dict] = []
    lock = threading.Lock()

    def on_message(client, userdata, message) -> None:
        with lock:
            target = heartbeats if message.topic.endswith("/telemetry") else predictions
            target.append(orjson.loads(message.payload))

    listener = connect_client(broker.url, "edge-install-listener")
    listener.on_message = on_message
    listener.subscribe([("acme/+/+/+/+/edge-cam01/telemetry", 1),
                        ("acme/+/+/+/+/edge-cam01/predictions", 1)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFG_")}
    env.update(MFG_EDGE_PUBLIC_KEY=str(public_key), MFG_DATA_DIR=str(tmp_path / "edge-data"))
    log = (tmp_path / "mfg-edge.log").open("wb")
    edge = subprocess.Popen(
        [str(venv / "bin" / "mfg-edge"), "run", "--edge-id", "edge-cam01", "--broker",
         broker.url, "--bundle-store", str(tmp_path / "store"), "--poll", "0.5",
         "--heartbeat", "1"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: any(h.get("bundleId") == bundle.bundle_id for h in heartbeats), 60,
                 "a heartbeat from the installed edge running the bundle")
        publisher = connect_client(broker.url, "edge-install-publisher")
        for topic, payload in inspection_messages(3):
            publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_for(lambda: len(predictions) >= 3, 60, "predictions from the installed edge")
        publisher.loop_stop()
    finally:
        stop_process(edge)
        listener.loop_stop()
        log.close()
    output = (tmp_path / "mfg-edge.log").read_text()
    assert edge.returncode == 0, output
    assert {p["bundleId"] for p in predictions} == {bundle.bundle_id}
    assert all(p["model"] == "vision_defect" for p in predictions)
    print(f"edge venv: install {install_s:.0f} s, {dir_size(venv) / 2**20:.0f} MiB")
