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
    assert len(tables("bronze")) + len(tables("silver")) == len(TABLES)
