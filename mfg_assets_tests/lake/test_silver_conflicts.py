"""Bronze -> silver never merges two facts into one row silently.

Rows from two sites with one machine, sensor and time are two rows; one key with two
values is a conflict (first delivery kept, the other quarantined with both values); an
exact redelivery is a plain duplicate; a timestamp outside the plausible window is
quarantined instead of landing as 1969 or year 9999.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import PlausibleWindow, refine, type_process_runs, type_sensor_readings

SENSORS = table("silver.sensor_readings")
RUNS = table("silver.process_runs")
T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def bronze(rows: list[dict]) -> pl.DataFrame:
    """Bronze messages: ``site``, ``asset``, ``payload`` (dict) and an optional ``id``."""
    spec = table("bronze.sensor_readings")
    frame = pl.DataFrame(
        {
            "message_id": [r.get("id", f"m{i}") for i, r in enumerate(rows)],
            "ingest_batch_id": [r.get("batch", "b1") for r in rows],
            "source": ["test"] * len(rows),
            "topic": [f"acme/{r['site']}/a/l/c/{r['asset']}/x" for r in rows],
            "channel": ["x"] * len(rows),
            "received_at": [T0 + timedelta(seconds=i) for i in range(len(rows))],
            "event_time": [T0] * len(rows),
            "event_date": [T0.date()] * len(rows),
            "enterprise": ["acme"] * len(rows),
            "site": [r["site"] for r in rows],
            "area": ["a"] * len(rows),
            "line": ["l"] * len(rows),
            "cell": ["c"] * len(rows),
            "asset_id": [r["asset"] for r in rows],
            "payload": [orjson.dumps(r["payload"]).decode() for r in rows],
        }
    )
    return frame.select(list(spec.polars_schema)).cast(dict(spec.polars_schema.items()))


def reading(site: str, value: float, ts_ms: int = T0_MS, **extra) -> dict:
    payload = {"timestamp": ts_ms, "machineType": "press",
               "readings": [{"sensor": "force", "value": value}]}
    return {"site": site, "asset": "press-01", "payload": payload, **extra}


def sensors(rows: list[dict], **options):
    return refine(SENSORS, type_sensor_readings(bronze(rows)), run_id="t", **options)


def test_same_machine_sensor_and_time_at_two_sites_are_two_rows():
    result = sensors([reading("detroit", 1.0), reading("munich", 2.0)])
    assert sorted(result.valid.select("site", "value").rows()) == [
        ("detroit", 1.0), ("munich", 2.0)]
    assert result.rejected.height == 0 and result.duplicates == 0


def test_one_key_two_values_is_a_conflict_with_both_values_in_quarantine():
    result = sensors([reading("detroit", 1.0, id="first"), reading("detroit", 7.5, id="late")])
    assert result.valid.get_column("value").to_list() == [1.0]  # first delivery wins
    quarantined = result.rejected.row(0, named=True)
    assert result.rejected.height == 1 and quarantined["reason_code"] == "conflict"
    assert "value=1.0" in quarantined["reason"] and "value=7.5" in quarantined["reason"]
    assert "message first" in quarantined["reason"] and "message late" in quarantined["reason"]
    assert orjson.loads(quarantined["payload"])["readings"][0]["value"] == 7.5
    assert result.rows_in == 2


def test_exact_redelivery_is_a_duplicate_not_a_conflict():
    result = sensors([reading("detroit", 1.0, id="m"), reading("detroit", 1.0, id="m2",
                                                               batch="b2")])
    assert result.valid.height == 1 and result.duplicates == 1 and result.rejected.height == 0


def test_unit_ids_are_per_place_and_conflicting_yields_are_quarantined():
    def run(site: str, unit: str, yield_pct: float) -> dict:
        payload = {"timestamp": T0_MS, "unitId": unit, "yield": yield_pct,
                   "passed": yield_pct >= 90}
        return {"site": site, "asset": "weld-01", "payload": payload}

    typed = type_process_runs(bronze([run("detroit", "u1", 95.0), run("munich", "u1", 80.0),
                                      run("detroit", "u1", 60.0)]))
    result = refine(RUNS, typed, run_id="t")
    assert sorted(result.valid.select("site", "yield_pct").rows()) == [
        ("detroit", 95.0), ("munich", 80.0)]
    assert result.rejected.get_column("reason_code").to_list() == ["conflict"]
    assert "yield_pct=95.0" in result.rejected["reason"][0]
    assert "yield_pct=60.0" in result.rejected["reason"][0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["detroit", "munich"]), st.integers(0, 2),
                          st.sampled_from([1.0, 2.0])), min_size=1, max_size=12))
def test_every_row_is_kept_deduplicated_or_quarantined(deliveries):
    rows = [reading(site, value, T0_MS + 1000 * second) for site, second, value in deliveries]
    result = sensors(rows)
    assert result.rows_in == len(rows)
    first: dict[tuple, float] = {}
    conflicts = 0
    for site, second, value in deliveries:
        key = (site, second)
        conflicts += key in first and first[key] != value
        first.setdefault(key, value)
    assert result.rejected.height == conflicts
    assert set(result.rejected.get_column("reason_code")) <= {"conflict"}
    landed = {(r["site"], int(r["ts"].timestamp()) - int(T0.timestamp())): r["value"]
              for r in result.valid.iter_rows(named=True)}
    assert landed == first


YEAR_1_MS = int((datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC))
                / timedelta(milliseconds=1))
YEAR_9999_MS = int(datetime(9999, 1, 1, tzinfo=UTC).timestamp() * 1000)


@settings(max_examples=30, deadline=None)
@given(st.one_of(
    st.integers(YEAR_1_MS, int(datetime(1999, 12, 31, tzinfo=UTC).timestamp() * 1000)),
    st.integers(int((datetime.now(UTC) + timedelta(days=2)).timestamp() * 1000), YEAR_9999_MS),
    st.just(0), st.just(-1),
))
def test_implausible_timestamps_are_quarantined_never_landed(ts_ms):
    result = sensors([reading("detroit", 1.0, ts_ms), reading("detroit", 2.0)])
    assert result.valid.height == 1 and result.valid["ts"][0] == T0
    quarantined = result.rejected.row(0, named=True)
    assert quarantined["reason_code"] == "implausible_time"
    assert "outside the plausible window" in quarantined["reason"]


def test_the_window_is_configurable():
    window = PlausibleWindow(earliest=datetime(2026, 11, 2, tzinfo=UTC))
    result = sensors([reading("detroit", 1.0)], window=window)
    assert result.valid.height == 0
    assert result.rejected["reason"][0].startswith("ts 2026-11-01T08:00:00.000Z outside")
