"""lake/lineage: the input versions a commit records come back from its history; a version
diff names the tables that moved. On a real Delta lakehouse (tmp_path)."""

from __future__ import annotations

from datetime import date

from mfg_assets.lake.lineage import READ_PREFIX, changed_versions, read_commit, read_lineage
from mfg_assets.lake.names import (
    BRONZE_PROCESS_RUNS,
    SILVER_PROCESS_PARAMETERS,
    SILVER_PROCESS_RUNS,
)
from mfg_assets.lake.registry import table
from mfg_assets_tests.lake.test_delta import params_frame


def test_the_versions_a_commit_read_come_back_from_its_history(lake):
    spec, frame = table(SILVER_PROCESS_PARAMETERS), params_frame(date(2026, 11, 1), ["u1"])
    read = {SILVER_PROCESS_RUNS: 3, BRONZE_PROCESS_RUNS: None}  # None: did not exist
    assert read_commit(read) == {f"{READ_PREFIX}{SILVER_PROCESS_RUNS}": "3",
                                 f"{READ_PREFIX}{BRONZE_PROCESS_RUNS}": "None"}
    first = lake.overwrite(spec, frame, **read_commit(read))
    second = lake.append(spec, frame, **read_commit({SILVER_PROCESS_RUNS: 4}))
    assert read_lineage(lake, spec, first.version) == read
    assert read_lineage(lake, spec, second.version) == {SILVER_PROCESS_RUNS: 4}
    assert read_lineage(lake, spec, 99) == {}  # a version the table never had


def test_changed_versions_names_the_tables_that_moved_past_what_was_seen(lake):
    params, runs = table(SILVER_PROCESS_PARAMETERS), table(SILVER_PROCESS_RUNS)
    names = [SILVER_PROCESS_PARAMETERS, SILVER_PROCESS_RUNS]
    assert changed_versions(lake, names, {}) == {}  # neither table exists yet
    lake.append(params, params_frame(date(2026, 11, 1), ["u1"]))
    assert not lake.exists(runs)
    seen = changed_versions(lake, names, {})
    assert seen == {SILVER_PROCESS_PARAMETERS: 0}
    assert changed_versions(lake, names, seen) == {}
    lake.append(params, params_frame(date(2026, 11, 1), ["u2"]))
    assert changed_versions(lake, names, seen) == {SILVER_PROCESS_PARAMETERS: 1}
