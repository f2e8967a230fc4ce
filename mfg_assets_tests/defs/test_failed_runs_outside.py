"""Issue 13, defect 11 (fast): ``failed_runs`` fires for a run launched outside the code
location (``dg.materialize`` in a script, like the demo driver and the stack), on the
on-disk instance ``make dev`` uses (the project's ``dagster.yaml``, run-sharded SQLite).

The sensor is evaluated as the daemon evaluates it: through its tick function, with the
code location origin the daemon gives a sensor of ``workspace.yaml``'s location. The run
carries no code location (``remote_job_origin`` is None); before the fix the sensor only
matched runs of its own location and never posted. The slow, whole-daemon version is
``test_sensors_on_instances.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.sensor_definition import SensorEvaluationContext
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from mfg_assets.defs import alerts
from mfg_assets_tests.defs.test_alerts import _broken, inbox

REPO = Path(__file__).resolve().parents[2]
LOCATION = InProcessCodeLocationOrigin(
    loadable_target_origin=LoadableTargetOrigin(module_name="mfg_assets.definitions"),
    location_name="mfg_assets",  # workspace.yaml's location_name
)


@pytest.fixture
def make_dev_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.event_log_storage.is_run_sharded  # the make dev instance
        yield instance


def tick(sensor: dg.RunStatusSensorDefinition, instance, cursor: str | None) -> str | None:
    """One evaluation as the daemon does it (its location origin and repository name)."""
    context = SensorEvaluationContext(
        instance_ref=None,
        instance=instance,
        cursor=cursor,
        repository_name="__repository__",
        sensor_name=sensor.name,
        code_location_origin=LOCATION,
    )
    return sensor.evaluate_tick(context).cursor


def test_a_run_failed_outside_the_code_location_alerts_once(make_dev_instance, monkeypatch):
    instance = make_dev_instance
    # the sensor's body, watching only its own code location: what failed_runs was before
    @dg.run_failure_sensor(name="own_location_only")
    def own_location_only(context: dg.RunFailureSensorContext) -> None:
        alerts.post_alert({"kind": "run_failed", "run_id": context.dagster_run.run_id})

    with inbox() as (url, received):
        monkeypatch.setenv(alerts.WEBHOOK_ENV, url)
        cursor = tick(alerts.failed_runs, instance, None)  # the first tick sets the cursor
        old_cursor = tick(own_location_only, instance, None)
        assert received == []
        failed = dg.materialize([_broken], instance=instance, raise_on_error=False)
        assert not failed.success and failed.dagster_run.remote_job_origin is None
        cursor = tick(alerts.failed_runs, instance, cursor)
        tick(alerts.failed_runs, instance, cursor)  # a later tick does not send it again
        assert [m["run_id"] for m in received] == [failed.run_id]
        tick(own_location_only, instance, old_cursor)
        assert len(received) == 1  # the old sensor never saw it: this test catches defect 11
    (message,) = received
    assert message["kind"] == "run_failed"
    assert "historian export truncated" in message["steps"]["features__alert_broken"]
