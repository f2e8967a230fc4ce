import pytest

from mfg_assets.lake.registry import TABLES, table, tables


@pytest.mark.parametrize("spec", TABLES, ids=lambda s: s.qualified_name)
def test_keys_and_partition_columns_are_declared_in_the_schema(spec):
    columns = set(spec.polars_schema)
    assert set(spec.key) <= columns
    assert spec.partition_by is None or spec.partition_by in columns
    assert spec.description


def test_every_table_is_declared_once():
    names = [spec.qualified_name for spec in TABLES]
    assert len(names) == len(set(names))


def test_unknown_table_names_the_known_ones():
    with pytest.raises(KeyError, match="silver.sensor_readings"):
        table("silver.sensor_reading")


def test_layers_filter():
    assert {spec.layer for spec in tables("silver")} == {"silver"}
    layers = {spec.layer for spec in TABLES}
    assert sum(len(tables(layer)) for layer in layers) == len(TABLES)


def test_wide_tables_take_columns_named_by_the_data(lake):
    import polars as pl

    from mfg_assets.lake.delta import conform

    wide = [spec for spec in TABLES if spec.pattern_columns]
    assert wide, "the feature tables declare regex columns"
    spec = wide[0]
    regex, _ = spec.pattern_columns[0]
    frame = spec.empty()
    sample = next(name for name in ("param__x", "current__mean", "x__mean") if regex.match(name))
    conformed = conform(spec, frame.with_columns(pl.lit(None, pl.Float64).alias(sample)))
    assert sample in conformed.columns
    with pytest.raises(ValueError, match="undeclared columns"):
        conform(spec, frame.with_columns(pl.lit(1.0).alias("not a declared shape")))
