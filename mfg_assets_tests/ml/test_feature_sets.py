"""ml/features.FEATURE_SETS: every feature table is built from registered silver tables, and
build_feature_set writes it with the silver versions it read (a real Delta lakehouse)."""

from __future__ import annotations

import inspect

from polars.testing import assert_frame_equal

from mfg_assets.lake.lineage import read_lineage
from mfg_assets.lake.names import FEATURES_PROCESS_UNITS
from mfg_assets.lake.registry import TABLES, table
from mfg_assets.ml import features


def test_every_feature_set_names_registered_tables_and_a_builder_of_their_arity():
    registered = {spec.qualified_name for spec in TABLES}
    tables = [fs.table for fs in features.FEATURE_SETS]
    assert len(set(tables)) == len(tables)
    assert set(tables) == {s.qualified_name for s in TABLES if s.layer == "features"}
    for fs in features.FEATURE_SETS:
        assert set(fs.inputs) <= registered and all(n.startswith("silver.") for n in fs.inputs)
        required = [p for p in inspect.signature(fs.build).parameters.values()
                    if p.default is inspect.Parameter.empty]
        assert len(required) <= len(fs.inputs), fs.table


def test_build_feature_set_writes_the_table_with_the_versions_it_read(
        lake, process_silver, process_units):
    (feature_set,) = [fs for fs in features.FEATURE_SETS if fs.table == FEATURES_PROCESS_UNITS]
    for name in feature_set.inputs:
        lake.append(table(name), process_silver[name])
    lake.append(table(feature_set.inputs[0]), process_silver[feature_set.inputs[0]].head(0))
    built = features.build_feature_set(lake, feature_set)
    expected = {name: lake.version(table(name)) for name in feature_set.inputs}
    assert built.versions == expected
    assert_frame_equal(built.frame, process_units)
    spec = table(FEATURES_PROCESS_UNITS)
    assert built.write.version == lake.version(spec)
    assert read_lineage(lake, spec, built.write.version) == expected
    assert_frame_equal(lake.read(spec), process_units, check_row_order=False)
