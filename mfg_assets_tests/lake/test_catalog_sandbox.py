"""The analysts' DuckDB catalog reads the registered tables and nothing else.

No query may read or write files (the S3 secret in /proc/self/environ, a table's
_delta_log), attach databases, install or load extensions, or switch the sandbox off; a
table whose Delta log is broken is skipped with a warning and the others stay queryable.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfg_assets.lake.catalog import TableSkipped, connect, list_tables
from mfg_assets.lake.registry import table
from mfg_assets_tests.lake.test_delta import params_frame

PARAMS = table("silver.process_parameters")
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
REFUSED = (duckdb.PermissionException, duckdb.InvalidInputException, duckdb.CatalogException,
           duckdb.IOException, duckdb.BinderException)


@pytest.fixture
def con(lake, tmp_path):
    lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u1", "u2"], 2.5))
    (tmp_path / "outside.csv").write_text("a,b\n1,2\n")
    connection = connect(lake)
    yield connection
    connection.close()


def refused(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(REFUSED):
        con.execute(sql).fetchall()


def test_registered_tables_are_queryable_and_external_access_is_off(con):
    assert con.execute("SELECT count(*), sum(value) FROM silver.process_parameters").fetchone() \
        == (2, 5.0)
    assert con.execute("SELECT current_setting('enable_external_access'), "
                       "current_setting('lock_configuration')").fetchone() == (False, True)


def test_the_environment_is_not_readable(con, monkeypatch):
    refused(con, "SELECT * FROM read_text('/proc/self/environ')")
    refused(con, "SELECT * FROM read_blob('/proc/self/environ')")


path_parts = st.lists(st.text(st.characters(whitelist_categories=("Ll", "Nd"),
                                            whitelist_characters="._-"), min_size=1,
                              max_size=8), min_size=1, max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(parts=path_parts, reader=st.sampled_from(
    ["read_text", "read_blob", "read_csv", "read_parquet", "read_json", "glob"]))
def test_no_reader_reaches_a_file(con, tmp_path, parts, reader):
    for path in (tmp_path / "outside.csv", tmp_path.joinpath(*parts), Path("/", *parts)):
        literal = str(path).replace("'", "''")
        refused(con, f"SELECT * FROM {reader}('{literal}')")
    refused(con, f"SELECT * FROM '{tmp_path / 'outside.csv'}'")  # replacement scan


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_OK)
@given(parts=path_parts, fmt=st.sampled_from(["CSV", "PARQUET", "JSON"]))
def test_no_copy_or_export_writes_a_file(con, lake, tmp_path, parts, fmt):
    log = Path(lake.uri(PARAMS)) / "_delta_log"
    targets = [log / "00000000000000000009.json", tmp_path.joinpath(*parts)]
    for target in targets:
        refused(con, f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT {fmt})")
        assert not target.exists()
    refused(con, f"EXPORT DATABASE '{tmp_path / 'export'}'")
    assert sorted(p.name for p in log.iterdir()) == ["00000000000000000000.json"]


@pytest.mark.parametrize("sql", [
    "ATTACH '{tmp}/other.duckdb' AS other",
    "ATTACH '{tmp}/other.duckdb' AS other (READ_ONLY)",
    "ATTACH 'md:other'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "INSTALL delta",
    "LOAD '{tmp}/evil.duckdb_extension'",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SET autoinstall_known_extensions = true",
    "SET autoload_known_extensions = true",
    "SET allow_community_extensions = true",
    "SET allowed_directories = ['/']",
    "SET temp_directory = '{tmp}'",
    "PRAGMA enable_external_access",
])
def test_attach_extensions_and_configuration_changes_are_refused(con, tmp_path, sql):
    refused(con, sql.format(tmp=tmp_path))
    assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)
    assert not (tmp_path / "other.duckdb").exists()


def corrupt(lake, spec) -> None:
    """What a COPY ... TO into a table's _delta_log did: a next commit that is not JSON."""
    log = Path(lake.uri(spec)) / "_delta_log"
    (log / "00000000000000000001.json").write_text("x\n1\n")


def test_a_broken_table_is_skipped_with_a_warning_and_the_others_stay_queryable(lake):
    quarantine = table("bronze.quarantine")
    lake.append(PARAMS, params_frame(date(2026, 11, 1), ["u1"], 4.0))
    lake.ensure(quarantine)
    corrupt(lake, quarantine)
    with pytest.warns(TableSkipped, match=r"bronze\.quarantine skipped"):
        con = connect(lake)
    assert list_tables(con) == ["silver.process_parameters"]
    assert con.execute("SELECT sum(value) FROM silver.process_parameters").fetchone() == (4.0,)
    assert con.execute("SELECT 1").fetchone() == (1,)
