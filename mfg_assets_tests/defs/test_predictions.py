"""predictions/<family>: a real champion re-scores days of its feature table (tmp_path lake).

The chain of test_edge_assets (simulator images -> bronze -> silver -> features -> a small
vision champion in MLflow), then two daily partitions of predictions/vision_defect: every
image of the day scored through the edge's ONNX session, scores equal to the torch model's,
the edge's own prediction joined where an edge scored the same image, the ONNX export
reused from the cache, a chosen version or an unknown one, and a new champion showing the
scored days as stale and the latest day requested by the automation. And, with a stand-in
registry (no training), a 3-day backfill of predictions/sensor_anomaly: one run, one
commit, three partitions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    StaleCauseCategory,
    StaleStatus,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._utils.test.data_versions import get_stale_status_resolver

from mfg_assets.defs.bronze import bronze_from_replay
from mfg_assets.defs.features import feature_assets
from mfg_assets.defs.models import (
    MlflowResource,
    TrainConfig,
    champion_key,
    model_assets,
    model_key,
    model_resources,
)
from mfg_assets.defs.predictions import PredictionConfig, prediction_assets, prediction_key
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import silver_assets
from mfg_assets.lake.registry import table
from mfg_assets.ml import vision
from mfg_assets.ml.registry import ModelRegistry, registered_name
from mfg_assets.sim import SimConfig, write_replay
from mfg_assets_tests.fleet.test_batch import StandInRegistry, days_of_windows

DAY, EMPTY_DAY = "2026-11-01", "2026-11-02"
FAMILY = "vision_defect"
KEY = prediction_key(FAMILY)


def meta_of(instance: dg.DagsterInstance, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[partition]), limit=1).records
    return {k: v.value for k, v in records[0].event_log_entry.asset_materialization
            .metadata.items()}


def add_edge_predictions(lake, images: pl.DataFrame) -> pl.DataFrame:
    """An edge scored the first ten images (an old bundle, then a newer one for two)."""
    spec = table("silver.edge_predictions")
    rows = []
    for i, (image_id, ts) in enumerate(images.select("image_id", "ts").head(10).iter_rows()):
        published = ts + timedelta(seconds=1)
        common = {"ts": published, "date": published.date(), "enterprise": "acme",
                  "site": "detroit", "area": "assembly", "line": "final1", "cell": "inspect01",
                  "ingest_batch_id": "test", "edge_id": "edge-cam01", "model": FAMILY,
                  "source_id": image_id, "threshold": 0.2, "latency_ms": 3.0}
        rows.append({**common, "bundle_id": "b-old", "value": "scratch", "score": 0.9})
        if i < 2:  # re-scored later by a newer bundle: the latest one counts
            later = published + timedelta(minutes=5)
            rows.append({**common, "ts": later, "date": later.date(), "bundle_id": "b-new",
                         "value": "ok", "score": 0.01})
    frame = pl.DataFrame(rows, schema=spec.polars_schema)
    lake.append(spec, frame)
    return frame


@pytest.mark.slow
@pytest.mark.integration
def test_a_champion_rescores_days_through_the_edge_session(data_dir, lake, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    write_replay(SimConfig(seed=7, duration_h=10, sources=("images",)),
                 data_dir / "replay" / "run1")
    instance = dg.DagsterInstance.ephemeral()
    res = {**default_resources(), **model_resources()}
    assert dg.materialize([bronze_from_replay], instance=instance, resources=res).success
    silver = [a for a in silver_assets if a.key.path[1] == "inspection_images"]
    assert dg.materialize(silver, partition_key=DAY, instance=instance, resources=res).success
    train = {model_key(FAMILY).to_python_identifier(): TrainConfig(budget=1)}
    keys = [dg.AssetKey(["features", "image_dataset"]), model_key(FAMILY), champion_key(FAMILY)]
    assert dg.materialize([*feature_assets, *model_assets], selection=keys, instance=instance,
                          resources=res, run_config=dg.RunConfig(ops=train)).success

    images = lake.read(table("features.image_dataset")).filter(
        pl.col("ts").dt.date() == date.fromisoformat(DAY)).sort("ts")
    edge = add_edge_predictions(lake, images)
    # the whole table, the edge predictions and the champion: everything a day needs
    assets = [*feature_assets, *model_assets, *prediction_assets]
    # a backfill of two days: one run (the assets' single-run backfill policy)
    runs_before = len(instance.get_runs())
    backfill = dg.materialize(assets, selection=[KEY], instance=instance, resources=res, tags={
        ASSET_PARTITION_RANGE_START_TAG: DAY, ASSET_PARTITION_RANGE_END_TAG: EMPTY_DAY})
    assert backfill.success and len(instance.get_runs()) == runs_before + 1
    assert sorted(e.partition for e in backfill.get_asset_materialization_events()) == [
        DAY, EMPTY_DAY]

    rows = lake.read(table(f"predictions.{FAMILY}"))
    scored = rows.filter(pl.col("date") == date.fromisoformat(DAY)).sort("ts", "source_id")
    assert scored.height == images.height > 50
    assert set(scored.get_column("source_id")) == set(images.get_column("image_id"))
    assert rows.filter(pl.col("date") == date.fromisoformat(EMPTY_DAY)).height == 0
    assert set(scored.get_column("model_version")) == {"1"}
    assert set(scored.get_column("model_name")) == {registered_name(FAMILY)}

    # the scores are the torch champion's own: 1 - p(ok), through ONNX and the edge's code
    registry = ModelRegistry()
    net, info = registry.load(vision, registry.champion(registered_name(FAMILY)),
                              data_dir / "check")
    ordered = images.join(scored.select(pl.col("source_id").alias("image_id"), "score",
                                        "decision"), on="image_id")
    with torch.no_grad():
        logits = net(torch.from_numpy(vision.decode(ordered.get_column("png").to_list(),
                                                    int(info["image_size"]))))
    p_ok = torch.softmax(logits, dim=1)[:, info["classes"].index("ok")].numpy()
    np.testing.assert_allclose(ordered.get_column("score").to_numpy(), 1 - p_ok, atol=1e-4)
    ok = ordered.get_column("decision") == "ok"
    assert (ok.to_numpy() == (p_ok >= 0.5)).mean() > 0.99  # the default threshold 0.5
    # truth rides along: analysts find the misses in one query
    assert scored.get_column("truth").null_count() < scored.height

    # the edge's own prediction beside ours, the latest bundle of each image
    with_edge = scored.filter(pl.col("bundle_id").is_not_null())
    assert with_edge.height == 10
    latest = edge.sort("ts").unique("source_id", keep="last")
    assert dict(with_edge.select("source_id", "bundle_id").iter_rows()) == dict(
        latest.select("source_id", "bundle_id").iter_rows())
    assert scored.filter(pl.col("bundle_id") == "b-new").get_column(
        "edge_decision").to_list() == ["ok", "ok"]
    meta = meta_of(instance, DAY)
    assert meta["rows_with_edge_prediction"] == 10
    disagree = with_edge.filter(pl.col("edge_decision") != pl.col("decision")).height
    assert meta["edge_disagreements"] == disagree
    # exported once per model version (then from the cache: the next run below)
    assert meta["onnx_from_cache"] is False
    assert (meta["days"], meta_of(instance, EMPTY_DAY)["rows_scored"]) == (2, scored.height)
    assert (data_dir / "batch" / "onnx" / FAMILY / "v1" / "manifest.json").exists()

    # a chosen version, and one that does not exist
    config = {KEY.to_python_identifier(): PredictionConfig(model_version="1", threshold=0.99)}
    assert dg.materialize(assets, selection=[KEY], partition_key=DAY, instance=instance,
                          resources=res, run_config=dg.RunConfig(ops=config)).success
    strict = lake.read_partition(table(f"predictions.{FAMILY}"), DAY)
    assert strict.height == scored.height  # the day was replaced, not appended to
    assert meta_of(instance, DAY)["onnx_from_cache"] is True
    assert set(strict.get_column("threshold")) == {0.99}
    bad = {KEY.to_python_identifier(): PredictionConfig(model_version="7")}
    failed = dg.materialize(assets, selection=[KEY], partition_key=DAY, instance=instance,
                            resources=res, run_config=dg.RunConfig(ops=bad), raise_on_error=False)
    assert not failed.success
    # (the config run above recorded the same champion data version as the first)

    # A new champion: every scored day is stale because of it, and the automation re-scores
    # the latest day only. The promotion is what models/<family>_champion records (data
    # version "<name>/<version>"), reported here instead of training a second model.
    status = get_stale_status_resolver(instance, assets)
    assert status.get_status(KEY, DAY) == StaleStatus.FRESH
    when = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    defs = dg.Definitions(assets=assets, resources=res)
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                               evaluation_time=when)
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=champion_key(FAMILY),
        tags={DATA_VERSION_TAG: f"{registered_name(FAMILY)}/2"}))
    status = get_stale_status_resolver(instance, assets)
    for day in (DAY, EMPTY_DAY):
        assert status.get_status(KEY, day) == StaleStatus.STALE
        causes = status.get_stale_causes(KEY, day)
        assert any(c.category == StaleCauseCategory.DATA and c.dependency
                   and c.dependency.asset_key == champion_key(FAMILY) for c in causes)
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              cursor=before.cursor, evaluation_time=when)
    assert after.get_requested_partitions(KEY) == {EMPTY_DAY}  # the latest day


class StandInMlflow(MlflowResource):
    """The MLflow resource, handing out test_batch's stand-in registry (untrained nets)."""

    def registry(self):  # type: ignore[override]
        return StandInRegistry()


@pytest.mark.integration
def test_a_three_day_backfill_is_one_run_writing_three_partitions(data_dir, lake):
    first = date(2026, 11, 2)
    frame = days_of_windows(first - timedelta(days=1), 5)  # a day either side of the range
    lake.overwrite(table("features.sensor_windows"), frame)
    key = prediction_key("sensor_anomaly")
    asset = next(a for a in prediction_assets if a.key == key)
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    instance = dg.DagsterInstance.ephemeral()
    res = {**default_resources(), "mlflow": StandInMlflow(tracking_uri="unused")}
    days = [(first + timedelta(days=d)).isoformat() for d in range(3)]
    result = dg.materialize([asset], instance=instance, resources=res, tags={
        ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]})
    assert result.success

    runs = instance.get_runs()
    assert len(runs) == 1
    materialized = [e.partition for e in result.get_asset_materialization_events()]
    assert sorted(materialized) == days  # one run, three partitions
    target = table("predictions.sensor_anomaly")
    assert lake.version(target) == 0  # one commit
    written = lake.read(target)
    known = frame.filter(pl.col("machine_type") != "robot")
    assert sorted(written.get_column("date").unique().cast(pl.String).to_list()) == days
    for day in days:
        on_day = known.filter(pl.col("window_start").dt.date() == date.fromisoformat(day))
        assert written.filter(pl.col("date") == date.fromisoformat(day)).height == on_day.height
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0]
            .materialization.metadata.items()}
    assert (meta["days"], meta["first_day"], meta["last_day"]) == (3, days[0], days[-1])
    assert meta["rows_scored"] == written.height
