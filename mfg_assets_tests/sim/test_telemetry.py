"""Edge heartbeats: plausible health figures, restarts that explain themselves, some noise."""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import pairwise

from mfg_assets.sim import SimConfig, iter_messages

CONFIG = SimConfig(seed=3, duration_h=24.0, telemetry_period_s=60.0, sources=("telemetry",))


def test_heartbeats_from_every_edge_with_mostly_healthy_status() -> None:
    by_edge: dict[str, list[dict]] = defaultdict(list)
    levels: Counter[str] = Counter()
    for m in iter_messages(CONFIG):
        by_edge[m.topic.split("/")[5]].append(m.doc)
        levels.update(line["level"] for line in m.doc["logs"])
    assert set(by_edge) == {"edge-weld1", "edge-press1", "edge-cam01", "edge-cam02"}
    docs = [d for ds in by_edge.values() for d in ds]
    assert len(docs) == 4 * 24 * 60
    statuses = Counter(d["status"] for d in docs)
    assert statuses["online"] > 0.8 * len(docs) and statuses["degraded"] > 0
    assert levels["WARNING"] > 20  # occasional, not constant
    assert levels["WARNING"] < 0.2 * len(docs)
    # Camera edges run vision inference: busier than line edges.
    cam = [d["cpuPct"] for d in by_edge["edge-cam01"]]
    line = [d["cpuPct"] for d in by_edge["edge-weld1"]]
    assert sum(cam) / len(cam) > sum(line) / len(line) + 15
    for edge, ds in by_edge.items():
        assert all(0 <= d["cpuPct"] <= 100 and 0 <= d["memPct"] <= 100 for d in ds)
        for prev, cur in pairwise(ds):
            if cur["uptimeS"] < prev["uptimeS"]:  # a restart says so in its logs
                assert any("restart" in line["message"] for line in cur["logs"]), edge


# -- device faults (mfg_assets.sim.device_faults) ---------------------------------------------

FAULTY = SimConfig(seed=2, duration_h=48.0, telemetry_period_s=60.0, sources=("telemetry",),
                   device_fault_rate_per_day=1.0)


def _beats(config: SimConfig) -> dict[str, list[dict]]:
    by_edge: dict[str, list[dict]] = defaultdict(list)
    for m in iter_messages(config):
        by_edge[m.topic.split("/")[5]].append(m.doc)
    return by_edge


def _device_truth(config: SimConfig) -> list[dict]:
    from mfg_assets.sim import ground_truth

    return [r for r in ground_truth(config) if r.get("asset") == "edge"]


def test_device_faults_are_ground_truth_in_the_machines_shape() -> None:
    from mfg_assets_tests.ml.simdata import fault_labels

    truth = _device_truth(FAULTY)
    edges = {e.edge_id for e in FAULTY.plant.edges}
    assert {r["fault_type"] for r in truth} == {"memory_leak", "thermal_throttling", "crash_loop"}
    for r in truth:
        assert r["kind"] == "fault" and r["machine_id"] in edges
        assert FAULTY.start_ms <= r["onset_ms"] < r["end_ms"] <= FAULTY.end_ms
        if r["failure_ms"] is not None:
            assert r["onset_ms"] < r["failure_ms"] < r["end_ms"] or r["truncated"]
    # they reach silver.fault_labels the way machine faults do, keyed by the device id
    labels = fault_labels(FAULTY)
    assert set(labels.get_column("fault_id")) >= {r["fault_id"] for r in truth}
    healthy = SimConfig(seed=2, duration_h=48.0, sources=("telemetry",))
    assert _device_truth(healthy) == []


def test_each_device_fault_shows_its_signature_and_its_failure() -> None:
    beats = _beats(FAULTY)
    seen = set()
    for r in _device_truth(FAULTY):
        if r["failure_ms"] is None:
            continue
        docs = beats[r["machine_id"]]
        before = [d for d in docs if r["onset_ms"] <= d["timestamp"] < r["failure_ms"]]
        at = next(d for d in docs if d["timestamp"] >= r["failure_ms"])
        last_words = " ".join(line["message"] for line in at["logs"])
        if r["fault_type"] == "memory_leak":  # memory climbs to the OOM killer
            assert before[-1]["memPct"] > 90 and before[-1]["memPct"] > before[0]["memPct"] + 20
            assert "oom-killer" in last_words and at["uptimeS"] < 120
        elif r["fault_type"] == "thermal_throttling":  # hot, throttled, then shut down
            assert before[-1]["tempC"] > 88 and before[0]["tempC"] < 75, r
            assert any("throttled" in line["message"] for d in before for line in d["logs"])
            assert "thermal shutdown" in last_words
        else:  # a crash loop: many restarts, then the watchdog gives up
            crashes = sum("crashed" in line["message"] for d in before for line in d["logs"])
            assert crashes >= 5, r
            assert "watchdog: giving up" in last_words
        if r["fault_type"] != "memory_leak":  # the device is off until it comes back
            assert not [d for d in docs if at["timestamp"] < d["timestamp"] < r["end_ms"]], r
        seen.add(r["fault_type"])
    assert seen == {"memory_leak", "thermal_throttling", "crash_loop"}


def test_device_faults_leave_the_heartbeats_before_them_unchanged() -> None:
    """Faults draw from their own random streams: a healthy run is the faulty one's past."""
    healthy = _beats(SimConfig(seed=2, duration_h=48.0, sources=("telemetry",)))
    faulty = _beats(FAULTY)
    first = {r["machine_id"]: r["onset_ms"] for r in reversed(_device_truth(FAULTY))}
    for edge, docs in healthy.items():
        cut = first.get(edge, FAULTY.end_ms)
        assert [d for d in docs if d["timestamp"] < cut] == [
            d for d in faulty[edge] if d["timestamp"] < cut]
        assert max(d["tempC"] for d in docs) < 80  # a healthy device never throttles
