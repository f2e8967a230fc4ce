"""Edge device heartbeats: health figures and a few recent log lines.

CPU follows the line's load (camera edges run vision inference, so they are busier),
temperature follows CPU, memory creeps up with uptime until the runtime restarts, and now
and then a WARNING or ERROR shows up in the logs. High figures or an error degrade the
reported status. Device faults (``sim/device_faults.py``: memory leak, thermal throttling,
crash loop) add their own course and log lines; a device that is down sends nothing.

Log lines are templates with variable parts (numbers, hex addresses, ids), as real logs
are, so a template miner (``ml/features.py``) can count them per window.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mfg_assets.sim.config import Edge, SimConfig
from mfg_assets.sim.device_faults import THROTTLE_C, Effects, effects, plan_edge_faults
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
BASE_TEMP = {"line": 44.0, "camera": 52.0}  # degrees C at idle
TEMP_PER_CPU = 0.18  # degrees C per CPU percent

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
# What each device fault writes while it runs (WARNING), and at its failure (ERROR).
FAULT_WARNINGS = {
    "memory_leak": ("gc pause {n} ms, heap {x:.1f} MB above budget",
                    "allocation of {n} kB took {x:.1f} ms"),
    "thermal_throttling": ("cpu throttled to {n} MHz at {x:.1f} C",
                           "fan speed {n} rpm below target"),
    "crash_loop": ("worker 0x{h} exited with code {n}",),
}
FAULT_ERRORS = {
    "memory_leak": "oom-killer: killed process mfg-edge pid {n}",
    "thermal_throttling": "thermal shutdown at {x:.1f} C",
    "crash_loop": "watchdog: giving up after {n} restarts",
}
CRASH_ERROR = "worker 0x{h} crashed: segfault at 0x{a}"


def _line(rng: np.random.Generator, level: str, templates: tuple[str, ...]) -> dict[str, str]:
    text = templates[int(rng.integers(0, len(templates)))]
    return {
        "level": level,
        "message": text.format(x=rng.uniform(0.5, 9.0), n=int(rng.integers(80, 990))),
    }


def _fault_line(rng: np.random.Generator, level: str, text: str, x: float) -> dict[str, str]:
    return {"level": level, "message": text.format(
        x=x, n=int(rng.integers(80, 990)), h=f"{int(rng.integers(0, 2**32)):08x}",
        a=f"{int(rng.integers(0, 2**48)):012x}")}


def _active_fault(faults: list, t: int) -> str | None:
    for fault in faults:
        if fault.onset_ms <= t < fault.failure_ms:
            return fault.fault_type
    return None


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
    # Device faults draw from their own streams: a healthy fleet's heartbeats are unchanged.
    faults = plan_edge_faults(config, eid)
    base_temp = BASE_TEMP[edge.kind] + TEMP_PER_CPU * cpu
    base_temp = base_temp + ar1(rng_for(config.seed, "telemetry-temp", eid), n, dt, 1800.0, 0.8)
    fx: Effects = effects(faults, ts, dt, base_temp, rng_for(config.seed, "device-fx", eid))
    temp = base_temp + fx.temp_extra
    # throttling: the same work at a lower clock shows as more CPU
    cpu = np.clip(cpu + np.clip(temp - THROTTLE_C, 0.0, None) * 1.5, 0.5, 100.0)
    fault_rng = rng_for(config.seed, "device-logs", eid)

    # Running for a few days before the run (the leak reaches the restart level in ~10 days).
    uptime_s = float(rng_for(config.seed, "telemetry-uptime", eid).uniform(0.5, 6.0) * 86_400.0)
    last_t = int(ts[0]) if n else config.start_ms
    cpu_list = np.round(cpu, 1).tolist()
    temp_list = np.round(temp, 1).tolist()
    restarts_in_loop, was_down = 0, False
    for k, t in enumerate(ts.tolist()):
        uptime_s += (t - last_t) / 1000.0
        last_t = t
        if fx.down[k]:
            was_down = True
            continue  # the device is off: no heartbeat
        logs: list[dict[str, Any]] = []
        if was_down:  # back after a shutdown: a fresh boot
            was_down = False
            uptime_s = float(logs_rng.uniform(20.0, 90.0))
            logs.append({"level": "INFO", "message": f"device booted, firmware {edge.firmware}"})
        leak = MEM_LEAK_PER_H * (uptime_s / 3600.0)
        mem = MEM_BASE + leak + fx.mem_extra[k]
        # a leaking runtime is killed by the OOM killer (its failure), not by its own limit
        limit_hit = MEM_BASE + leak >= MEM_RESTART and not fx.leaking[k]
        failed = fx.failure_type[k]
        if failed == "memory_leak" or fx.crash[k] or limit_hit or logs_rng.random() < restart_p:
            if failed == "memory_leak":
                logs.append(_fault_line(fault_rng, "ERROR", FAULT_ERRORS[failed], mem))
                reason = "out of memory"
            elif fx.crash[k]:
                restarts_in_loop += 1
                logs.append(_fault_line(fault_rng, "ERROR", CRASH_ERROR, 0.0))
                reason = "worker crash"
            else:
                reason = "memory limit" if limit_hit else "watchdog"
            logs.append({"level": "WARNING", "message": f"runtime restart ({reason})"})
            uptime_s = float(logs_rng.uniform(20.0, 90.0))  # seconds since it came back
            logs.append(
                {"level": "INFO", "message": f"edge runtime started, firmware {edge.firmware}"}
            )
            mem = MEM_BASE + MEM_LEAK_PER_H * (uptime_s / 3600.0)
        elif failed is not None:  # thermal shutdown, watchdog giving up: last words
            x = temp_list[k] if failed == "thermal_throttling" else 0.0
            line = _fault_line(fault_rng, "ERROR", FAULT_ERRORS[failed], x)
            if failed == "crash_loop":
                line["message"] = FAULT_ERRORS[failed].format(n=restarts_in_loop)
            logs.append(line)
            restarts_in_loop = 0
        mem = float(np.clip(mem + mem_noise[k], 0.0, 100.0))
        logs.append({"level": "INFO", "message": INFO[int(logs_rng.integers(0, len(INFO)))]})
        u = logs_rng.random()
        if u < 0.004:
            logs.append(_line(logs_rng, "ERROR", ERRORS[edge.kind]))
        elif u < 0.04:
            logs.append(_line(logs_rng, "WARNING", WARNINGS[edge.kind]))
        active = _active_fault(faults, t)
        if active is not None and fault_rng.random() < 0.05 + 0.5 * _severity(fx, k, active):
            templates = FAULT_WARNINGS[active]
            text = templates[int(fault_rng.integers(0, len(templates)))]
            logs.append(_fault_line(fault_rng, "WARNING", text, temp_list[k]))
        if mem > MEM_WARN:
            logs.append({"level": "WARNING", "message": f"memory usage {mem:.0f}%"})
        has_error = any(line["level"] == "ERROR" for line in logs)
        hot = temp_list[k] > THROTTLE_C
        status = ("degraded" if cpu_list[k] > 90.0 or mem > MEM_WARN or has_error or hot
                  else "online")
        doc = {
            "timestamp": t,
            "status": status,
            "firmware": edge.firmware,
            "cpuPct": cpu_list[k],
            "memPct": round(mem, 1),
            "tempC": temp_list[k],
            "uptimeS": round(uptime_s, 1),
            "logs": logs,
        }
        yield json_message(t, topic, doc)


def _severity(fx: Effects, k: int, fault_type: str) -> float:
    """How far a fault has gone, in [0, 1], for how often it writes a warning."""
    if fault_type == "memory_leak":
        return float(min(fx.mem_extra[k] / 66.0, 1.0))
    if fault_type == "thermal_throttling":
        return float(min(fx.temp_extra[k] / 40.0, 1.0))
    return 0.3
