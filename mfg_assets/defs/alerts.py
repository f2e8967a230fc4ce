"""Alerts: failed asset checks, freshness failures and failed runs are logged and POSTed
to a webhook.

``MFG_ALERT_WEBHOOK_URL`` (Slack/Teams/any JSON endpoint) receives one JSON message per
failure (sent by :func:`mfg_assets.monitoring.alerts.post_alert`); without it, alerts are
only logged. Three sensors, all running by default:

- ``failed_checks``: polls the event log for asset check evaluations that did not pass
  (silver ``schema``/``unique_key``, the models' ``beats_champion`` gate, ...), cursor = the
  last event storage id seen, so each failure is reported once;
- ``stale_assets``: polls the freshness state changes the Dagster daemon records for assets
  with a ``FreshnessPolicy`` (silver, features, models): an alert when one turns WARN or
  FAIL, and one when it is fresh again;
- ``failed_runs``: Dagster's run-failure sensor over the whole instance, one message per
  failed run, wherever it was launched from: this code location, another one, or a script
  (``dg.materialize`` in the demo driver and the stack); without ``monitor_all_code_locations``
  the daemon only reports runs of jobs from this code location.

The check and freshness sensors read events by log id (see ``_records``), which works on
the run-sharded SQLite instance of ``make dev``, consolidated SQLite and PostgreSQL alike.
"""


import dagster as dg

from mfg_assets.monitoring import alerts
from mfg_assets.monitoring.alerts import WEBHOOK_ENV, post_alert


def _records(instance: dg.DagsterInstance, event_type: dg.DagsterEventType, after: int | None,
             limit: int) -> list[tuple[int, dg.EventLogEntry]]:
    """(storage id, entry) of ``event_type`` events after ``after``, oldest first.

    Read by log id from the index table: one table with global ids on PostgreSQL and
    consolidated SQLite, and on the run-sharded SQLite of ``make dev`` the index shard, which
    mirrors asset, check and run-status events. ``instance.get_event_records`` refuses a plain
    id cursor there (its ids are per run shard) and is deprecated anyway.
    """
    events = instance.event_log_storage.get_logs_for_all_runs_by_log_id(
        after_cursor=-1 if after is None else after, dagster_event_type=event_type, limit=limit)
    return sorted(events.items())


def check_failures(instance: dg.DagsterInstance, after: int | None, limit: int = 100):
    """(failed check evaluations as alert messages, last storage id seen)."""
    records = _records(instance, dg.DagsterEventType.ASSET_CHECK_EVALUATION, after, limit)
    messages, last = [], after
    for storage_id, entry in records:
        last = storage_id
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            messages.append(alerts.check_failed(
                evaluation.asset_key.to_user_string(), evaluation.check_name,
                str(getattr(evaluation.severity, "value", evaluation.severity)),
                entry.run_id or None,  # "" for a runless (reported) evaluation
                evaluation.partition,
                {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}))
    return messages, last


def freshness_changes(instance: dg.DagsterInstance, after: int | None, limit: int = 100):
    """(freshness alerts: turned WARN/FAIL, or fresh again after one; last storage id seen)."""
    records = _records(instance, dg.DagsterEventType.FRESHNESS_STATE_CHANGE, after, limit)
    messages, last = [], after
    for storage_id, entry in records:
        last = storage_id
        change = entry.dagster_event.event_specific_data
        message = alerts.freshness_changed(
            change.key.to_user_string(), str(change.new_state.value),
            str(change.previous_state.value), change.state_change_timestamp)
        if message is not None:
            messages.append(message)
    return messages, last


def _poll(context: dg.SensorEvaluationContext, poll, what: str) -> dg.SkipReason:
    after = int(context.cursor) if context.cursor else None
    messages, last = poll(context.instance, after)
    for message in messages:
        post_alert(message)
    if last is not None:
        context.update_cursor(str(last))
    return dg.SkipReason(f"{len(messages)} {what} alerted")


@dg.sensor(
    name="stale_assets",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Alerts (log + {WEBHOOK_ENV}) when an asset's freshness policy turns WARN or "
    "FAIL, and when it is fresh again.",
)
def stale_assets(context: dg.SensorEvaluationContext):
    return _poll(context, freshness_changes, "freshness changes")


@dg.sensor(
    name="failed_checks",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Alerts (log + {WEBHOOK_ENV}) on every asset check that does not pass.",
)
def failed_checks(context: dg.SensorEvaluationContext):
    return _poll(context, check_failures, "failed checks")


@dg.run_failure_sensor(
    name="failed_runs",
    monitor_all_code_locations=True,
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
        "steps": step_errors(context.instance, run.run_id),
        "text": f"run {run.run_id} of {run.job_name} failed: "
                f"{context.failure_event.message or ''}",
    })


def step_errors(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> first line of its error: what on-call reads first."""
    errors = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.event_specific_data.error
        while error is not None and error.cause is not None:  # Dagster wraps the user error
            error = error.cause
        text = error.message if error else entry.dagster_event.message or ""
        errors[entry.step_key or "?"] = alerts.first_line(text)
    return errors


alert_sensors = [failed_checks, stale_assets, failed_runs]
