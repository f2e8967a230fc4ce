"""Every sensor of the code location ticks through the Dagster daemon on the instances users
run: the run-sharded SQLite of ``make dev`` (the project's ``dagster.yaml``) and PostgreSQL
(``deploy/local/dagster.yaml``), not only ``DagsterInstance.ephemeral()``.

The code location is served the way ``make dev`` serves it (``workspace.yaml``, a gRPC code
server in a subprocess), and the sensors are evaluated by the daemons' own iteration
functions: the sensor daemon for plain and run-status sensors, the asset daemon for the
automation-condition sensors (it evaluates their conditions and records a tick). These are
Dagster internals (``dagster._daemon``) pinned with dagster itself; they are what
``dagster-daemon`` runs each pass.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.asset_daemon import AssetDaemon
from dagster._daemon.sensor import execute_sensor_iteration

from mfg_assets.defs import alerts
from mfg_assets_tests.defs.test_alerts import _broken, _probe, inbox
from mfg_assets_tests.postgres import PG, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


@pytest.fixture
def pg_database() -> Iterator[str]:
    yield from fresh_database("mfg_sensors")


@pytest.fixture(params=["make_dev_sqlite", "postgres"])
def instance(request, data_dir: Path, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """A DAGSTER_HOME made as `make dev` makes it (or as deploy/ does, for PostgreSQL)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    if request.param == "postgres":
        database = request.getfixturevalue("pg_database")
        shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
        for name, value in {"DAGSTER_PG_HOST": PG["host"], "DAGSTER_PG_PORT": str(PG["port"]),
                            "DAGSTER_PG_DB": database, "DAGSTER_PG_USERNAME": PG["user"],
                            "DAGSTER_PG_PASSWORD": "",
                            # compute logs go to S3 (not tested here): an endpoint that
                            # refuses; a failed upload is reported, the run is unaffected
                            "DAGSTER_COMPUTE_LOG_BUCKET": "logs",
                            "DAGSTER_COMPUTE_LOG_PREFIX": "test",
                            "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
            monkeypatch.setenv(name, value)
    else:
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        storage = type(instance.event_log_storage).__name__
        if request.param == "postgres":
            assert storage == "PostgresEventLogStorage"
        else:  # the case the alert sensors failed on: ids are per run shard
            assert instance.event_log_storage.is_run_sharded, storage
        yield instance


@contextmanager
def code_location(instance: dg.DagsterInstance):
    """The workspace of `make dev` (workspace.yaml), its code server a subprocess."""
    target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
    with create_test_daemon_workspace_context(target, instance) as context:
        yield context


def daemon_pass(context, at: float) -> None:
    """One pass of both daemons at time ``at`` (later passes clear the sensors' intervals)."""
    with freeze_time(at):
        list(execute_sensor_iteration(context, log, threadpool_executor=None,
                                      submit_threadpool_executor=None))
        AssetDaemon(settings=context.instance.get_auto_materialize_settings(),
                    pre_sensor_interval_seconds=0)._run_iteration_impl(
            context, threadpool_executor=None, amp_tick_futures={}, debug_crash_flags={})


def remote_sensors(context) -> dict:
    entries = context.create_request_context().get_code_location_entries()
    (entry,) = entries.values()
    assert entry.code_location is not None, entry.load_error
    (repo,) = entry.code_location.get_repositories().values()
    return {sensor.name: sensor for sensor in repo.get_sensors()}


def ticks(instance: dg.DagsterInstance, sensor) -> list:
    return instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id)


def test_every_sensor_ticks_and_alerts_once_on_the_instances_users_run(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    from mfg_assets.definitions import defs

    expected = {sensor.name for sensor in defs.get_repository_def().sensor_defs}
    with inbox() as (url, received):
        monkeypatch.setenv(alerts.WEBHOOK_ENV, url)  # before the code server starts
        with code_location(instance) as context:
            sensors = remote_sensors(context)
            assert set(sensors) == expected  # workspace.yaml serves this Definitions
            for sensor in sensors.values():  # a sensor shipped stopped is still tested
                state = sensor.get_current_instigator_state(
                    instance.get_instigator_state(sensor.get_remote_origin_id(),
                                                  sensor.selector_id))
                if not state.is_running:
                    instance.start_sensor(sensor)

            start = time.time()
            daemon_pass(context, start)  # empty lakehouse, empty instance
            # a failed check and a failed run, both launched outside the code location
            assert dg.materialize([_probe], instance=instance).success
            failed = dg.materialize([_broken], instance=instance, raise_on_error=False)
            assert not failed.success
            daemon_pass(context, start + 3600)
            daemon_pass(context, start + 7200)

            for name, sensor in sorted(sensors.items()):
                history = ticks(instance, sensor)
                assert history, f"{name} never ticked"
                errors = [t.error.to_string() for t in history if t.status == TickStatus.FAILURE]
                assert not errors, f"{name} failed on {type(instance.event_log_storage)}: {errors}"

    checks = [m for m in received if m["kind"] == "asset_check_failed"]
    assert [(m["asset"], m["check"]) for m in checks] == [("silver/alert_probe", "schema")]
    runs = [m for m in received if m["kind"] == "run_failed"]
    assert [m["run_id"] for m in runs] == [failed.run_id]  # exactly once, over two passes
    assert "historian export truncated" in runs[0]["steps"]["features__alert_broken"]
    assert failed.run_id in runs[0]["text"]
