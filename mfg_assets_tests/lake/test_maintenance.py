"""Compaction, Z-order and VACUUM on a table full of micro-batch files; partition pruning."""

from datetime import UTC, date, datetime, timedelta

import polars as pl

from mfg_assets.lake.maintenance import files_read_for, maintain
from mfg_assets.lake.registry import table

SENSORS = table("silver.sensor_readings")


def readings(day: date, batch: int, n: int = 50) -> pl.DataFrame:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=batch)
    return pl.DataFrame({
        "ts": [start + timedelta(seconds=k) for k in range(n)],
        "date": [day] * n,
        "enterprise": ["acme"] * n, "site": ["detroit"] * n, "area": ["body"] * n,
        "line": ["weld1"] * n, "cell": ["cell01"] * n, "ingest_batch_id": [f"b{batch}"] * n,
        "machine_id": [f"weld-0{k % 3}" for k in range(n)], "machine_type": ["welder"] * n,
        "sensor": ["current"] * n, "value": [float(k) for k in range(n)], "unit": ["A"] * n,
    })


def test_maintenance_compacts_micro_batches_and_keeps_every_row(lake):
    days = [date(2026, 11, 1), date(2026, 11, 2)]
    for day in days:
        for batch in range(12):  # twelve one-second micro-batches per day: twelve files each
            lake.append(SENSORS, readings(day, batch))
    before = lake.read(SENSORS).sort("ts", "machine_id")
    report = maintain(lake, SENSORS, retention_hours=0)
    after = lake.read(SENSORS).sort("ts", "machine_id")
    assert report.files_before == 24
    assert report.files_after == 2  # one file per daily partition
    assert report.zordered_by == "machine_id,sensor"
    assert report.vacuumed == 24  # the small files, unreferenced now, are gone from storage
    assert after.equals(before)


def test_a_one_day_query_reads_only_that_partition(lake):
    for day in (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)):
        lake.append(SENSORS, readings(day, 0))
    read, total = files_read_for(lake, SENSORS, "2026-11-02")
    assert (read, total) == (1, 3)
    assert lake.read_partition(SENSORS, "2026-11-02").get_column("date").unique().to_list() == [
        date(2026, 11, 2)
    ]


def test_maintenance_asset_records_each_table(lake):
    import dagster as dg

    from mfg_assets.defs.maintenance import lake_maintenance
    from mfg_assets.defs.resources import LakehouseResource

    for batch in range(5):
        lake.append(SENSORS, readings(date(2026, 11, 1), batch))
    result = dg.materialize(
        [lake_maintenance],
        resources={"lakehouse": LakehouseResource(root=lake.root)},
        run_config={"ops": {"monitoring__lake_maintenance": {"config": {"retention_hours": 0}}}},
    )
    assert result.success
    log = lake.read(table("monitoring.lake_maintenance"))
    row = log.filter(pl.col("table") == "silver.sensor_readings").row(0, named=True)
    assert (row["files_before"], row["files_after"], row["vacuumed"]) == (5, 1, 5)


def test_maintain_layers_covers_existing_tables_of_the_layers_and_logs_one_row_each(lake):
    from mfg_assets.lake.maintenance import maintain_layers

    for batch in range(3):
        lake.append(SENSORS, readings(date(2026, 11, 1), batch))
    said: list[str] = []
    reports, rows, write = maintain_layers(lake, ["bronze", "silver"], 0, said.append)
    assert [r.table for r in reports] == ["silver.sensor_readings"]  # only tables that exist
    assert said and said[0].startswith("silver.sensor_readings: ")
    assert rows["table"].to_list() == ["silver.sensor_readings"]
    assert rows["run_at"].null_count() == 0
    assert lake.read(table("monitoring.lake_maintenance")).height == 1 == write.rows
    assert maintain_layers(lake, ["features"], 0)[0] == []  # no feature table yet
