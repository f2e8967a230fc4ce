"""The loop's plain parts: cadence knobs, drift retrain requests, the stage timeline."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.test_utils import create_run_for_test

from mfg_assets.defs.automation import PRIORITY_TAG
from mfg_assets.defs.drift import (
    DRIFT_GATE_HOURS,
    FAMILIES_TAG,
    WORKLOAD_TAG,
    busy_families,
    relaunch,
    retrain_requests,
)
from mfg_assets.loop.scenario import (
    LoopConfig,
    history_config,
    history_hours,
    kinds_of_time,
    live_config,
    live_day,
)
from mfg_assets.loop.watch import STAGES, Timeline, declarations, launched_by
from mfg_assets.ml.drift import refusal_backoff
from mfg_assets.plant_calendar import PlantCalendar
from mfg_assets.settings import PACKAGE_DIR, rollout_cadence, sensor_interval

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_cadences_keep_production_defaults_unless_overridden(monkeypatch):
    monkeypatch.delenv("MFG_SENSOR_INTERVAL_S", raising=False)
    monkeypatch.delenv("MFG_ROLLOUT_CRON", raising=False)
    assert sensor_interval(300) == 300 and rollout_cadence() == "*/10 * * * *"
    monkeypatch.setenv("MFG_SENSOR_INTERVAL_S", "5")
    monkeypatch.setenv("MFG_ROLLOUT_CRON", "* * * * *")
    assert sensor_interval(300) == 5 and rollout_cadence() == "* * * * *"
    monkeypatch.setenv("MFG_SENSOR_INTERVAL_S", "0")
    with pytest.raises(ValueError, match="must be at least 1"):
        sensor_interval(30)
    monkeypatch.setenv("MFG_SENSOR_INTERVAL_S", "fast")
    with pytest.raises(ValueError, match="MFG_SENSOR_INTERVAL_S='fast': expected a whole"):
        sensor_interval(30)


def test_rollout_evidence_minimums_come_from_the_environment_when_a_run_starts(monkeypatch):
    """Read when a run builds its policy, not when the definitions are imported: the same
    imported config class follows a changed environment (the loop's run workers inherit it),
    and an explicit run config still wins."""
    from mfg_assets.defs.edge import RolloutConfig

    monkeypatch.delenv("MFG_ROLLOUT_MIN_PREDICTIONS", raising=False)
    monkeypatch.delenv("MFG_ROLLOUT_MIN_LABELLED", raising=False)
    policy = RolloutConfig().settings().policy
    assert (policy.min_predictions, policy.min_labelled) == (50, 30)
    monkeypatch.setenv("MFG_ROLLOUT_MIN_PREDICTIONS", "20")
    monkeypatch.setenv("MFG_ROLLOUT_MIN_LABELLED", "10")
    policy = RolloutConfig().settings().policy
    assert (policy.min_predictions, policy.min_labelled) == (20, 10)
    policy = RolloutConfig(min_predictions=7).settings().policy
    assert (policy.min_predictions, policy.min_labelled) == (7, 10)
    monkeypatch.setenv("MFG_ROLLOUT_MIN_LABELLED", "0")
    with pytest.raises(ValueError, match="MFG_ROLLOUT_MIN_LABELLED='0': must be at least 1"):
        RolloutConfig().settings()


def test_the_instance_limits_the_training_workload_the_drift_sensor_tags():
    doc = yaml.safe_load((PACKAGE_DIR.parent / "dagster.yaml").read_text())
    limits = doc["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": WORKLOAD_TAG, "value": "training", "limit": 1} in limits


def _drifted(*families: str) -> pl.DataFrame:
    return pl.DataFrame({"family": list(families), "evidence_id": [f"e-{f}" for f in families],
                         "reason": [f"{f} drifted" for f in families],
                         "computed_at": [T0] * len(families)},
                        schema_overrides={"computed_at": pl.Datetime("us", "UTC")})


def test_one_prioritised_retrain_per_family_and_busy_families_wait():
    drifted = _drifted("failure_forecast", "sensor_anomaly")
    requests, cursor = retrain_requests(drifted, {}, budget=2)
    # the edge-served family first: the queue takes runs in the order they arrive
    assert [r.tags[FAMILIES_TAG] for r in requests] == ["sensor_anomaly", "failure_forecast"]
    anomaly = requests[0]
    assert {k.to_user_string() for k in anomaly.asset_selection} == {
        "features/sensor_windows", "models/sensor_anomaly", "models/sensor_anomaly_champion"}
    # the edge-served family goes first; both are training workload (one at a time)
    assert anomaly.tags[PRIORITY_TAG] == "20" and requests[1].tags[PRIORITY_TAG] == "10"
    assert {r.tags[WORKLOAD_TAG] for r in requests} == {"training"}
    # the retrain's gate judges on recent rows (the data the model will face)
    assert anomaly.run_config == {"ops": {"models__sensor_anomaly": {"config": {
        "gate_recent_hours": DRIFT_GATE_HOURS, "budget": 2}}}}
    assert cursor == {"failure_forecast": "e-failure_forecast",
                      "sensor_anomaly": "e-sensor_anomaly"}

    waiting, cursor = retrain_requests(drifted, {}, busy={"failure_forecast"})
    assert [r.tags[FAMILIES_TAG] for r in waiting] == ["sensor_anomaly"]
    assert "failure_forecast" not in cursor  # acted on later, once its retrain is done
    # no budget override: the models' default; the recent-window gate all the same
    assert waiting[0].run_config == {"ops": {"models__sensor_anomaly": {"config": {
        "gate_recent_hours": DRIFT_GATE_HOURS}}}}
    again, _ = retrain_requests(drifted, cursor, busy={"failure_forecast"})
    assert again == []


def test_busy_while_a_drift_retrain_runs_and_for_evidence_older_than_its_end():
    instance = dg.DagsterInstance.ephemeral()
    drifted = _drifted("sensor_anomaly")
    assert busy_families(instance, drifted) == set()
    created = create_run_for_test(instance, job_name="retrain", status=dg.DagsterRunStatus.STARTED,
                                  tags={"mfg/trigger": "drift", FAMILIES_TAG: "sensor_anomaly"})
    assert busy_families(instance, drifted) == {"sensor_anomaly"}
    instance.report_dagster_event(  # it started (a model was tried) ...
        DagsterEvent(DagsterEventType.RUN_START.value, job_name="retrain"), created.run_id)
    instance.report_run_failed(created)  # ... and ended now: the evidence from T0 is older
    assert busy_families(instance, drifted) == {"sensor_anomaly"}
    fresh = drifted.with_columns(pl.lit(datetime.now(UTC) + timedelta(minutes=1))
                                 .cast(pl.Datetime("us", "UTC")).alias("computed_at"))
    assert busy_families(instance, fresh) == set()


def test_a_family_with_a_new_champion_from_a_drift_retrain_cools_down():
    instance = dg.DagsterInstance.ephemeral()
    created = create_run_for_test(instance, job_name="retrain", status=dg.DagsterRunStatus.STARTED,
                                  tags={"mfg/trigger": "drift", FAMILIES_TAG: "sensor_anomaly"})
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_START.value, job_name="retrain"), created.run_id)
    instance.report_dagster_event(  # the gate passed: the champion step ran, the run succeeded
        DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name="retrain"), created.run_id)
    ended = datetime.fromtimestamp(instance.get_run_record_by_id(created.run_id).end_time, UTC)
    later = _drifted("sensor_anomaly").with_columns(  # a report that saw the new champion
        pl.lit(ended + timedelta(minutes=1)).cast(pl.Datetime("us", "UTC")).alias("computed_at"))
    hour = timedelta(hours=1)
    assert busy_families(instance, later, cooldown=6 * hour, now=ended + hour) == {
        "sensor_anomaly"}
    assert busy_families(instance, later, cooldown=6 * hour, now=ended + 7 * hour) == set()


def _finished_retrain(instance, status: dg.DagsterRunStatus) -> datetime:
    """A drift retrain of sensor_anomaly that started and ended now with ``status``."""
    run = create_run_for_test(instance, job_name="retrain", status=dg.DagsterRunStatus.STARTED,
                              tags={"mfg/trigger": "drift", FAMILIES_TAG: "sensor_anomaly"})
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_START.value, job_name="retrain"), run.run_id)
    if status == dg.DagsterRunStatus.SUCCESS:
        instance.report_dagster_event(
            DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name="retrain"), run.run_id)
    else:
        instance.report_run_failed(run)  # the gate refused: the champion step failed
    return datetime.fromtimestamp(instance.get_run_record_by_id(run.run_id).end_time, UTC)


def test_refused_drift_retrains_back_off_more_after_each_refusal():
    assert [refusal_backoff(n).total_seconds() / 60 for n in range(1, 5)] == [0, 5, 10, 20]
    assert refusal_backoff(40) == timedelta(hours=6)  # never longer than the cooldown
    instance, hour = dg.DagsterInstance.ephemeral(), timedelta(hours=1)

    def busy(ended: datetime, after: timedelta, cooldown: timedelta = 6 * hour) -> bool:
        seen = _drifted("sensor_anomaly").with_columns(  # a report after the last retrain
            pl.lit(ended + timedelta(seconds=30)).cast(pl.Datetime("us", "UTC"))
            .alias("computed_at"))
        return "sensor_anomaly" in busy_families(instance, seen, cooldown, now=ended + after)

    ended = _finished_retrain(instance, dg.DagsterRunStatus.FAILURE)
    assert not busy(ended, timedelta(minutes=1))  # one refusal: retried at once
    ended = _finished_retrain(instance, dg.DagsterRunStatus.FAILURE)
    assert busy(ended, timedelta(minutes=4)) and not busy(ended, timedelta(minutes=6))
    ended = _finished_retrain(instance, dg.DagsterRunStatus.FAILURE)
    assert busy(ended, timedelta(minutes=9)) and not busy(ended, timedelta(minutes=11))
    # a new champion ends the series: the next refusal is retried at once (were the three
    # before it counted, it would wait 20 minutes); no cooldown here, to see just that
    ended = _finished_retrain(instance, dg.DagsterRunStatus.SUCCESS)
    assert busy(ended, 5 * hour) and not busy(ended, 7 * hour)
    ended = _finished_retrain(instance, dg.DagsterRunStatus.FAILURE)
    assert not busy(ended, timedelta(minutes=1), cooldown=timedelta(0))


def test_timeline_order_and_launchers():
    t = Timeline(T0, "sensor_anomaly", "1")
    for i, stage in enumerate(STAGES):
        t.stages[stage] = T0 + timedelta(seconds=10 * i)
    assert t.in_order() and t.time_to_recover_s == 10 * (len(STAGES) - 1)
    t.stages["silver"] = T0 + timedelta(hours=1)  # after the drift verdict: out of order
    assert not t.in_order()
    assert launched_by({"dagster/sensor_name": "model_drift"}) == "model_drift"
    assert launched_by({"dagster/from_automation_condition": "true"}) == "automation"
    assert launched_by({}) == "script"


def test_live_day_is_today_and_history_ends_where_it_starts():
    config = LoopConfig()
    day = live_day(T0)
    assert day == datetime(2026, 11, 22, tzinfo=UTC)
    history, live = history_config(config, day), live_config(config, day)
    assert history.end_ms == live.start_ms
    assert live.drift_start_ms("sensor_replacement") == live.start_ms
    assert live.end_ms < (day + timedelta(days=1)).timestamp() * 1000
    with pytest.raises(ValueError, match="at least 24 h"):
        LoopConfig(history_h=12)


def test_a_retrain_that_never_started_is_requested_again():
    instance = dg.DagsterInstance.ephemeral()
    drifted = _drifted("sensor_anomaly")
    requests, acted = retrain_requests(drifted, {})
    lost = create_run_for_test(instance, job_name="retrain", status=dg.DagsterRunStatus.FAILURE,
                               tags={"mfg/trigger": "drift", FAMILIES_TAG: "sensor_anomaly"})
    assert relaunch(instance) == {"sensor_anomaly": lost.run_id}  # no start time recorded
    assert busy_families(instance, drifted) == set()
    (again,) = retrain_requests(drifted, acted, retry=relaunch(instance))[0]
    assert again.run_key != requests[0].run_key  # a new key: the old one is spent
    assert retrain_requests(drifted, acted)[0] == []  # without the lost run: acted on once


def test_deployment_automation_is_its_own_sensor_with_a_queue_priority():
    from mfg_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    deployment = defs.resolve_sensor_def("deployment_automation")
    routine = defs.resolve_sensor_def("automation")
    edge = {dg.AssetKey(["edge", "bundles"]), dg.AssetKey(["edge", "rollouts"])}
    assert deployment.asset_selection.resolve(graph) == edge
    assert not routine.asset_selection.resolve(graph) & edge  # evaluated once, not twice
    # behind drift retrains (10-20), ahead of routine runs (0)
    assert 0 < int(deployment.run_tags[PRIORITY_TAG]) < 10


def test_the_history_holds_every_kind_of_time_of_the_live_day():
    """The drift report compares like for like (day type and shift): a Monday's 48 h of
    history is a weekend on the plant's clock, and a UTC Saturday's live day is mostly a
    weekend, which the 72 h before it do not hold."""
    calendar, config = PlantCalendar(), LoopConfig()
    monday = datetime(2026, 12, 7, tzinfo=UTC)
    assert not kinds_of_time(monday, 24, calendar) <= kinds_of_time(
        monday - timedelta(hours=48), 48, calendar)  # why 48 h was not enough
    for offset in range(7):
        day = monday + timedelta(days=offset)
        hours = history_hours(config, day, calendar)
        assert hours >= 72  # three days for the day-to-day spread
        assert kinds_of_time(day, 24, calendar) <= kinds_of_time(
            day - timedelta(hours=hours), hours, calendar), day
        assert hours == (144 if day.weekday() == 5 else 72), day
    history = history_config(config, monday)
    assert history.duration_h == 72 and history.end_ms == live_config(config, monday).start_ms


def test_the_control_run_has_no_drift():
    day = datetime(2026, 12, 7, tzinfo=UTC)
    assert live_config(LoopConfig(scenario=None), day).drift == ()
    assert [d.name for d in live_config(LoopConfig(), day).drift] == ["sensor_replacement"]
    with pytest.raises(ValueError, match="the loop runs 'sensor_replacement' or None"):
        LoopConfig(scenario="camera_lighting")


def _drift_rows(evaluations: list[tuple[datetime, dict[str, set[str]], bool]]) -> pl.DataFrame:
    """monitoring.drift rows: per evaluation, family -> drifted input segments, and
    whether the family was declared drifted."""
    rows = []
    for at, drifted, family_drifted in evaluations:
        for family, segments in drifted.items():
            for segment in ("weld-01", "weld-02", "press-01"):
                rows.append({"family": family, "computed_at": at, "kind": "input",
                             "segment": segment, "drifted": segment in segments,
                             "family_drifted": family_drifted})
    return pl.DataFrame(rows, schema_overrides={"computed_at": pl.Datetime("us", "UTC")})


def test_declared_segments_are_the_ones_that_persisted_after_the_onset():
    minute = timedelta(minutes=1)
    rows = _drift_rows([
        (T0 - minute, {"sensor_anomaly": {"weld-01"}}, False),  # before the onset
        (T0, {"sensor_anomaly": {"weld-01", "weld-02"}}, True),  # weld-01 persisted
        (T0 + minute, {"sensor_anomaly": {"press-01"}}, False),  # once only: not yet
        (T0 + 2 * minute, {"sensor_anomaly": set()}, False),
    ])
    d = declarations(rows, T0)
    assert d.evaluations == {"sensor_anomaly": 3} and d.declared == {"sensor_anomaly": 1}
    assert d.segments == {"sensor_anomaly": ("weld-01",)}
    assert d.first_declared == {"sensor_anomaly": T0}
    assert d.untouched("weld-02") == ("weld-01",) and d.untouched("weld-01") == ()
    # history before the onset counts, but a declaration before it is not one of the run's
    assert declarations(rows, T0 + minute).segments == {"sensor_anomaly": ()}
    # one evaluation is never enough with persistence 2; with 1 it is
    single = _drift_rows([(T0, {"sensor_anomaly": {"weld-02"}}, False)])
    assert declarations(single, T0).segments == {"sensor_anomaly": ()}
    assert declarations(single, T0, persistence=1).segments == {"sensor_anomaly": ("weld-02",)}
