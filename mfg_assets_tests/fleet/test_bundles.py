"""Which edges exist and what each one serves, read from a tmp_path lake and bundle store
(no Dagster, no model): registration filters (MQTT wildcards), telemetry places, and the
family of an edge's kind from the one family registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.fleet.bundles import (
    BundleOutcome,
    EdgeProfile,
    bundle_location,
    bundle_summary,
    discover_edges,
    edge_profile,
)
from mfg_assets.lake.registry import table
from mfg_assets.ml import families
from mfg_assets.ml.base import ModelFamily

TS = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
BODY = {"enterprise": "acme", "site": "detroit", "area": "body"}
ASSEMBLY = {"enterprise": "acme", "site": "detroit", "area": "assembly", "line": "final1"}


def append(lake, name: str, rows: list[dict]) -> None:
    spec = table(name)
    common = {"ts": TS, "date": TS.date(), "ingest_batch_id": "test"}
    lake.append(spec, pl.DataFrame([{**common, **r} for r in rows], schema=spec.polars_schema))


@pytest.fixture
def plant(lake):
    """Two welding machines and a press on two lines, a camera in each of two cells, and
    the heartbeat of one edge that never registered (edge-cam01, in inspect01)."""
    append(lake, "silver.sensor_readings", [
        {**BODY, "line": line, "cell": "cell01", "machine_id": machine,
         "machine_type": kind, "sensor": "current", "value": 1.0, "unit": "A"}
        for line, machine, kind in (("weld1", "weld-01", "welder"),
                                    ("weld1", "weld-02", "welder"),
                                    ("press1", "press-01", "press"))
    ])
    append(lake, "silver.inspection_images", [
        {**ASSEMBLY, "cell": cell, "camera_id": camera, "image_id": f"{camera}-1",
         "width": 64, "height": 64, "label": "ok", "png": b"png"}
        for cell, camera in (("inspect01", "cam-01"), ("inspect02", "cam-02"))
    ])
    append(lake, "silver.edge_telemetry", [
        {**ASSEMBLY, "cell": "inspect01", "edge_id": "edge-cam01", "status": "online",
         "firmware": "mfg-edge/0.1.0", "log_warnings": 0, "log_errors": 0}
    ])
    return lake


def test_a_registered_edge_scores_what_its_topic_filters_match(plant, tmp_path):
    store = BundleStore(tmp_path / "store")
    store.register(Device("edge-weld1", "line", {**BODY, "line": "weld1", "cell": "cell01"},
                          ("acme/detroit/body/weld1/+/+/sensors",)))
    store.register(Device("edge-body", "line", {**BODY, "line": "weld1", "cell": "cell01"},
                          ("acme/detroit/body/#",)))
    store.register(Device("edge-cam02", "camera", {**ASSEMBLY, "cell": "inspect02"},
                          ("acme/detroit/assembly/final1/inspect02/cam-02/inspection",)))

    weld = edge_profile(plant, store, "edge-weld1")
    assert (weld.kind, weld.source, weld.assets) == ("line", "registration",
                                                     ("weld-01", "weld-02"))
    assert weld.family == "sensor_anomaly"
    # '#' covers every line of the area; a line edge scores machines, never cameras
    assert edge_profile(plant, store, "edge-body").assets == ("press-01", "weld-01", "weld-02")
    cam = edge_profile(plant, store, "edge-cam02")
    assert (cam.kind, cam.assets, cam.family) == ("camera", ("cam-02",), "vision_defect")


def test_an_unregistered_edge_is_known_by_where_its_telemetry_comes_from(plant, tmp_path):
    store = BundleStore(tmp_path / "store")
    store.register(Device("edge-weld1", "line", {**BODY, "line": "weld1", "cell": "cell01"},
                          ("acme/detroit/body/weld1/+/+/sensors",)))
    assert discover_edges(plant, store) == {"edge-cam01", "edge-weld1"}
    cam = edge_profile(plant, store, "edge-cam01")
    assert (cam.kind, cam.source, cam.assets) == ("camera", "telemetry", ("cam-01",))
    assert cam.place["cell"] == "inspect01"
    ghost = edge_profile(plant, store, "edge-ghost")
    assert (ghost.kind, ghost.source, ghost.family) == (None, "unknown", None)


def test_the_family_of_an_edge_kind_comes_from_the_family_registry():
    base = families.spec("sensor_anomaly")
    entry = families.FamilySpec(
        model=ModelFamily(name="press_force", primary_metric="f1", higher_is_better=True,
                          floors={"f1": 0.5}, flavor="sklearn"),
        module=base.module, feature_table=base.feature_table, drift=base.drift,
        kinds=base.kinds, description="test family", edge_kind="press")
    families.register(entry)
    try:
        assert EdgeProfile("edge-p", "press", {}, (), "registration").family == "press_force"
    finally:
        families.FAMILIES.pop("press_force")
    assert EdgeProfile("edge-p", "press", {}, (), "registration").family is None
    assert EdgeProfile("edge-c", "camera", {}, (), "telemetry").family == "vision_defect"


def test_a_skipped_build_is_summarised_as_plain_data(tmp_path):
    profile = EdgeProfile("edge-weld1", "line", {}, ("weld-01",), "registration")
    facts = bundle_summary(BundleOutcome(profile, skipped="no champion yet"))
    assert facts == {"edge_id": "edge-weld1", "edge_kind": "line",
                     "edge_kind_from": "registration", "scores": "weld-01",
                     "skipped": "no champion yet", "bundle_id": "none"}
    json.dumps(facts)  # plain data: nothing Dagster-specific
    store = BundleStore(tmp_path / "store")
    assert bundle_location(store, "b-1") == f"{store.uri.rstrip('/')}/bundles/b-1"
