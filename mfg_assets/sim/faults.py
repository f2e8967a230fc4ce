"""Fault plans: when each machine degrades, fails and is repaired.

Plans are drawn per machine from its own random stream as a renewal process (onset after
an exponential wait, then the fault's course, then the next wait), so they do not depend
on the run's length and the ground truth is known before any sample is generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.rng import rng_for

HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# Press/CNC faults degrade to a failure; welder faults are windows of bad welding.
PRESS_FAULTS = (("bearing_wear", 0.6), ("lubrication_loss", 0.4))
WELDER_FAULTS = (("wire_feed_slip", 0.5), ("contact_tip_wear", 0.5))
DEGRADATION_H = (4.0, 10.0)
REPAIR_H = (1.0, 3.0)
SLIP_MIN = (20.0, 90.0)
TIP_WEAR_H = (2.0, 6.0)
# Exponential growth rate of the degradation curve: most of the rise is in the last hours.
GROWTH = 4.0
# Share of a fault's full effect from which it shows in the sensors beyond normal
# machine-to-machine spread: the "first symptom" a maintenance record would note.
DETECTABLE_SEVERITY = 0.2


@dataclass(frozen=True, slots=True)
class FaultEvent:
    fault_id: str
    machine_id: str
    fault_type: str
    onset_ms: int
    failure_ms: int | None  # None: the fault ends without a breakdown (welder faults)
    end_ms: int  # repaired / back to normal

    @property
    def detectable_ms(self) -> int:
        """When the fault first shows (DETECTABLE_SEVERITY of its full effect).

        Degradations to failure rise exponentially, tip wear linearly; a wire-feed slip is
        erratic from its first minute.
        """
        if self.failure_ms is not None:
            x = np.log1p(DETECTABLE_SEVERITY * np.expm1(GROWTH)) / GROWTH
            return self.onset_ms + int(x * (self.failure_ms - self.onset_ms))
        if self.fault_type == "contact_tip_wear":
            return self.onset_ms + int(DETECTABLE_SEVERITY * (self.end_ms - self.onset_ms))
        return self.onset_ms

    def record(self, run_end_ms: int) -> dict[str, Any]:
        """Ground-truth record; a failure after the run's end was not observed -> null."""
        failure = self.failure_ms
        return {
            "kind": "fault",
            "fault_id": self.fault_id,
            "machine_id": self.machine_id,
            "fault_type": self.fault_type,
            "onset_ms": self.onset_ms,
            "detectable_ms": min(self.detectable_ms, run_end_ms),
            "failure_ms": failure if failure is not None and failure < run_end_ms else None,
            "end_ms": min(self.end_ms, run_end_ms),
            "truncated": self.end_ms > run_end_ms,  # still going when the run ended
        }


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    names = [name for name, _ in options]
    weights = np.array([w for _, w in options])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def plan_machine_faults(config: SimConfig, machine_id: str, kind: str) -> list[FaultEvent]:
    """Faults of one machine (``kind`` "press" for press/cnc, "welder") with onset in the run."""
    if config.fault_rate_per_day <= 0:
        return []
    rng = rng_for(config.seed, "faults", machine_id)
    mean_gap_ms = 24 * HOUR_MS / config.fault_rate_per_day
    events: list[FaultEvent] = []
    t = config.start_ms + int(rng.exponential(mean_gap_ms))
    while t < config.end_ms:
        if kind == "press":
            fault_type = _pick(rng, PRESS_FAULTS)
            failure = t + int(rng.uniform(*DEGRADATION_H) * HOUR_MS)
            end = failure + int(rng.uniform(*REPAIR_H) * HOUR_MS)
            failure_ms: int | None = failure
        else:
            fault_type = _pick(rng, WELDER_FAULTS)
            if fault_type == "wire_feed_slip":
                end = t + int(rng.uniform(*SLIP_MIN) * MINUTE_MS)
            else:
                end = t + int(rng.uniform(*TIP_WEAR_H) * HOUR_MS)
            failure_ms = None
        events.append(FaultEvent(f"F-{machine_id}-{t}", machine_id, fault_type, t, failure_ms, end))
        t = end + int(rng.exponential(mean_gap_ms))
    return events


def plan_faults(config: SimConfig) -> list[FaultEvent]:
    """Every fault of the run, ordered by onset."""
    plant = config.plant
    events: list[FaultEvent] = []
    for machine in plant.press_machines:
        events += plan_machine_faults(config, machine.machine_id, "press")
    for welder in plant.welders:
        events += plan_machine_faults(config, welder.machine_id, "welder")
    return sorted(events, key=lambda e: (e.onset_ms, e.machine_id))


def degradation(event: FaultEvent, ts_ms: np.ndarray) -> np.ndarray:
    """Degradation severity in [0, 1] from onset to failure (0 outside), rising exponentially."""
    stop = event.failure_ms if event.failure_ms is not None else event.end_ms
    x = (ts_ms - event.onset_ms) / max(stop - event.onset_ms, 1)
    inside = (x >= 0) & (x < 1)
    return np.where(inside, np.expm1(GROWTH * np.clip(x, 0, 1)) / np.expm1(GROWTH), 0.0)


def progress(event: FaultEvent, ts_ms: np.ndarray) -> np.ndarray:
    """Linear progress in [0, 1] through a fault window (0 outside)."""
    x = (ts_ms - event.onset_ms) / max(event.end_ms - event.onset_ms, 1)
    return np.where((x >= 0) & (x < 1), x, 0.0)


def active(event: FaultEvent, ts_ms: np.ndarray) -> np.ndarray:
    return (ts_ms >= event.onset_ms) & (ts_ms < event.end_ms)


def down(event: FaultEvent, ts_ms: np.ndarray) -> np.ndarray:
    """True while the machine is broken down and under repair."""
    if event.failure_ms is None:
        return np.zeros(len(ts_ms), dtype=bool)
    return (ts_ms >= event.failure_ms) & (ts_ms < event.end_ms)
