"""The closed loop: drift in the live plant -> a promoted bundle, every run after the onset
launched by the Dagster daemon (real daemon, gateway, edge runtimes, broker). Minutes long
(seed ~1 min, loop ~6 min on two idle cores): marked integration and slow, run in CI."""

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
