"""Edge test helpers: devices, stores, runtimes and UNS messages."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

import orjson

from mfg_assets.edge.runtime import EdgeRuntime, RuntimeConfig
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets_tests.edge.conftest import png_of, sim_images

PLACE = {"enterprise": "acme", "site": "detroit", "area": "assembly", "line": "final1",
         "cell": "inspect01"}
CAMERA_TOPIC = "acme/detroit/assembly/final1/inspect01/cam-01/inspection"
T0 = 1_793_491_200_000


def fleet_store(root: Path, prefix: str, edges: Sequence[str]) -> BundleStore:
    """A bundle store holding ``<prefix>-v1-<edge>`` and ``<prefix>-v2-<edge>`` (empty
    folders: ``store.has()`` sees them) with every edge assigned v1."""
    store = BundleStore(root)
    for edge in edges:
        for version in ("v1", "v2"):
            (Path(root) / "bundles" / f"{prefix}-{version}-{edge}").mkdir(parents=True)
        store.assign(edge, f"{prefix}-v1-{edge}")
    return store


def camera_device(edge_id: str = "edge-cam01") -> Device:
    return Device(edge_id, "camera", PLACE, (CAMERA_TOPIC,))


def runtime(
    tmp_path: Path, store: BundleStore, public_key, device: Device | None = None,
    broker_url: str = "mqtt://127.0.0.1:1", **options,
) -> EdgeRuntime:
    device = device or camera_device()
    config = RuntimeConfig(device.edge_id, broker_url, cache_dir=tmp_path / "edge-cache",
                           **options)
    return EdgeRuntime(config, device=device, store=store, public_key=public_key)


def inspection_messages(n: int, seed: int = 5) -> list[tuple[str, bytes]]:
    pixels, labels = sim_images("cam-01", n, seed=seed)
    out = []
    for k in range(n):
        doc = {"timestamp": T0 + k * 1000, "imageId": f"cam-01-{seed}-{k}", "width": 64,
               "height": 64, "encoding": "png",
               "data": base64.b64encode(png_of(pixels[k])).decode(), "label": labels[k]}
        out.append((CAMERA_TOPIC, orjson.dumps(doc)))
    return out
