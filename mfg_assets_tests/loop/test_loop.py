"""The closed loop: drift in the live plant -> a promoted bundle, every run after the onset
launched by the Dagster daemon (real daemon, gateway, edge runtimes, broker); and the
control: the same live day without drift declares nothing and retrains nothing. Minutes
long each (seed ~2 min, loop ~6 min on two idle cores): marked integration and slow, run
in CI."""

import pytest

from mfg_assets.loop.run import report, run_loop
from mfg_assets.loop.scenario import FAMILY, LoopConfig
from mfg_assets.loop.watch import STAGES
from mfg_assets_tests.brokers import Mosquitto, mosquitto_binary

# Up to the loop's timeout plus its setup; and as much again when it starts less than that
# before midnight UTC (silver follows the wall-clock day: the loop waits for the new day).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]


@pytest.fixture
def broker(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed")
    (tmp_path / "broker").mkdir()
    server = Mosquitto(tmp_path / "broker").start()
    yield server.url
    server.stop()


def test_drift_is_recovered_by_the_daemon(broker, tmp_path):
    config = LoopConfig(timeout_s=840.0, broker_url=broker)
    result = run_loop(config, root=tmp_path / "loop", log=print)
    report(result)  # the timeline in the test log (pytest -rA or a failure shows it)
    t = result.timeline
    assert t.outcome == "promoted", t.table()
    assert t.in_order(), t.table()
    assert set(STAGES) <= set(t.stages)
    # the script only watched: every run after the onset carries a sensor's tag
    assert t.runs and all(r.launched_by != "script" for r in t.runs), t.runs
    launchers = {r.launched_by for r in t.runs}
    assert {"automation", "model_drift"} <= launchers
    retrains = [r for r in t.runs if r.trigger == "drift"]
    assert retrains and all(r.launched_by == "model_drift" for r in retrains)
    # a new champion, and the promoted rollout carries it; its bundle is newer than the onset
    assert t.champion_after is not None and t.champion_after != t.champion_before
    assert t.rollout["model"] == FAMILY and t.champion_after in t.rollout["candidate_version"]
    assert t.stages["bundle"] > t.onset
    # the retrained model is better where the sensor was replaced
    before, after = result.quality["before"], result.quality["after"]
    assert after["false_alarm_rate_target"] < before["false_alarm_rate_target"]
    # the replaced sensor's machine was declared, no other machine was
    assert result.target in result.declarations.segments[FAMILY], result.declarations
    assert result.untouched_declared == (), result.declarations


# The control found false alarms of the drift decision (ml/drift.py, ml/drift_reference.py):
# untouched machines drifted raw on the first live evaluation (press-01 spindle_temp: the
# training reference held three press-01 degradation episodes; cnc-02 vibration: a real
# degradation in the live day). Labelled fault windows now leave the reference, a machine in
# an open fault is not declared, and the day-to-day cut is a Student-t quantile; CI's run of
# 2026-12-07 passed it (cnc-02 drifted once, was not declared: persistence 2).
def test_the_control_run_declares_nothing_and_retrains_nothing(broker, tmp_path):
    config = LoopConfig(scenario=None, broker_url=broker)
    result = run_loop(config, root=tmp_path / "loop", log=print)
    report(result)
    d = result.declarations
    # several evaluations of the live day: a segment could have persisted and been declared
    assert result.live_evaluations.get(FAMILY, 0) >= config.control_evaluations >= 2, (
        result.live_evaluations, result.timeline.table())
    assert result.untouched_declared == (), d
    assert not any(d.declared.values()), d
    assert result.drift_retrains == [], result.drift_retrains
    assert result.timeline.champion_after is None and result.timeline.outcome is None
