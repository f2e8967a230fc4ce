"""deploy/local/dagster.yaml: a Dagster instance on PostgreSQL, configured by env vars only."""

from __future__ import annotations

import dagster as dg
import pytest

from mfg_assets_tests.production.conftest import PG

pytestmark = pytest.mark.integration


@dg.asset(tags={"mfg/workload": "training"})
def tiny() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def test_instance_from_deploy_yaml_stores_runs_and_events_in_postgres(
    pg_database: str, deploy_instance_env: dict[str, str]
):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

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
