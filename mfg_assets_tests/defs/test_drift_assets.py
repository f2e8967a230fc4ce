"""drift_report writes monitoring.drift; the drift sensor retrains once; alerts reach a webhook."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import polars as pl
import pytest

from mfg_assets.defs import alerts
from mfg_assets.defs.drift import REASON_TAG, TRIGGER_TAG, drift_report, model_drift
from mfg_assets.defs.models import MlflowResource
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.registry import table
from mfg_assets.ml import features
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver


@pytest.fixture(scope="module")
def process_units() -> pl.DataFrame:
    config = SimConfig(seed=3, duration_h=6, sources=("process",),
                       drift=[("material_lot", 4.0)])
    silver = simulate_silver(config)
    return features.process_units(silver["silver.process_runs"],
                                  silver["silver.process_parameters"])


def _report(lake, instance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [drift_report], instance=instance,
        resources={"lakehouse": LakehouseResource(root=lake.root),
                   "mlflow": MlflowResource(tracking_uri="sqlite:///unused.db")},
        run_config={"ops": {"monitoring__drift": {"config": {
            "families": ["process_yield"], "reference": "oldest",
            "reference_hours": 2.0, "recent_hours": 2.0, "plots": 2}}}},
    )


def test_drift_report_and_sensor_retrain_the_drifted_model_once(lake, process_units):
    instance = dg.DagsterInstance.ephemeral()
    units = table("features.process_units")
    t0 = process_units.get_column("ts").min()
    lake.overwrite(units, process_units.filter(pl.col("ts") < t0 + timedelta(hours=4)))
    result = _report(lake, instance)
    assert result.success
    rows = lake.read(table("monitoring.drift"))
    assert rows.height > 0 and not rows.get_column("family_drifted").any()

    resources = {"lakehouse": LakehouseResource(root=lake.root)}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    assert isinstance(model_drift(context), dg.SkipReason)  # no drift before the new lot

    lake.overwrite(units, process_units)  # the new supplier's lot arrives
    result = _report(lake, instance)
    meta = result.asset_materializations_for_node("monitoring__drift")[0].metadata
    assert "**yes**" in meta["drift"].value
    assert "data:image/png;base64," in meta["histograms/process_yield"].value

    out = model_drift(context)
    (request,) = out.run_requests
    assert request.tags[TRIGGER_TAG] == "drift"
    assert "yield_pct" in request.tags[REASON_TAG]
    assert {k.to_user_string() for k in request.asset_selection} == {
        "features/process_units", "models/process_yield", "models/process_yield_champion"}

    again = dg.build_sensor_context(instance=instance, resources=resources, cursor=out.cursor)
    assert isinstance(model_drift(again), dg.SkipReason)  # same evidence: not twice
    _report(lake, instance)  # re-evaluated, same drift
    assert isinstance(model_drift(again), dg.SkipReason)


class _Inbox(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def webhook(monkeypatch):
    _Inbox.received = []
    server = HTTPServer(("127.0.0.1", 0), _Inbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    monkeypatch.setenv(alerts.WEBHOOK_ENV, url)
    yield _Inbox.received
    server.shutdown()
    server.server_close()


PROBE = ["silver", "alert_probe"]


@dg.asset(key=PROBE, check_specs=[dg.AssetCheckSpec("schema", asset=PROBE)])
def _probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[
        dg.AssetCheckResult(check_name="schema", passed=False, metadata={"bad_rows": 3})])


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


def test_without_webhook_alerts_are_only_logged(monkeypatch):
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    assert alerts.post_alert({"kind": "test"}) is False
