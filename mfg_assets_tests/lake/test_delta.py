from datetime import UTC, date, datetime

import polars as pl
import pytest

from mfg_assets.lake.catalog import connect, list_tables
from mfg_assets.lake.registry import PLACE_KEY, table

PARAMS = table("silver.process_parameters")


def params_frame(day: date, units: list[str], value: float = 1.0) -> pl.DataFrame:
    ts = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    return pl.DataFrame(
        {
            "unit_id": units,
            "ts": [ts] * len(units),
            **{level: pl.Series([None] * len(units), dtype=pl.String) for level in PLACE_KEY},
            "date": [day] * len(units),
            "name": ["current_setpoint"] * len(units),
            "value": [value] * len(units),
            "ingest_batch_id": ["b1"] * len(units),
        }
    )


def test_append_reports_the_version_it_committed(lake):
    first = lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u1", "u2"]))
    second = lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u3"]))
    assert (first.version, first.rows) == (0, 2)
    assert (second.version, second.rows) == (1, 1)
    assert lake.row_count(PARAMS) == 3


def test_overwrite_partition_replaces_only_that_day_and_is_idempotent(lake):
    lake.append(PARAMS, params_frame(date(2026, 11, 1), ["a1", "a2"]))
    lake.append(PARAMS, params_frame(date(2026, 11, 2), ["b1"]))
    for _ in range(2):
        lake.overwrite_partition(PARAMS, params_frame(date(2026, 11, 1), ["a3"], 7.0), "2026-11-01")
    day1 = lake.read_partition(PARAMS, "2026-11-01")
    day2 = lake.read_partition(PARAMS, "2026-11-02")
    assert day1.get_column("unit_id").to_list() == ["a3"]
    assert day1.get_column("value").to_list() == [7.0]
    assert day2.get_column("unit_id").to_list() == ["b1"]


def test_rows_outside_the_partition_are_refused(lake):
    with pytest.raises(ValueError, match="outside partition"):
        lake.overwrite_partition(PARAMS, params_frame(date(2026, 11, 2), ["x"]), "2026-11-01")


def test_a_frame_that_breaks_the_schema_commits_nothing(lake):
    lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u1"]))
    bad = params_frame(date(2026, 11, 1), ["u2"]).with_columns(pl.lit("").alias("name"))
    with pytest.raises(Exception, match="str_length"):
        lake.append(PARAMS, bad)
    with pytest.raises(ValueError, match="undeclared columns"):
        lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u3"]).with_columns(x=pl.lit(1)))
    assert lake.version(PARAMS) == 0


def test_missing_table_reads_as_empty_with_schema(lake):
    frame = lake.read(PARAMS)
    assert frame.height == 0
    assert frame.schema == PARAMS.polars_schema


def test_duckdb_sees_every_table_as_layer_dot_name(lake):
    lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u1", "u2"], 2.5))
    lake.ensure(table("bronze.quarantine"))
    con = connect(lake)
    assert list_tables(con) == ["bronze.quarantine", "silver.process_parameters"]
    total = con.execute("SELECT count(*), sum(value) FROM silver.process_parameters").fetchone()
    assert total == (2, 5.0)
    assert con.execute("SELECT count(*) FROM bronze.quarantine").fetchone() == (0,)
