"""Edge device heartbeats: health figures and a few recent log lines.

CPU follows the line's load (camera edges run vision inference, so they are busier),
memory creeps up with uptime until the runtime restarts, and now and then a WARNING or
ERROR shows up in the logs. High figures or an error degrade the reported status.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mfg_assets.sim.config import Edge, SimConfig
from mfg_assets.sim.messages import SimMessage, json_message
from mfg_assets.sim.rng import rng_for
from mfg_assets.sim.schedule import ar1, shift_level, time_grid
from mfg_assets.uns.topics import MessageClass

BASE_CPU = {"line": 14.0, "camera": 42.0}
LOAD_CPU = {"line": 14.0, "camera": 28.0}
MEM_BASE = 34.0
MEM_LEAK_PER_H = 0.25  # a slow leak in the runtime, reset by restarts
MEM_WARN = 88.0
MEM_RESTART = 94.0
RESTART_RATE_PER_DAY = 0.3

INFO = (
    "heartbeat ok; mqtt connected",
    "buffer flushed to broker",
    "config unchanged",
    "ntp sync ok",
)
WARNINGS = {
    "line": (
        "mqtt reconnect after {x:.1f} s",
        "publish queue depth {n} above 500",
        "clock drift {n} ms against NTP",
        "disk usage {n}%",
    ),
    "camera": (
        "inference latency {n} ms above budget 150 ms",
        "mqtt reconnect after {x:.1f} s",
        "frame dropped: exposure not settled",
        "disk usage {n}%",
    ),
}
ERRORS = {
    "line": ("PLC read timeout on port {n}",),
    "camera": ("camera frame timeout after {n} ms",),
}


def _line(rng: np.random.Generator, level: str, templates: tuple[str, ...]) -> dict[str, str]:
    text = templates[int(rng.integers(0, len(templates)))]
    return {
        "level": level,
        "message": text.format(x=rng.uniform(0.5, 9.0), n=int(rng.integers(80, 990))),
    }


def edge_messages(config: SimConfig, edge: Edge) -> Iterator[SimMessage]:
    plant = config.plant
    topic = plant.topic(edge.area, edge.line, edge.cell, edge.edge_id, MessageClass.TELEMETRY)
    dt = config.telemetry_period_s
    period_ms = round(dt * 1000)
    eid = edge.edge_id
    phase = int(rng_for(config.seed, "telemetry-phase", eid).integers(0, period_ms))
    ts = time_grid(config, dt, phase, 300, rng_for(config.seed, "telemetry-jitter", eid))
    n = len(ts)
    load = shift_level(config, ts)
    cpu = BASE_CPU[edge.kind] + LOAD_CPU[edge.kind] * load
    cpu = cpu + ar1(rng_for(config.seed, "telemetry-cpu", eid), n, dt, 600.0, 4.0)
    spike_at = rng_for(config.seed, "telemetry-spike-at", eid).random(n) < 0.01
    spikes = np.where(spike_at, rng_for(config.seed, "telemetry-spike", eid).uniform(20, 45, n), 0)
    cpu = np.clip(cpu + spikes, 0.5, 100.0)
    mem_noise = rng_for(config.seed, "telemetry-mem", eid).normal(0.0, 0.4, n)
    logs_rng = rng_for(config.seed, "telemetry-logs", eid)
    restart_p = RESTART_RATE_PER_DAY * dt / 86_400.0

    # Running for a few days before the run (the leak reaches the restart level in ~10 days).
    uptime_s = float(rng_for(config.seed, "telemetry-uptime", eid).uniform(0.5, 6.0) * 86_400.0)
    last_t = int(ts[0]) if n else config.start_ms
    cpu_list = np.round(cpu, 1).tolist()
    for k, t in enumerate(ts.tolist()):
        uptime_s += (t - last_t) / 1000.0
        last_t = t
        logs: list[dict[str, Any]] = []
        mem = MEM_BASE + MEM_LEAK_PER_H * (uptime_s / 3600.0)
        if mem >= MEM_RESTART or logs_rng.random() < restart_p:
            reason = "memory limit" if mem >= MEM_RESTART else "watchdog"
            logs.append({"level": "WARNING", "message": f"runtime restart ({reason})"})
            uptime_s = float(logs_rng.uniform(20.0, 90.0))  # seconds since it came back
            logs.append(
                {"level": "INFO", "message": f"edge runtime started, firmware {edge.firmware}"}
            )
            mem = MEM_BASE + MEM_LEAK_PER_H * (uptime_s / 3600.0)
        mem = float(np.clip(mem + mem_noise[k], 0.0, 100.0))
        logs.append({"level": "INFO", "message": INFO[int(logs_rng.integers(0, len(INFO)))]})
        u = logs_rng.random()
        if u < 0.004:
            logs.append(_line(logs_rng, "ERROR", ERRORS[edge.kind]))
        elif u < 0.04:
            logs.append(_line(logs_rng, "WARNING", WARNINGS[edge.kind]))
        if mem > MEM_WARN:
            logs.append({"level": "WARNING", "message": f"memory usage {mem:.0f}%"})
        has_error = any(line["level"] == "ERROR" for line in logs)
        status = "degraded" if cpu_list[k] > 90.0 or mem > MEM_WARN or has_error else "online"
        doc = {
            "timestamp": t,
            "status": status,
            "firmware": edge.firmware,
            "cpuPct": cpu_list[k],
            "memPct": round(mem, 1),
            "uptimeS": round(uptime_s, 1),
            "logs": logs,
        }
        yield json_message(t, topic, doc)
