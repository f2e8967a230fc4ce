"""Graph behaviour of edge devices -> bundles -> rollouts -> inspection stats (tmp_path lake).

The slow test runs the real chain for the two camera edges: simulator -> bronze -> silver ->
features -> a small vision champion -> one signed bundle per edge, each with its own
threshold. The rollout test drives ``edge/rollouts`` over synthetic bundles and prediction
rows: a worse canary is rolled back, a better one promoted, and require_approval waits for
an operator's ``approve: true``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from mfg_assets.defs.bronze import bronze_from_replay
from mfg_assets.defs.edge import (
    ROLLOUTS_KEY,
    BundleConfig,
    RolloutConfig,
    bundles,
    edge_devices,
    edge_devices_sensor,
    edge_resources,
    rollouts,
)
from mfg_assets.defs.features import feature_assets
from mfg_assets.defs.models import (
    TrainConfig,
    champion_key,
    model_assets,
    model_key,
    model_resources,
)
from mfg_assets.defs.monitoring import inspection_stats_asset
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import silver_assets
from mfg_assets.edge.bundle import verify_bundle
from mfg_assets.edge.predictor import calibration_scores, read_png
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.fleet.rollout import load as load_rollout
from mfg_assets.lake.registry import table
from mfg_assets.sim import SimConfig, write_replay

DAY = "2026-11-01"
CAMERAS = {"edge-cam01": "cam-01", "edge-cam02": "cam-02"}
BUNDLES = dg.AssetKey(["edge", "bundles"])


def resources() -> dict:
    return {**default_resources(), **model_resources(), **edge_resources()}


def meta_of(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None):
    event = instance.get_latest_materialization_event(key) if partition is None else None
    if partition is not None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        event = records[0].event_log_entry
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.fixture
def mlflow_env(data_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    for name in ("MFG_BUNDLE_STORE", "MFG_EDGE_SIGNING_KEY", "MFG_EDGE_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


@pytest.mark.slow
def test_camera_edges_get_signed_bundles_with_their_own_thresholds(mlflow_env, lake):
    data_dir = mlflow_env
    write_replay(SimConfig(seed=7, duration_h=10, sources=("images", "telemetry")),
                 data_dir / "replay" / "run1")
    instance = dg.DagsterInstance.ephemeral()
    res = resources()
    assert dg.materialize([bronze_from_replay], instance=instance, resources=res).success
    silver = [a for a in silver_assets
              if a.key.path[1] in ("inspection_images", "edge_telemetry")]
    assert dg.materialize(silver, partition_key=DAY, instance=instance, resources=res).success
    store = BundleStore(data_dir / "bundles")
    # edge-cam02 and edge-weld1 registered (`mfg edge register`); edge-cam01 only known from
    # its telemetry: its place (final1/inspect01) is where cam-01's images come from.
    place = {"enterprise": "acme", "site": "detroit", "area": "assembly", "line": "final1",
             "cell": "inspect02"}
    store.register(Device("edge-cam02", "camera", place,
                          ("acme/detroit/assembly/final1/inspect02/cam-02/inspection",)))
    store.register(Device("edge-weld1", "line", {**place, "area": "body", "line": "weld1",
                                                 "cell": "cell01"},
                          ("acme/detroit/body/weld1/+/+/sensors",)))

    # the sensor adds every edge of the UNS and of the store as a partition
    with dg.build_sensor_context(instance=instance, resources=res) as context:
        result = edge_devices_sensor(context)
    added = result.dynamic_partitions_requests[0]
    assert added.partitions_def_name == "edge_devices"
    assert set(added.partition_keys) == {"edge-cam01", "edge-cam02", "edge-weld1",
                                         "edge-press1"}
    instance.add_dynamic_partitions(edge_devices.name, list(added.partition_keys))
    with dg.build_sensor_context(instance=instance, resources=res) as context:
        assert isinstance(edge_devices_sensor(context), dg.SkipReason)

    train = {model_key("vision_defect").to_python_identifier(): TrainConfig(budget=1)}
    keys = [dg.AssetKey(["features", "image_dataset"]), model_key("vision_defect"),
            champion_key("vision_defect")]
    trained = dg.materialize([*feature_assets, *model_assets], selection=keys,
                             instance=instance, resources=res, run_config=dg.RunConfig(ops=train))
    assert trained.success, "the small vision model should pass its accuracy floor"

    for edge in (*CAMERAS, "edge-weld1"):
        assert dg.materialize([bundles], partition_key=edge, instance=instance,
                              resources=res).success
    # a line edge waits for its family's first champion: a clear skip, not a red run
    weld = meta_of(instance, BUNDLES, "edge-weld1")
    assert weld["bundle_id"] == "none" and "sensor_anomaly has no champion" in weld["skipped"]

    rows = lake.read(table("edge.bundles")).sort("edge_id")
    assert rows.get_column("edge_id").to_list() == list(CAMERAS)
    features = lake.read(table("features.image_dataset"))
    thresholds = {}
    for edge, camera in CAMERAS.items():
        meta = meta_of(instance, BUNDLES, edge)
        assert meta["edge_kind"] == "camera" and meta["scores"] == camera
        assert meta["edge_kind_from"] == ("telemetry" if edge == "edge-cam01" else
                                          "registration")
        assert meta["model"] == "mfg-vision_defect" and meta["model_version"] == "1"
        assert meta["precision"] in ("int8", "fp32") and meta["precision_reason"]
        assert set(meta["manifest_checksums"]) == {"model.onnx", "preprocessing.json"}
        lineage = meta["lineage"]
        assert lineage["calibration"] == {"features.image_dataset": 0}
        assert lineage["delta_versions"]["features.image_dataset"] == 0
        bundle = verify_bundle(store.fetch(meta["bundle_id"], data_dir / "cache"))
        # the threshold is the 99th percentile of the edge's own recent ok images' scores
        ok = features.filter((pl.col("camera_id") == camera) & (pl.col("label") == "ok"))
        ok = ok.sort("ts", "image_id").tail(300)
        scores = calibration_scores(bundle.model_path, bundle.preprocessing,
                                    [read_png(p) for p in ok.get_column("png").to_list()])
        assert bundle.threshold == pytest.approx(float(np.quantile(scores, 0.99)))
        assert meta["threshold_calibration"]["n_scores"] == ok.height
        thresholds[edge] = bundle.threshold
    assert thresholds["edge-cam01"] != thresholds["edge-cam02"]
    assert rows.get_column("threshold").to_list() == [thresholds[e] for e in CAMERAS]

    # same champion, same data, same config: the same bundle, no second row
    again = dg.materialize([bundles], partition_key="edge-cam01", instance=instance,
                           resources=res)
    assert meta_of(instance, BUNDLES, "edge-cam01")["new_bundle"] is False and again.success
    # a different quantile is a different threshold: a new bundle
    config = {"edge__bundles": BundleConfig(quantile=0.95)}
    dg.materialize([bundles], partition_key="edge-cam01", instance=instance, resources=res,
                   run_config=dg.RunConfig(ops=config))
    assert lake.read(table("edge.bundles")).height == 3

    # the first rollout has nothing to compare against: every edge gets its newest bundle
    assert dg.materialize([rollouts], instance=instance, resources=res).success
    meta = meta_of(instance, ROLLOUTS_KEY)
    assert meta["vision_defect/action"] == "first_deployment"
    newest = lake.read(table("edge.bundles")).sort("created_at").group_by("edge_id").last()
    for edge, bundle_id in newest.select("edge_id", "bundle_id").iter_rows():
        assert store.assignment(edge).bundle_id == bundle_id


# -- rollouts over synthetic bundles and predictions -------------------------------------------

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EDGES = ("edge-cam01", "edge-cam02")
PLACE = {"enterprise": "acme", "site": "detroit", "area": "assembly", "line": "final1"}
LABELS = ("ok", "scratch", "dent", "missing_part")


def add_bundles(lake, store: BundleStore, tag: str, at: datetime) -> dict[str, str]:
    """Rows in edge.bundles (and folders in the store) of a synthetic bundle per edge."""
    ids = {edge: f"vision_defect-v{tag}-{edge}" for edge in EDGES}
    rows = []
    for edge, bundle_id in ids.items():
        (Path(store.root) / "bundles" / bundle_id).mkdir(parents=True)  # store.has() sees it
        rows.append({"bundle_id": bundle_id, "edge_id": edge, "model": "vision_defect",
                     "model_version": tag, "precision": "int8", "threshold": 0.5,
                     "lineage": "{}", "store_uri": store.uri, "created_at": at})
    spec = table("edge.bundles")
    lake.append(spec, pl.DataFrame(rows, schema=spec.polars_schema))
    return ids


def add_predictions(lake, bundle_ids: dict[str, str], accuracy: dict[str, float],
                    start: datetime, n: int = 120, latency_ms: float = 4.0) -> None:
    """n labelled images per edge (silver.inspection_images) and the edge's predictions."""
    predictions, images = [], []
    for e, (edge, bundle_id) in enumerate(bundle_ids.items()):
        for k in range(n):
            ts = start + timedelta(seconds=10 * k + e)
            source = f"{bundle_id}-{k}"
            label = LABELS[1 + k % 3] if k % 10 < 3 else "ok"
            right = (k * 7919 % n) < accuracy[edge] * n
            value = label if right else ("scratch" if label == "ok" else "ok")
            common = {**PLACE, "cell": f"inspect0{e + 1}", "ts": ts, "date": ts.date(),
                      "ingest_batch_id": "test"}
            predictions.append({**common, "edge_id": edge, "bundle_id": bundle_id,
                                "model": "vision_defect", "source_id": source, "value": value,
                                "score": 0.5, "threshold": 0.5,
                                "latency_ms": latency_ms + (k % 10)})
            images.append({**common, "camera_id": f"cam-0{e + 1}", "image_id": source,
                           "unit_id": None, "width": 64, "height": 64, "label": label,
                           "png": b"png"})
    for name, rows in (("silver.edge_predictions", predictions),
                       ("silver.inspection_images", images)):
        spec = table(name)
        lake.append(spec, pl.DataFrame(rows, schema=spec.polars_schema))


def step(instance, at: datetime, **config) -> dict:
    run_config = dg.RunConfig(ops={"edge__rollouts": RolloutConfig(as_of=at.isoformat(),
                                                                   **config)})
    result = dg.materialize([rollouts], instance=instance, resources=resources(),
                            run_config=run_config)
    assert result.success
    return meta_of(instance, ROLLOUTS_KEY)


def test_rollouts_roll_back_a_worse_canary_promote_a_better_one_and_wait_for_approval(
    mlflow_env, lake
):
    instance = dg.DagsterInstance.ephemeral()
    store = BundleStore(mlflow_env / "bundles")
    v1 = add_bundles(lake, store, "1", T0)
    meta = step(instance, T0)
    assert meta["vision_defect/action"] == "first_deployment"
    assert {e: store.assignment(e).bundle_id for e in EDGES} == v1

    # v2: canary edge-cam01 (a quarter of two edges is one), control edge-cam02 on v1
    t1 = T0 + timedelta(hours=1)
    v2 = add_bundles(lake, store, "2", t1)
    meta = step(instance, t1)
    assert meta["vision_defect/action"] == "started" and meta["vision_defect/stage"] == "canary"
    assert store.assignment("edge-cam01").bundle_id == v2["edge-cam01"]
    assert store.assignment("edge-cam02").bundle_id == v1["edge-cam02"]
    add_predictions(lake, {"edge-cam01": v2["edge-cam01"], "edge-cam02": v1["edge-cam02"]},
                    {"edge-cam01": 0.80, "edge-cam02": 0.95}, t1 + timedelta(minutes=1))
    meta = step(instance, t1 + timedelta(minutes=30))
    assert meta["vision_defect/stage"] == "rolled_back", meta["vision_defect/reason"]
    assert "accuracy" in meta["vision_defect/reason"]
    assert meta["vision_defect/canary"]["accuracy"] < meta["vision_defect/control"]["accuracy"]
    assert "rolled_back" in meta["rollouts"]
    assert store.assignment("edge-cam01").bundle_id == v1["edge-cam01"]
    # the rolled-back candidate is not retried by itself
    meta = step(instance, t1 + timedelta(minutes=40))
    assert meta["vision_defect/action"] == "unchanged" and "rolled_back" in meta[
        "vision_defect/reason"]

    # v3: a better canary over the window is promoted to the whole fleet
    t2 = T0 + timedelta(hours=2)
    v3 = add_bundles(lake, store, "3", t2)
    assert step(instance, t2)["vision_defect/stage"] == "canary"
    add_predictions(lake, {"edge-cam01": v3["edge-cam01"], "edge-cam02": v1["edge-cam02"]},
                    {"edge-cam01": 0.97, "edge-cam02": 0.95}, t2 + timedelta(minutes=1))
    meta = step(instance, t2 + timedelta(minutes=30))
    assert meta["vision_defect/stage"] == "promoted", meta["vision_defect/reason"]
    assert {e: store.assignment(e).bundle_id for e in EDGES} == v3

    # v4 with require_approval: a good canary waits for the operator, who approves it
    t3 = T0 + timedelta(hours=3)
    v4 = add_bundles(lake, store, "4", t3)
    started = step(instance, t3, require_approval=True)
    add_predictions(lake, {"edge-cam01": v4["edge-cam01"], "edge-cam02": v3["edge-cam02"]},
                    {"edge-cam01": 0.96, "edge-cam02": 0.95}, t3 + timedelta(minutes=1))
    meta = step(instance, t3 + timedelta(minutes=30))
    assert meta["vision_defect/stage"] == "awaiting_approval"
    assert store.assignment("edge-cam02").bundle_id == v3["edge-cam02"]
    meta = step(instance, t3 + timedelta(minutes=35), approve=True, operator="shift-lead")
    assert meta["vision_defect/stage"] == "promoted"
    done = load_rollout(lake, started["vision_defect/rollout_id"])
    assert done.approved_by == "shift-lead" and done.state == "promoted"
    assert {e: store.assignment(e).bundle_id for e in EDGES} == v4

    # the product manager's view: per line and edge, with latency percentiles and stage
    assert dg.materialize([inspection_stats_asset], instance=instance,
                          resources=resources()).success
    stats = lake.read(table("monitoring.inspection_stats"))
    cam01 = stats.filter((pl.col("scope") == "edge") & (pl.col("edge_id") == "edge-cam01"))
    assert cam01.height == 1 and cam01.item(0, "date") == date(2026, 11, 2)
    assert cam01.item(0, "predictions") == 3 * 120
    assert cam01.item(0, "rollout_stage") == "promoted (canary)"
    expected = np.percentile(np.tile(4.0 + np.arange(10) % 10, 36), [50, 95, 99])
    got = [cam01.item(0, f"latency_p{p}_ms") for p in (50, 95, 99)]
    assert got == pytest.approx(expected.tolist())
    line = stats.filter(pl.col("scope") == "line")
    assert line.height == 1 and line.item(0, "predictions") == 6 * 120
    assert 0.2 < line.item(0, "defect_rate") < 0.45 and line.item(0, "labelled") == 720
    meta = meta_of(instance, dg.AssetKey(["monitoring", "inspection_stats"]))
    assert "| edge | final1 | edge-cam01 |" in meta["inspection_stats"]
