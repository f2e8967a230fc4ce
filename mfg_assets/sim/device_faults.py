"""Edge device faults: when each edge degrades, fails and comes back, and what it shows.

Three faults a fleet of edge computers really has:

- ``memory_leak``: memory climbs steadily for hours until the OOM killer restarts the
  runtime (the failure); the device is back minutes later.
- ``thermal_throttling``: a clogged fan or a hot cabinet: temperature rises, the CPU clocks
  down (the same work shows as more CPU), until a thermal shutdown; cooling down takes hours.
- ``crash_loop``: a worker crashes, ever more often (restarts, error lines), until the
  watchdog gives up; the device stays down until someone reinstalls it.

Plans are drawn per edge from its own random stream as a renewal process, like the
machines' faults (``sim/faults.py``), so the ground truth is known before any heartbeat is
generated and does not depend on the run's length. Ground-truth records have the machines'
shape (``kind`` "fault", the device id in ``machine_id``) so they flow into
``silver.fault_labels`` the same way; ``asset`` says it is an edge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mfg_assets.sim.config import Edge, PlantLayout, SimConfig
from mfg_assets.sim.rng import rng_for

HOUR_MS = 3_600_000
MINUTE_MS = 60_000

DEVICE_FAULTS = (("memory_leak", 0.4), ("thermal_throttling", 0.3), ("crash_loop", 0.3))
# Hours from onset to failure, and how long the device is gone after it.
COURSE_H = {"memory_leak": (6.0, 16.0), "thermal_throttling": (4.0, 12.0),
            "crash_loop": (3.0, 10.0)}
DOWN_H = {"memory_leak": (0.05, 0.2), "thermal_throttling": (1.0, 3.0),
          "crash_loop": (0.5, 2.0)}
# Thermal: growth of the temperature curve (most of the rise near the shutdown).
THERMAL_GROWTH = 3.0
SHUTDOWN_C = 95.0
THROTTLE_C = 80.0
# Crash loop: restarts per hour, from the first crash to the watchdog giving up.
CRASH_RATE_PER_H = (0.5, 12.0)


@dataclass(frozen=True, slots=True)
class DeviceFault:
    fault_id: str
    edge_id: str
    fault_type: str
    onset_ms: int
    failure_ms: int  # OOM restart, thermal shutdown, watchdog giving up
    end_ms: int  # back to normal

    def progress(self, ts_ms: np.ndarray) -> np.ndarray:
        """Linear progress in [0, 1) from onset to failure (0 outside)."""
        x = (ts_ms - self.onset_ms) / max(self.failure_ms - self.onset_ms, 1)
        return np.where((x >= 0) & (x < 1), x, 0.0)

    def down(self, ts_ms: np.ndarray) -> np.ndarray:
        """True while the device is off after the failure (no heartbeats)."""
        if self.fault_type == "memory_leak":  # the runtime restarts; the device stays up
            return np.zeros(len(ts_ms), dtype=bool)
        return (ts_ms >= self.failure_ms) & (ts_ms < self.end_ms)

    def record(self, run_end_ms: int) -> dict[str, Any]:
        """Ground-truth record (the machines' shape); a failure after the run -> null."""
        return {
            "kind": "fault",
            "asset": "edge",
            "fault_id": self.fault_id,
            "machine_id": self.edge_id,
            "fault_type": self.fault_type,
            "onset_ms": self.onset_ms,
            "detectable_ms": min(self.onset_ms, run_end_ms),  # each shows from its onset
            "failure_ms": self.failure_ms if self.failure_ms < run_end_ms else None,
            "end_ms": min(self.end_ms, run_end_ms),
            "truncated": self.end_ms > run_end_ms,
        }


def edge_fleet(n_edges: int, plant: PlantLayout | None = None) -> PlantLayout:
    """``plant`` with ``n_edges`` edge devices (half line edges, half camera edges, two
    firmware versions) in place of its four: a fleet large enough that a few weeks of device
    faults give dozens of failures to judge an edge-health model on."""
    if n_edges < 1:
        raise ValueError(f"a fleet needs at least one edge, got {n_edges}")
    base = plant or PlantLayout()
    edges = tuple(
        Edge(f"edge-{i + 1:02d}", base.weld_area, base.weld_line, f"cell{i + 1:02d}",
             "2.4.0" if i % 3 == 2 else "2.3.1", "camera" if i % 2 else "line")
        for i in range(n_edges))
    return replace(base, edges=edges)


def _pick(rng: np.random.Generator) -> str:
    names = [name for name, _ in DEVICE_FAULTS]
    weights = np.array([w for _, w in DEVICE_FAULTS])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def plan_edge_faults(config: SimConfig, edge_id: str) -> list[DeviceFault]:
    """Faults of one edge device with onset in the run, in time order."""
    rate = config.device_fault_rate_per_day
    if rate <= 0:
        return []
    rng = rng_for(config.seed, "device-faults", edge_id)
    mean_gap_ms = 24 * HOUR_MS / rate
    events: list[DeviceFault] = []
    t = config.start_ms + int(rng.exponential(mean_gap_ms))
    while t < config.end_ms:
        fault_type = _pick(rng)
        failure = t + int(rng.uniform(*COURSE_H[fault_type]) * HOUR_MS)
        end = failure + int(rng.uniform(*DOWN_H[fault_type]) * HOUR_MS)
        events.append(DeviceFault(f"D-{edge_id}-{t}", edge_id, fault_type, t, failure, end))
        t = end + int(rng.exponential(mean_gap_ms))
    return events


def plan_device_faults(config: SimConfig) -> list[DeviceFault]:
    """Every edge device fault of the run, ordered by onset."""
    events = [e for edge in config.plant.edges for e in plan_edge_faults(config, edge.edge_id)]
    return sorted(events, key=lambda e: (e.onset_ms, e.edge_id))


@dataclass(frozen=True)
class Effects:
    """Per heartbeat: what the edge's faults add to its figures, and fault events."""

    mem_extra: np.ndarray  # percentage points of memory held by a leak
    leaking: np.ndarray  # a leak is under way: the runtime's own memory limit is not reached
    temp_extra: np.ndarray  # degrees C above normal
    crash: np.ndarray  # a worker crashed in this heartbeat period (restart)
    failure: np.ndarray  # the fault's failure happens in this heartbeat period
    failure_type: list[str | None]
    down: np.ndarray  # device off: no heartbeat


def effects(faults: list[DeviceFault], ts: np.ndarray, dt_s: float, base_temp: np.ndarray,
            rng: np.random.Generator) -> Effects:
    """The faults' footprint on one edge's heartbeat grid ``ts`` (ms)."""
    n = len(ts)
    mem_extra, temp_extra = np.zeros(n), np.zeros(n)
    leaking, crash, failure, down = (np.zeros(n, dtype=bool) for _ in range(4))
    failure_type: list[str | None] = [None] * n
    for fault in faults:
        x = fault.progress(ts)
        inside = (ts >= fault.onset_ms) & (ts < fault.failure_ms)
        if fault.fault_type == "memory_leak":
            # linear climb: from wherever memory was to past the OOM line at the failure
            mem_extra += np.where(inside, 66.0 * x, 0.0)
            leaking |= inside
        elif fault.fault_type == "thermal_throttling":
            curve = np.expm1(THERMAL_GROWTH * x) / np.expm1(THERMAL_GROWTH)
            temp_extra += np.where(inside, (SHUTDOWN_C + 1.0 - base_temp) * curve, 0.0)
        else:  # crash loop: restarts as a Poisson process with a rising rate
            lo, hi = CRASH_RATE_PER_H
            rate = lo + (hi - lo) * x * x
            crash |= inside & (rng.random(n) < rate * dt_s / 3600.0)
        hit = np.flatnonzero(ts >= fault.failure_ms)
        if hit.size and ts[hit[0]] < fault.end_ms:
            failure[hit[0]] = True
            failure_type[hit[0]] = fault.fault_type
        down |= fault.down(ts)
    down &= ~failure  # the failing heartbeat itself is still sent (its last words)
    return Effects(mem_extra, leaking, temp_extra, crash, failure, failure_type, down)
