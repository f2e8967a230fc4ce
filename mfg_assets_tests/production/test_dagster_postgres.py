"""deploy/local/dagster.yaml: a Dagster instance on PostgreSQL, configured by env vars only."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.integration

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "local" / "dagster.yaml"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture
def pg_database():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    admin.autocommit = True
    name = f"mfg_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@dg.asset(tags={"mfg/workload": "training"})
def tiny() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def test_instance_from_deploy_yaml_stores_runs_and_events_in_postgres(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_DB": pg_database,
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",  # trust auth here; a Secret in a deployment
    }.items():
        monkeypatch.setenv(name, value)

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        limits = {
            (lim["key"], lim.get("value")): lim["limit"]
            for lim in coordinator.get_run_queue_config().tag_concurrency_limits
        }
        assert limits[("mfg/workload", "training")] == 2
        result = dg.materialize([tiny], instance=instance)
        assert result.success
        run_id = result.run_id

    # A second instance (another process, the webserver) reads the same history back.
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).is_success
        event = instance.get_latest_materialization_event(dg.AssetKey("tiny"))
        assert event is not None and event.run_id == run_id
        assert event.asset_materialization.metadata["rows"].value == 3
    import psycopg2

    with psycopg2.connect(dbname=pg_database, **PG) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] == 1
