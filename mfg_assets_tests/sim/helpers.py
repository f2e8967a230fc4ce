"""Turn a simulated message stream back into per-machine sensor series for assertions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from mfg_assets.sim import SimMessage
from mfg_assets.uns import sparkplug


def sensor_series(messages: Iterable[SimMessage]) -> dict[str, dict[str, np.ndarray]]:
    """machine_id -> {"ts": ms array, sensor: values}, from JSON readings and Sparkplug DDATA."""
    rows: dict[str, list[tuple[int, dict[str, float]]]] = defaultdict(list)
    session = sparkplug.SparkplugSession()
    for m in messages:
        if m.topic.startswith(sparkplug.NAMESPACE):
            event = session.handle(m.topic, m.payload)
            if event.message_type == "DDATA":
                values = {x["name"]: x["value"] for x in event.metrics}
                rows[event.device_id].append((m.ts_ms, values))
        elif m.topic.endswith("/sensors"):
            machine = m.topic.split("/")[5]
            values = {r["sensor"]: r["value"] for r in m.doc["readings"]}
            rows[machine].append((m.ts_ms, values))
    out: dict[str, dict[str, np.ndarray]] = {}
    for machine, samples in rows.items():
        series = {"ts": np.array([t for t, _ in samples], dtype=np.int64)}
        for name in samples[0][1]:
            series[name] = np.array([v[name] for _, v in samples])
        out[machine] = series
    return out
