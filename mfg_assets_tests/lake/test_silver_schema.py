"""lake/silver.schema_errors: pandera's report of a frame against its table's schema."""

from __future__ import annotations

from datetime import date

import polars as pl

from mfg_assets.lake.names import SILVER_PROCESS_PARAMETERS
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import schema_errors
from mfg_assets_tests.lake.test_delta import params_frame


def test_a_valid_frame_has_no_errors_and_a_broken_one_names_its_column():
    spec = table(SILVER_PROCESS_PARAMETERS)
    good = params_frame(date(2026, 11, 1), ["u1", "u2"])
    assert schema_errors(spec, good) == ""
    broken = good.with_columns(pl.col("value").cast(pl.String))
    errors = schema_errors(spec, broken)
    assert errors and "value" in errors
    extra = good.with_columns(pl.lit(1).alias("nobody_declared_me"))
    assert "nobody_declared_me" in schema_errors(spec, extra)  # strict schemas
