"""Silver conflicts through the Dagster asset (issue 13, defect 4), not only through refine().

Real bronze rows are committed by the gateway's own commit path (router -> Delta) on a
tmp_path lakehouse; the silver/sensor_readings asset of the project's Definitions is then
materialized for its daily partition, twice, and silver and silver.quarantine are read back
from Delta:

(a) one machine, sensor and time at two sites is two silver rows;
(b) one key delivered with two values keeps the first delivery and quarantines the other as
    ``conflict``, naming both values (nothing silently dropped);
(c) an exact redelivery is deduplicated, not a conflict.
"""

from __future__ import annotations

import dagster as dg
import orjson
import pytest

from mfg_assets import plan
from mfg_assets.definitions import ALL_ASSETS
from mfg_assets.gateway.commit import Item, commit_items
from mfg_assets.gateway.routing import Router
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.settings import get_settings
from mfg_assets.uns.contract import load_contract

DAY = "2026-11-01"
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
KEY = dg.AssetKey(["silver", "sensor_readings"])
STAGE = "silver.sensor_readings"


def topic(site: str) -> str:
    return f"acme/{site}/body/weld1/cell01/weld-01/sensors"


def payload(ts_ms: int, value: float) -> bytes:
    return orjson.dumps({"timestamp": ts_ms, "machineType": "welder",
                         "readings": [{"sensor": "current", "value": value, "unit": "A"}]})


@pytest.fixture
def bronze(lake: Lake) -> Lake:
    """Two gateway micro-batches committed to bronze.sensor_readings, in delivery order."""
    router = Router(load_contract(get_settings().contract_path), source="test")
    first: list[Item] = [
        (topic("detroit"), payload(T0, 100.0), 1, 1, T0 + 10),  # (a) detroit ...
        (topic("munich"), payload(T0, 200.0), 2, 1, T0 + 11),  # (a) ... and munich, same key
        (topic("detroit"), payload(T0 + 1000, 1.0), 3, 1, T0 + 12),  # (b) first delivery
        (topic("detroit"), payload(T0 + 2000, 5.0), 4, 1, T0 + 13),  # (c) original
    ]
    later: list[Item] = [
        (topic("detroit"), payload(T0 + 1000, 7.5), 5, 1, T0 + 20),  # (b) another value
        (topic("detroit"), payload(T0 + 2000, 5.0), 6, 1, T0 + 21),  # (c) exact redelivery
    ]
    for items in (first, later):
        done = commit_items(router, lake, items, retries=0, stopping=lambda: False)
        assert (done.valid, done.invalid, done.write_failed) == (len(items), 0, 0)
    assert lake.read(table("bronze.sensor_readings")).height == 6
    return lake


def materialize(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    # The asset the code location is assembled from (``defs`` binds resources read when it
    # was imported); resources built now, as `mfg demo` does (plan.resources() reads the
    # settings at call time), so they point at this test's tmp_path lakehouse.
    (asset,) = [a for a in ALL_ASSETS if isinstance(a, dg.AssetsDefinition) and KEY in a.keys]
    result = dg.materialize([asset], partition_key=DAY, instance=instance,
                            resources=plan.resources())
    assert result.success
    return result


# Columns of a silver.quarantine row that a re-run rewrites: the run (its id names the batch)
# and when it refused the row. Everything else, the row's id included, must be the same.
PER_RUN = ("ingest_batch_id", "received_at")


def silver_state(lake: Lake) -> tuple[list[tuple], list[dict]]:
    silver = lake.read(table(STAGE))
    rows = sorted(silver.select("site", "machine_id", "sensor", "ts", "value").rows())
    quarantine = lake.read(table("silver.quarantine")).drop(PER_RUN)
    return rows, quarantine.to_dicts()


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == KEY]
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_conflicts_sites_and_redeliveries_through_the_silver_asset(data_dir, bronze):
    lake = bronze
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(instance)

    rows, quarantine = silver_state(lake)
    assert {row[1:3] for row in rows} == {("weld-01", "current")}
    by_place = {(site, int(ts.timestamp() * 1000) - T0): value for site, _, _, ts, value in rows}
    assert by_place == {
        ("detroit", 0): 100.0, ("munich", 0): 200.0,  # (a) two sites: two rows
        ("detroit", 1000): 1.0,  # (b) the first delivery is kept
        ("detroit", 2000): 5.0,  # (c) one row for the original and its redelivery
    }
    # (b) the other value is quarantined as a conflict naming both values; (c) is not there
    (conflict,) = quarantine
    assert (conflict["stage"], conflict["partition_key"]) == (STAGE, DAY)
    assert conflict["reason_code"] == "conflict"
    reason = conflict["reason"]
    assert "kept" in reason and "refused" in reason
    assert reason.index("value=1.0") < reason.index("value=7.5")  # kept first, then refused
    assert orjson.loads(conflict["payload"])["readings"][0]["value"] == 7.5
    assert conflict["topic"] == topic("detroit")

    meta = metadata(result)
    assert meta["bronze_messages"] == 6
    assert (meta["rows_quarantined"], meta["duplicates_removed"]) == (1, 1)
    assert meta["dagster/row_count"] == 4
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    # 1 refused of 5 is above the 1 % warning share: the conflict is visible in Dagster too
    assert checks == {"schema": True, "unique_key": True, "quarantine_share": False}

    # the same partition again: nothing doubles, the conflict is still recorded once
    again = materialize(instance)
    assert silver_state(lake) == (rows, quarantine)
    assert lake.read(table(STAGE)).height == 4
    assert lake.read(table("silver.quarantine")).height == 1
    assert (metadata(again)["rows_quarantined"], metadata(again)["duplicates_removed"]) == (1, 1)
