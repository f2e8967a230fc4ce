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
