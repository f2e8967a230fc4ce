"""Named drift scenarios: what changes, where, and from when.

A scenario switches on at a chosen offset into the run and stays on. Its targets are
picked from the plant layout by rule, not at random, so a test or a demo knows where to
look; the ground-truth record names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfg_assets.sim.config import SimConfig

DRIFT_SCENARIOS: dict[str, str] = {
    "sensor_recalibration": (
        "a sensor is recalibrated with a constant offset: welder current on the second "
        "welder, spindle temperature on the first CNC"
    ),
    "material_lot": (
        "a new supplier's material lot enters the welding line and moves the heat input "
        "that gives the best yield"
    ),
    "camera_lighting": "the first inspection camera's lighting gets brighter and flatter",
    "sensor_replacement": (
        "the second welder's current sensor is replaced by a different model that reads "
        "higher (true RMS instead of average): a new normal the anomaly model has not seen"
    ),
}

# Offsets are a few noise sigmas: invisible to a threshold alarm, plain to a drift test.
CURRENT_OFFSET_A = 15.0
SPINDLE_TEMP_OFFSET_C = 6.0
LIGHTING_BRIGHTNESS = 28.0
LIGHTING_CONTRAST = 0.8
# Unlike a recalibration (a few sigmas, invisible to alarms), a replaced sensor moves its
# readings far off the relations the anomaly model learned: alarms on every window until
# the model is retrained on the new normal. The closed-loop demo uses it for that reason.
REPLACEMENT_CURRENT_GAIN = 1.6
# Under the new lot the optimal heat input moves up and the best reachable yield drops.
LOT_HEAT_INPUT_FACTOR = 1.08
LOT_YIELD_PENALTY = 1.5


@dataclass(frozen=True, slots=True)
class SensorOffset:
    machine_id: str
    sensor: str
    offset: float
    start_ms: int


def sensor_offsets(config: SimConfig) -> list[SensorOffset]:
    start = config.drift_start_ms("sensor_recalibration")
    if start is None:
        return []
    plant = config.plant
    out: list[SensorOffset] = []
    if plant.welders:
        welder = plant.welders[min(1, len(plant.welders) - 1)]
        out.append(SensorOffset(welder.machine_id, "current", CURRENT_OFFSET_A, start))
    cncs = [m for m in plant.press_machines if m.machine_type == "cnc"] or list(
        plant.press_machines
    )
    if cncs:
        out.append(SensorOffset(cncs[0].machine_id, "spindle_temp", SPINDLE_TEMP_OFFSET_C, start))
    return out


def offsets_for(config: SimConfig, machine_id: str) -> list[SensorOffset]:
    return [o for o in sensor_offsets(config) if o.machine_id == machine_id]


def replacement_target(config: SimConfig) -> str | None:
    welders = config.plant.welders
    return welders[min(1, len(welders) - 1)].machine_id if welders else None


def replacement_gain(config: SimConfig, machine_id: str) -> tuple[int, float] | None:
    """(start_ms, gain of the current readings) once ``machine_id``'s sensor is replaced."""
    start = config.drift_start_ms("sensor_replacement")
    if start is None or machine_id != replacement_target(config):
        return None
    return start, REPLACEMENT_CURRENT_GAIN


def lighting_target(config: SimConfig) -> str | None:
    cameras = config.plant.cameras
    return cameras[0].camera_id if cameras else None


def lighting_for(config: SimConfig, camera_id: str) -> tuple[int, float, float] | None:
    """(start_ms, brightness delta, contrast factor) when the camera's lighting drifts."""
    start = config.drift_start_ms("camera_lighting")
    if start is None or camera_id != lighting_target(config):
        return None
    return start, LIGHTING_BRIGHTNESS, LIGHTING_CONTRAST


def drift_records(config: SimConfig) -> list[dict[str, Any]]:
    """Ground-truth records of every drift scenario switched on in this run."""
    records: list[dict[str, Any]] = []
    for spec in sorted(config.drift, key=lambda d: (d.start_offset_h, d.name)):
        start = config.drift_start_ms(spec.name)
        if start is None or start >= config.end_ms:
            continue
        if any(r["scenario"] == spec.name for r in records):
            continue  # listed twice: the earliest start wins
        details: dict[str, Any]
        if spec.name == "sensor_recalibration":
            offsets = sensor_offsets(config)
            targets = [o.machine_id for o in offsets]
            details = {
                "offsets": [
                    {"machine_id": o.machine_id, "sensor": o.sensor, "offset": o.offset}
                    for o in offsets
                ]
            }
        elif spec.name == "material_lot":
            targets = [config.plant.weld_line]
            details = {
                "heat_input_factor": LOT_HEAT_INPUT_FACTOR,
                "yield_penalty": LOT_YIELD_PENALTY,
            }
        elif spec.name == "sensor_replacement":
            target = replacement_target(config)
            targets = [target] if target else []
            details = {"sensor": "current", "gain": REPLACEMENT_CURRENT_GAIN}
        else:
            camera = lighting_target(config)
            targets = [camera] if camera else []
            details = {"brightness": LIGHTING_BRIGHTNESS, "contrast": LIGHTING_CONTRAST}
        records.append(
            {
                "kind": "drift",
                "scenario": spec.name,
                "start_ms": start,
                "targets": targets,
                "details": details,
            }
        )
    return records
