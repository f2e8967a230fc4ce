"""Alerts reach a real local webhook: failed checks, freshness failures, failed runs."""

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from mfg_assets.defs import alerts


class _Inbox(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


@contextmanager
def inbox() -> Iterator[tuple[str, list]]:
    """A local webhook (URL, messages received): the alert sensors' real HTTP target."""
    _Inbox.received = []
    server = HTTPServer(("127.0.0.1", 0), _Inbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Inbox.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook(monkeypatch):
    with inbox() as (url, received):
        monkeypatch.setenv(alerts.WEBHOOK_ENV, url)
        yield received


PROBE = ["silver", "alert_probe"]


@dg.asset(key=PROBE, check_specs=[dg.AssetCheckSpec("schema", asset=PROBE)])
def _probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[
        dg.AssetCheckResult(check_name="schema", passed=False, metadata={"bad_rows": 3})])


@dg.asset(key=["features", "alert_broken"])
def _broken() -> None:
    raise RuntimeError("historian export truncated")


def test_failed_check_is_posted_to_the_webhook_once(webhook):
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([_probe], instance=instance).success
    context = dg.build_sensor_context(instance=instance)
    alerts.failed_checks(context)
    (message,) = webhook
    assert message["kind"] == "asset_check_failed"
    assert (message["asset"], message["check"]) == ("silver/alert_probe", "schema")
    assert message["metadata"]["bad_rows"] == 3
    again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
    alerts.failed_checks(again)
    assert len(webhook) == 1  # reported once


def _freshness(instance: dg.DagsterInstance, key: str, old: str, new: str) -> None:
    # the event the Dagster daemon's freshness evaluation records on a state change
    instance.report_runless_asset_event(FreshnessStateChange(
        key=dg.AssetKey.from_user_string(key), previous_state=FreshnessState(old),
        new_state=FreshnessState(new), state_change_timestamp=time.time()))


def test_freshness_failures_and_recovery_are_posted_once(webhook):
    instance = dg.DagsterInstance.ephemeral()
    _freshness(instance, "silver/sensor_readings", "UNKNOWN", "PASS")  # first data: quiet
    _freshness(instance, "silver/sensor_readings", "PASS", "WARN")
    _freshness(instance, "models/sensor_anomaly", "WARN", "FAIL")
    context = dg.build_sensor_context(instance=instance)
    alerts.stale_assets(context)
    assert [(m["kind"], m["asset"], m["state"]) for m in webhook] == [
        ("freshness_warning", "silver/sensor_readings", "WARN"),
        ("freshness_failed", "models/sensor_anomaly", "FAIL"),
    ]
    _freshness(instance, "models/sensor_anomaly", "FAIL", "PASS")
    again = dg.build_sensor_context(instance=instance, cursor=context.cursor)
    alerts.stale_assets(again)
    assert len(webhook) == 3  # the earlier changes are not sent twice
    assert (webhook[-1]["kind"], webhook[-1]["previous_state"]) == ("freshness_recovered", "FAIL")


def test_failed_run_is_posted_with_its_error(webhook):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([_broken], instance=instance, raise_on_error=False,
                            tags={"mfg/trigger": "drift"})
    assert not result.success
    failure = next(e for e in result.all_events
                   if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="failed_runs", dagster_event=failure, dagster_instance=instance,
        dagster_run=result.dagster_run).for_run_failure()
    alerts.failed_runs(context)
    (message,) = webhook
    assert message["kind"] == "run_failed"
    assert message["run_id"] == result.run_id
    assert message["tags"]["mfg/trigger"] == "drift"
    assert "historian export truncated" in message["steps"]["features__alert_broken"]


def test_check_and_freshness_alerts_on_the_make_dev_instance(webhook, tmp_path, monkeypatch):
    """The run-sharded SQLite of `make dev`: the second tick (a cursor) used to raise
    'get_event_records on a run-sharded event log storage with a cursor that is not
    run-aware'. Each failure is still reported once."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage.is_run_sharded
        checks = dg.build_sensor_context(instance=instance)
        fresh = dg.build_sensor_context(instance=instance)
        alerts.failed_checks(checks)
        alerts.stale_assets(fresh)
        assert webhook == [] and checks.cursor is None
        for _ in range(2):  # two failures after the first tick, each in its own run shard
            assert dg.materialize([_probe], instance=instance).success
        _freshness(instance, "silver/sensor_readings", "PASS", "FAIL")
        for _ in range(2):  # two more ticks, each with the cursor the last one left
            checks = dg.build_sensor_context(instance=instance, cursor=checks.cursor)
            fresh = dg.build_sensor_context(instance=instance, cursor=fresh.cursor)
            alerts.failed_checks(checks)
            alerts.stale_assets(fresh)
    assert sorted(m["kind"] for m in webhook) == [
        "asset_check_failed", "asset_check_failed", "freshness_failed"]
    assert len({m["run_id"] for m in webhook if m["kind"] == "asset_check_failed"}) == 2
