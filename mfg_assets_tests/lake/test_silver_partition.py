"""lake/silver.load_partition and check_partition: one bronze day becomes one silver day and
its quarantine rows, idempotently, on a real Delta lakehouse (tmp_path)."""

from __future__ import annotations

import polars as pl

from mfg_assets.lake.names import BRONZE_SENSOR_READINGS, SILVER_QUARANTINE
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import check_partition, load_partition, type_sensor_readings
from mfg_assets_tests.lake.test_silver_conflicts import SENSORS, T0, bronze, reading


def test_a_bronze_day_lands_in_silver_with_its_quarantine_and_a_rerun_replaces_both(lake):
    spec, source, day = SENSORS, table(BRONZE_SENSOR_READINGS), T0.date().isoformat()
    messages = bronze([reading("s1", 1.0), reading("s2", 2.0),
                       reading("s1", 9.0, id="late"),  # same key, another value: conflict
                       reading("s1", 1.0, id="m0")])  # an exact redelivery
    lake.append(source, messages)
    for run in ("r1", "r2"):
        load = load_partition(lake, spec, source, type_sensor_readings, day, run_id=run)
        assert (load.bronze_version, load.bronze_messages) == (0, 4)
        assert load.result.valid.height == 2 and load.result.rejected.height == 1
        assert load.result.duplicates == 1
        assert load.written.height == 2 == lake.read_partition(spec, day).height
        quarantine = lake.read(table(SILVER_QUARANTINE))
        assert quarantine.height == 1  # replaced, not appended, by the re-run
        assert quarantine["stage"].to_list() == [spec.qualified_name]
    checks = check_partition(spec, load.written, load.result.rejected.height)
    assert (checks.schema_errors, checks.duplicates, checks.rejected) == ("", 0, 1)
    assert checks.share == 1 / 3


def test_check_partition_counts_rows_that_share_a_key():
    typed = type_sensor_readings(bronze([reading("s1", 1.0)]))
    frame = pl.concat([typed, typed]).select(list(SENSORS.polars_schema))
    checks = check_partition(SENSORS, frame, rejected=0)
    assert checks.duplicates == 1 and checks.share == 0.0
