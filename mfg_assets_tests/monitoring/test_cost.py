"""Cost helper: measured CPU, Delta bytes, and the monthly projection by hand."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import write_deltalake

from mfg_assets.monitoring import cost as mc


def test_measure_sees_cpu_of_a_cpu_bound_body():
    with mc.measure() as usage:
        deadline = time.process_time() + 0.3
        x = 0
        while time.process_time() < deadline:
            x += 1
    assert usage.cpu_s >= 0.25
    assert usage.wall_s >= usage.cpu_s * 0.5  # 2 shared cores: wall may trail CPU a bit
    with mc.measure() as idle:
        time.sleep(0.3)
    assert idle.wall_s >= 0.29 and idle.cpu_s < 0.1  # sleeping costs time, not CPU


def _parquet_sizes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*.parquet")}


def test_delta_bytes_written_are_the_files_the_commit_added(tmp_path):
    uri = tmp_path / "t"
    frame = pl.DataFrame({"k": list(range(5000)), "v": [str(i) * 3 for i in range(5000)]})
    write_deltalake(str(uri), frame.to_arrow())
    first = _parquet_sizes(uri)
    write_deltalake(str(uri), frame.head(100).to_arrow(), mode="append")
    added = {p: s for p, s in _parquet_sizes(uri).items() if p not in first}
    assert mc.delta_bytes_written(str(uri), 0) == sum(first.values()) > 0
    assert mc.delta_bytes_written(str(uri), 1) == sum(added.values()) > 0
    # an overwrite adds only its own files (the old ones are removed, not counted)
    write_deltalake(str(uri), frame.head(10).to_arrow(), mode="overwrite")
    newest = {p: s for p, s in _parquet_sizes(uri).items() if p not in first and p not in added}
    assert mc.delta_bytes_written(str(uri), 2) == sum(newest.values())
    assert mc.delta_bytes_written(str(uri), None) == 0


def test_projection_matches_hand_computation():
    rates = {"days": 1.0, "pipeline_cpu_s_per_day": 3600.0, "bytes_per_day": 1e9,
             "model_runs_per_day": 2.0, "model_wall_s_per_run": 1800.0}
    demand = mc.Demand(predictions_per_day=30 * 86400, edge_devices=4)  # 30 predictions/s
    lines = {line.item: line for line in mc.project_month(
        rates, demand, mc.Prices(edge_device_month_usd=10.0))}
    # 3600 CPU-s/day x 30 = 30 vCPU-hours at $0.048
    assert lines["pipeline_compute"].monthly_usd == pytest.approx(1.44)
    # 2 runs/day x 30 = 60 runs, each 0.5 h at $3.06 = $1.53
    assert lines["retraining"].quantity == pytest.approx(60)
    assert lines["retraining"].unit_price_usd == pytest.approx(1.53)
    assert lines["retraining"].monthly_usd == pytest.approx(91.8)
    # 1 GB/day x 30 = 30 GB at $0.023
    assert lines["storage_growth"].monthly_usd == pytest.approx(0.69)
    # 30/s over 20/s per endpoint: 2 endpoints x 730 h x $0.23
    assert lines["cloud_inference_endpoints"].quantity == pytest.approx(1460)
    assert lines["cloud_inference_endpoints"].monthly_usd == pytest.approx(335.8)
    # 77,760,000 predictions x 512 B = 39.81312 GB at $0.09
    assert lines["cloud_inference_egress"].monthly_usd == pytest.approx(3.5831808)
    assert lines["edge_inference"].monthly_usd == pytest.approx(40.0)
    totals = mc.totals(list(lines.values()))
    assert totals["total_with_cloud_inference"] == pytest.approx(93.93 + 339.3831808)
    assert totals["total_with_edge_inference"] == pytest.approx(133.93)
    # a planned cadence overrides the observed one
    planned = mc.project_month(rates, demand, mc.Prices(), retrain_runs_per_month=4)
    assert next(x for x in planned if x.item == "retraining").monthly_usd == pytest.approx(6.12)


def test_usage_rates_per_day_and_demand_from_tables():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    usage = pl.DataFrame({
        "ts": [t0, t0 + timedelta(hours=24), t0 + timedelta(hours=48)],
        "layer": ["silver", "models", "features"],
        "cpu_s": [10.0, 100.0, 30.0], "wall_s": [12.0, 600.0, 40.0],
        "bytes_written": [1000, 0, 3000],
    })
    rates = mc.usage_rates(usage)
    assert rates["days"] == pytest.approx(2.0)
    assert rates["pipeline_cpu_s_per_day"] == pytest.approx(20.0)  # models are priced apart
    assert rates["bytes_per_day"] == pytest.approx(2000.0)
    assert rates["model_runs_per_day"] == pytest.approx(0.5)
    assert rates["model_wall_s_per_run"] == pytest.approx(600.0)
    # a burst of minutes counts as one day
    assert mc.usage_rates(usage.head(1))["days"] == 1.0

    d1, d2 = datetime(2026, 1, 1).date(), datetime(2026, 1, 2).date()
    predictions = pl.DataFrame({"date": [d1, d1, d1, d2], "edge_id": ["a", "b", "a", "a"]})
    images = pl.DataFrame({"date": [d1] * 10})
    assert mc.inference_demand(predictions, images) == mc.Demand(2.0, 2)
    # no edge predictions yet: the image rate is what the cloud would score
    assert mc.inference_demand(predictions.clear(), images) == mc.Demand(10.0, 0)


def test_cost_metadata_adds_the_bytes_of_the_commit_the_metadata_names(lake):
    from mfg_assets_tests.lake.test_delta import PARAMS, params_frame

    write = lake.append(PARAMS, params_frame(datetime(2026, 11, 1).date(), ["u1", "u2"]))
    expected = mc.delta_bytes_written(lake.uri(PARAMS), write.version)
    assert expected > 0
    usage = mc.Usage(cpu_s=1.23456, wall_s=2.0)
    meta = mc.cost_metadata(usage, {"dagster/table_name": PARAMS.qualified_name,
                                    "delta_version_written": write.version}, lake)
    assert meta == {mc.CPU_S: 1.2346, mc.WALL_S: 2.0, mc.BYTES_WRITTEN: expected}
    # no commit named, or no lake: CPU and wall only
    assert mc.cost_metadata(mc.Usage(1.0, 2.0), None, lake)[mc.BYTES_WRITTEN] == 0
    assert mc.cost_metadata(mc.Usage(1.0, 2.0), {"delta_version_written": 0}, None)[
        mc.BYTES_WRITTEN] == 0


def test_shared_cost_splits_cpu_and_wall_by_bytes_and_sums_to_what_was_used():
    usage = mc.Usage(cpu_s=10.0, wall_s=20.0)
    shares = mc.shared_cost_metadata(usage, {"a": 300, "b": 100})
    assert shares["a"] == {mc.CPU_S: 7.5, mc.WALL_S: 15.0, mc.BYTES_WRITTEN: 300}
    assert shares["b"] == {mc.CPU_S: 2.5, mc.WALL_S: 5.0, mc.BYTES_WRITTEN: 100}
    even = mc.shared_cost_metadata(usage, {"a": 0, "b": 0})  # nothing written: even shares
    assert even["a"][mc.CPU_S] == even["b"][mc.CPU_S] == 5.0
