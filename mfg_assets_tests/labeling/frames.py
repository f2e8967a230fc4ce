"""Small silver.edge_predictions / silver.labels frames for labeling tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from mfg_assets.lake.registry import table

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
PLACE = {"enterprise": "acme", "site": "detroit", "area": "body", "line": "weld1",
         "cell": "cell01"}


def predictions(rows: list[dict]) -> pl.DataFrame:
    """rows: edge_id, source_id, score, threshold (+ optional ts, model, bundle_id, value)."""
    spec = table("silver.edge_predictions")
    full = []
    for i, row in enumerate(rows):
        ts = row.get("ts", T0 + timedelta(minutes=i))
        full.append({**PLACE, "ts": ts, "date": ts.date(), "ingest_batch_id": "b",
                     "model": "sensor_anomaly", "bundle_id": "bundle-1", "value": None,
                     "latency_ms": 1.0, **row})
    return pl.DataFrame(full, schema=spec.polars_schema)


def labels(rows: list[dict]) -> pl.DataFrame:
    """rows: edge_id, source_id, verdict (+ optional ts, operator_id, model)."""
    spec = table("silver.labels")
    full = []
    for i, row in enumerate(rows):
        ts = row.get("ts", T0 + timedelta(hours=1, seconds=i))
        full.append({**PLACE, "ts": ts, "date": ts.date(), "ingest_batch_id": "b",
                     "model": "sensor_anomaly", "bundle_id": "bundle-1", "operator_id": "op7",
                     "comment": None, **row})
    return pl.DataFrame(full, schema=spec.polars_schema)
