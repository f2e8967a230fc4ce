"""Press and CNC machines: condition signals with gradual degradation to failure.

Power follows the machine's utilisation, spindle temperature follows power with
thermal lag, vibration rises with load. A developing fault multiplies vibration roughly
exponentially (bearing wear) or heats the spindle (lubrication loss) until the machine
fails; it then stands still under repair and comes back healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfg_assets.sim.config import PressMachine, SimConfig
from mfg_assets.sim.drift import offsets_for
from mfg_assets.sim.faults import FaultEvent, degradation, down, plan_machine_faults
from mfg_assets.sim.rng import rng_for
from mfg_assets.sim.schedule import ambient_temp, ar1, ema, time_grid, utilisation

SENSORS = (("vibration_rms", "mm/s"), ("spindle_temp", "C"), ("power_kw", "kW"))
JITTER_MS = 40


@dataclass(frozen=True, slots=True)
class MachineProfile:
    idle_kw: float
    span_kw: float  # extra power at full utilisation
    vibration: float  # healthy RMS vibration at full load, mm/s (ISO 10816 "good" zone)
    heat: float  # spindle temperature rise at full sustained load, C


PROFILES = {
    "press": MachineProfile(idle_kw=6.0, span_kw=38.0, vibration=2.2, heat=24.0),
    "cnc": MachineProfile(idle_kw=1.5, span_kw=14.0, vibration=1.1, heat=30.0),
}
# Per fault type: (vibration gain at failure, spindle heat at failure C, power gain at failure)
SIGNATURES = {
    "bearing_wear": (6.0, 12.0, 0.15),
    "lubrication_loss": (2.0, 28.0, 0.25),
}
DOWN_KW = 0.4  # controls and hydraulics on standby while the machine is repaired


def machine_signals(
    config: SimConfig, machine: PressMachine, faults: list[FaultEvent] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sample times and sensor arrays of one press/CNC over the run."""
    dt = config.sensor_period_s
    mid = machine.machine_id
    profile = PROFILES.get(machine.machine_type, PROFILES["cnc"])
    period_ms = round(dt * 1000)
    phase = int(rng_for(config.seed, "phase", mid).integers(0, period_ms))
    ts = time_grid(config, dt, phase, JITTER_MS, rng_for(config.seed, "jitter", mid))
    n = len(ts)
    noise = rng_for(config.seed, "machine", mid).standard_normal((n, 3))

    u = utilisation(config, ts, dt, mid)
    vib_gain = np.ones(n)
    heat = np.zeros(n)
    power_gain = np.ones(n)
    stopped = np.zeros(n, dtype=bool)
    for event in faults if faults is not None else plan_machine_faults(config, mid, "press"):
        s = degradation(event, ts)
        v, h, p = SIGNATURES.get(event.fault_type, SIGNATURES["bearing_wear"])
        vib_gain *= 1.0 + v * s
        heat += h * s
        power_gain *= 1.0 + p * s
        stopped |= down(event, ts)
    u = np.where(stopped, 0.0, u)

    power = (profile.idle_kw + profile.span_kw * u) * power_gain
    power = power * (1.0 + 0.02 * noise[:, 0])
    power = np.where(stopped, DOWN_KW * (1.0 + 0.05 * noise[:, 0]), power)
    # Spindle temperature integrates load and fault heat with the same thermal lag, so it
    # cools down gradually while the machine stands still under repair.
    thermal = ema(profile.heat * u * power_gain + heat, dt, tau_s=1200.0)
    temp = ambient_temp(config, ts, dt) + thermal + 0.25 * noise[:, 1]
    # Vibration: base level with load; multiplicative noise with slow wander; damage
    # makes it both larger and rougher.
    wander = ar1(rng_for(config.seed, "vib-wander", mid), n, dt, tau_s=900.0, sigma=0.05)
    vib = profile.vibration * (0.3 + 0.7 * u) * vib_gain * np.exp(wander + 0.06 * noise[:, 2])
    vib = np.where(stopped, 0.05 * np.exp(0.2 * noise[:, 2]), vib)

    values = {
        "vibration_rms": np.maximum(vib, 0.0),
        "spindle_temp": temp,
        "power_kw": np.maximum(power, 0.0),
    }
    for offset in offsets_for(config, mid):
        if offset.sensor in values:
            values[offset.sensor] = np.where(
                ts >= offset.start_ms, values[offset.sensor] + offset.offset, values[offset.sensor]
            )
    return ts, values
