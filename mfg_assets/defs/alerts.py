"""Alerts: failed asset checks and failed runs are logged and POSTed to a webhook.

``MFG_ALERT_WEBHOOK_URL`` (Slack/Teams/any JSON endpoint) receives one JSON message per
failure; without it, alerts are only logged. Two sensors, both running by default:

- ``failed_checks``: polls the event log for asset check evaluations that did not pass
  (silver ``schema``/``unique_key``, the models' ``beats_champion`` gate, ...), cursor = the
  last event storage id seen, so each failure is reported once;
- ``failed_runs``: Dagster's run-failure sensor, one message per failed run.
"""


import json
import logging
import os
import urllib.request
import warnings
from typing import Any

import dagster as dg

WEBHOOK_ENV = "MFG_ALERT_WEBHOOK_URL"
log = logging.getLogger(__name__)


def post_alert(message: dict[str, Any], url: str | None = None, timeout_s: float = 5.0) -> bool:
    """Log the alert and POST it as JSON to the webhook; False when not sent.

    A dead webhook must not fail the sensor (the alert is in the log either way).
    """
    url = url if url is not None else os.environ.get(WEBHOOK_ENV, "")
    log.warning("ALERT %s", json.dumps(message, sort_keys=True, default=str))
    if not url:
        return False
    request = urllib.request.Request(
        url, data=json.dumps(message, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError as exc:
        log.error("alert webhook %s failed: %s", url, exc)
        return False


def check_failures(instance: dg.DagsterInstance, after: int | None, limit: int = 100):
    """(failed check evaluations as alert messages, last storage id seen)."""
    flt = dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                                after_cursor=after)
    with warnings.catch_warnings():
        # deprecated for 2.0, but the only call that lists check evaluations of all assets
        warnings.simplefilter("ignore")
        records = instance.get_event_records(flt, limit=limit, ascending=True)
    messages, last = [], after
    for record in records:
        last = record.storage_id
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        messages.append({
            "kind": "asset_check_failed",
            "asset": evaluation.asset_key.to_user_string(),
            "check": evaluation.check_name,
            "severity": str(getattr(evaluation.severity, "value", evaluation.severity)),
            "run_id": record.run_id,
            "partition": evaluation.partition,
            "text": f"check {evaluation.check_name} failed on "
                    f"{evaluation.asset_key.to_user_string()}",
            "metadata": meta,
        })
    return messages, last


@dg.sensor(
    name="failed_checks",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Alerts (log + {WEBHOOK_ENV}) on every asset check that does not pass.",
)
def failed_checks(context: dg.SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    messages, last = check_failures(context.instance, after)
    for message in messages:
        post_alert(message)
    if last is not None:
        context.update_cursor(str(last))
    return dg.SkipReason(f"{len(messages)} failed checks alerted")


@dg.run_failure_sensor(
    name="failed_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Alerts (log + {WEBHOOK_ENV}) on every failed run.",
)
def failed_runs(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    post_alert({
        "kind": "run_failed",
        "run_id": run.run_id,
        "job": run.job_name,
        "tags": dict(run.tags),
        "text": f"run {run.run_id} of {run.job_name} failed: "
                f"{context.failure_event.message or ''}",
    })


alert_sensors = [failed_checks, failed_runs]
