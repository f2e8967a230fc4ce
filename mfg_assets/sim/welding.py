"""Welding line: arc welders publishing JSON SensorReadings on the UNS.

Readings are averages over the sample period, so they scale with the arc's duty cycle:
current, wire feed and voltage move together with the shift load, and the torch
temperature follows the duty with thermal lag. Faults break those relations:
wire-feed slip makes the feed erratic with current spikes, contact-tip wear lets the
voltage drift up against the current.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mfg_assets.sim.config import SimConfig, Welder
from mfg_assets.sim.drift import offsets_for, replacement_gain
from mfg_assets.sim.faults import FaultEvent, active, plan_machine_faults, progress
from mfg_assets.sim.messages import SimMessage, json_message
from mfg_assets.sim.rng import rng_for
from mfg_assets.sim.schedule import ambient_temp, ar1, ema, time_grid, utilisation
from mfg_assets.uns.topics import MessageClass

SENSORS = (("current", "A"), ("voltage", "V"), ("wire_feed", "m/min"), ("temperature", "C"))
JITTER_MS = 40


def wire_feed_for(current_a: np.ndarray | float) -> np.ndarray | float:
    """MIG synergic line: wire feed speed that carries a given arc current."""
    return (current_a - 40.0) / 20.0


def arc_voltage_for(current_a: np.ndarray | float) -> np.ndarray | float:
    """Arc voltage of a stable spray/short arc at a given current."""
    return 14.5 + 0.045 * current_a


def welder_signals(
    config: SimConfig, welder: Welder, faults: list[FaultEvent] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sample times and sensor arrays of one welder over the run."""
    dt = config.sensor_period_s
    mid = welder.machine_id
    period_ms = round(dt * 1000)
    phase = int(rng_for(config.seed, "phase", mid).integers(0, period_ms))
    ts = time_grid(config, dt, phase, JITTER_MS, rng_for(config.seed, "jitter", mid))
    n = len(ts)
    rng = rng_for(config.seed, "welder", mid)
    noise = rng.standard_normal((n, 5))

    u = utilisation(config, ts, dt, mid)
    duty = np.clip(0.88 * u + 0.015 * noise[:, 0], 0.0, 1.0)
    # The recipe's set point wanders a little as the product mix changes.
    i_set = welder.arc_current_a * (
        1.0 + ar1(rng_for(config.seed, "recipe", mid), n, dt, tau_s=7200.0, sigma=0.015)
    )
    current = duty * i_set + 2.0 * noise[:, 1]
    wire_feed = duty * wire_feed_for(i_set) + 0.06 * noise[:, 2]
    voltage = duty * arc_voltage_for(i_set) + 0.15 * noise[:, 3]
    temperature = ambient_temp(config, ts, dt) + 32.0 * ema(duty, dt, tau_s=600.0)
    temperature = temperature + 0.3 * noise[:, 4]

    for event in faults if faults is not None else plan_machine_faults(config, mid, "welder"):
        mask = active(event, ts)
        k = int(mask.sum())
        if k == 0:
            continue

        def draw(name: str, event: FaultEvent = event) -> np.random.Generator:
            return rng_for(config.seed, "fault-signal", event.fault_id, name)

        d = duty[mask]
        if event.fault_type == "wire_feed_slip":
            # The drive rollers slip: feed drops erratically, the arc lengthens (voltage up,
            # current down), then the wire catches and shorts (current spikes).
            slipping = draw("slipping").random(k) < 0.6
            slip = np.where(slipping, draw("slip").uniform(0.05, 0.45, k), 0.0)
            shorting = draw("shorting").random(k) < 0.35
            spikes = np.where(shorting, draw("spike").uniform(25.0, 90.0, k), 0.0)
            wire_feed[mask] *= 1.0 - slip
            current[mask] = current[mask] * (1.0 - 0.3 * slip) + d * spikes
            voltage[mask] += d * 3.0 * slip
        else:  # contact_tip_wear: the worn bore adds resistance and a wandering contact point
            p = progress(event, ts)[mask]
            voltage[mask] += d * (4.5 * p + 0.4 * p * draw("tip").standard_normal(k))
            current[mask] *= 1.0 - 0.04 * p
            temperature[mask] += 6.0 * p

    values = {
        "current": np.maximum(current, 0.0),
        "voltage": np.maximum(voltage, 0.0),
        "wire_feed": np.maximum(wire_feed, 0.0),
        "temperature": temperature,
    }
    for offset in offsets_for(config, mid):
        if offset.sensor in values:
            values[offset.sensor] = np.where(
                ts >= offset.start_ms, values[offset.sensor] + offset.offset, values[offset.sensor]
            )
    replaced = replacement_gain(config, mid)
    if replaced is not None:
        start_ms, gain = replaced
        values["current"] = np.where(ts >= start_ms, values["current"] * gain, values["current"])
    return ts, values


def welder_messages(
    config: SimConfig, welder: Welder, faults: list[FaultEvent] | None = None
) -> Iterator[SimMessage]:
    plant = config.plant
    topic = plant.topic(
        plant.weld_area, plant.weld_line, welder.cell, welder.machine_id, MessageClass.SENSORS
    )
    ts, values = welder_signals(config, welder, faults)
    columns = [(name, unit, np.round(values[name], 3).tolist()) for name, unit in SENSORS]
    for k, t in enumerate(ts.tolist()):
        doc = {
            "timestamp": t,
            "machineType": welder.machine_type,
            "seq": k,
            "readings": [
                {"sensor": name, "value": col[k], "unit": unit} for name, unit, col in columns
            ],
        }
        yield json_message(t, topic, doc)
