"""An idle lakehouse stays idle: after the demo built everything, `make dev`'s automation
requests nothing while no new data arrives (no empty "today" silver partitions, no feature,
drift or dashboard rebuilds), tick after tick, on the on-disk instance `make dev` uses."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from mfg_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[2]
# The demo's plant ran on the partition start's days; the engineer opens `make dev` weeks
# later, between cadence ticks (nightly retrain 03:00, rollout re-evaluation every 10 min).
DATA_DAYS = ("2026-11-01", "2026-11-02")
OPENED = datetime(2026, 12, 7, 12, 1, tzinfo=UTC)


def _built_like_the_demo(instance: dg.DagsterInstance) -> None:
    """Every asset the automation watches, materialized once, partitions on the data days."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external or node.is_observable:
            continue
        partitions = node.partitions_def
        if partitions is None:
            keys: tuple[str | None, ...] = (None,)
        elif isinstance(partitions, dg.TimeWindowPartitionsDefinition):
            keys = DATA_DAYS
        else:
            continue  # per-edge bundles: no edge registered in this lakehouse
        for partition in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=key, partition=partition))


@pytest.mark.integration
@pytest.mark.slow
def test_no_requests_on_an_idle_lakehouse(tmp_path: Path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        _built_like_the_demo(instance)
        cursor, requested = None, {}
        for minute in range(8):  # the automation sensor's ticks, 30 s apart, for 4 minutes
            result = dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=cursor,
                evaluation_time=OPENED + timedelta(seconds=30 * minute))
            cursor = result.cursor
            for key, partitions in result._requested_partitions_by_asset_key.items():
                if partitions:
                    requested.setdefault(key.to_user_string(), set()).update(partitions)
        assert requested == {}, requested

        # the control: new bronze data on the same instance and cursor is followed at once
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=dg.AssetKey(["bronze", "sensor_readings"])))
        moved = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=cursor,
            evaluation_time=OPENED + timedelta(minutes=5))
        assert moved.get_requested_partitions(dg.AssetKey(["silver", "sensor_readings"])) == {
            OPENED.date().isoformat()}
