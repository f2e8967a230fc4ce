"""fleet.batch on sensor windows, without Dagster: export once per version, score a day
through the edge's Predictor, the edge's window ids, the edge's latest prediction joined.

The model registry here is a stand-in that hands out a small untrained autoencoder per
machine type (MLflow and a trained champion are covered by defs/test_predictions.py); the
lake, the ONNX export and the scoring are the real ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from mfg_assets.edge.windows import CompletedWindow
from mfg_assets.fleet import batch
from mfg_assets.lake.registry import table
from mfg_assets.ml.anomaly import TypeAutoencoder

DAY = date(2026, 11, 3)
COLUMNS = {"welder": ["current__mean", "current__std", "voltage__mean"],
           "press": ["force__mean", "force__max"]}


class StandInRegistry:
    """What exported_model asks of the MLflow registry: a champion and its model."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.nets = {t: TypeAutoencoder(len(c), 8, 2).eval() for t, c in COLUMNS.items()}
        self.loads = 0

    def champion(self, name: str):
        return SimpleNamespace(version="3")

    def load(self, module, version, dst):
        self.loads += 1
        info = {"machine_types": {t: {"columns": c, "threshold": 0.8}
                                  for t, c in COLUMNS.items()}}
        return SimpleNamespace(net=self.nets.__getitem__), info


def windows(n: int = 30) -> pl.DataFrame:
    start = datetime.combine(DAY, datetime.min.time(), UTC) - timedelta(minutes=50)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        machine, kind = [("weld-01", "welder"), ("press-01", "press"), ("robot-1", "robot")][i % 3]
        ts = start + timedelta(minutes=10 * (i // 3))
        row = {"machine_id": machine, "machine_type": kind, "window_start": ts,
               "window_end": ts + timedelta(minutes=10), "n_samples": 60,
               "is_fault": bool(i % 4 == 0) if i % 5 else None}
        for c in (*COLUMNS["welder"], *COLUMNS["press"]):
            row[c] = float(rng.normal(5, 1)) if c in COLUMNS.get(kind, ()) else None
        rows.append(row)
    return pl.DataFrame(rows)


@pytest.fixture
def lake_with_windows(lake):
    frame = windows()
    lake.overwrite(table("features.sensor_windows"), frame)
    return lake, frame


def test_every_edge_served_family_has_a_predictions_table():
    assert set(batch.batch_families()) >= {"sensor_anomaly", "vision_defect"}
    for family in batch.batch_families():
        assert batch.predictions_table(family).partition_by == "date"


def test_a_day_of_windows_is_scored_like_the_edge_scores_them(lake_with_windows, tmp_path):
    lake, frame = lake_with_windows
    registry = StandInRegistry()
    model = batch.exported_model(registry, "sensor_anomaly", cache_dir=tmp_path / "onnx")
    assert (model.version, model.cached, set(model.parts)) == ("3", False, set(COLUMNS))
    again = batch.exported_model(registry, "sensor_anomaly", cache_dir=tmp_path / "onnx")
    assert again.cached and registry.loads == 1  # exported once per version

    # an edge scored one welder window twice (a newer bundle later) and one press window
    mine = frame.filter(pl.col("window_start").dt.date() == DAY)
    weld = mine.filter(pl.col("machine_type") == "welder").row(0, named=True)
    press = mine.filter(pl.col("machine_type") == "press").row(0, named=True)
    ms = {r["machine_id"]: int(r["window_start"].timestamp() * 1000) for r in (weld, press)}
    ids = {m: CompletedWindow(m, "", t, 60, np.zeros(1), True).source_id for m, t in ms.items()}
    spec = table("silver.edge_predictions")
    published = weld["window_end"] + timedelta(seconds=2)
    base = {"date": published.date(), "enterprise": "acme", "site": "detroit", "area": "body",
            "line": "weld1", "cell": "cell01", "ingest_batch_id": "t", "edge_id": "edge-weld1",
            "model": "sensor_anomaly", "threshold": 0.5, "latency_ms": 1.0}
    lake.append(spec, pl.DataFrame([
        {**base, "ts": published, "source_id": ids["weld-01"], "bundle_id": "b1",
         "value": "true", "score": 9.0},
        {**base, "ts": published + timedelta(minutes=1), "source_id": ids["weld-01"],
         "bundle_id": "b2", "value": "false", "score": 0.1},
        {**base, "ts": published, "source_id": ids["press-01"], "bundle_id": "b2",
         "value": "false", "score": 0.2},
        {**base, "ts": published, "source_id": ids["press-01"], "bundle_id": "b2",
         "value": "true", "score": 0.2, "model": "vision_defect"},  # another model's
    ], schema=spec.polars_schema))

    outcome = batch.predict_day(lake, model, DAY, batch_size=4)
    rows = lake.read_partition(batch.predictions_table("sensor_anomaly"), DAY).sort("ts")
    known = mine.filter(pl.col("machine_type") != "robot")
    assert rows.height == outcome.scored == known.height
    assert outcome.unscored == {"machine type robot unknown to the model": mine.height -
                                known.height}
    # the previous day's windows stay out of this day's partition
    assert rows.get_column("ts").dt.date().unique().to_list() == [DAY]
    # scores are the torch nets' own, through ONNX
    for kind, nets_rows in known.group_by("machine_type"):
        x = batch.window_matrix(nets_rows, COLUMNS[kind[0]])
        with torch.no_grad():
            expected = registry.nets[kind[0]](torch.from_numpy(x)).numpy()
        ids_of = nets_rows.select(pl.concat_str("machine_id", pl.lit("/"), pl.col(
            "window_start").dt.epoch("ms").cast(pl.String))).to_series()
        got = rows.filter(pl.col("source_id").is_in(ids_of.implode())).sort("ts")
        np.testing.assert_allclose(got.get_column("score").to_numpy(), expected, rtol=1e-4,
                                   atol=1e-5)
        assert got.get_column("decision").to_list() == [
            "true" if s > 0.8 else "false" for s in got.get_column("score").to_list()]
    # the edge's latest prediction of the same window, by the id the edge publishes
    joined = rows.filter(pl.col("bundle_id").is_not_null()).sort("asset_id")
    assert joined.select("asset_id", "bundle_id", "edge_decision").rows() == [
        ("press-01", "b2", "false"), ("weld-01", "b2", "false")]
    assert outcome.with_edge == 2
    truth = rows.get_column("truth").drop_nulls().unique().sort().to_list()
    assert set(truth) <= {"false", "true"}

    # re-running the day replaces it, with a threshold of the caller's choice
    batch.predict_day(lake, model, DAY, threshold=-1.0)
    rerun = lake.read_partition(batch.predictions_table("sensor_anomaly"), DAY)
    assert rerun.height == rows.height and set(rerun.get_column("decision")) == {"true"}


def test_no_champion_is_a_clear_error(tmp_path):
    class Empty:
        def champion(self, name):
            return None

    with pytest.raises(ValueError, match="no champion yet"):
        batch.exported_model(Empty(), "sensor_anomaly", cache_dir=tmp_path)
