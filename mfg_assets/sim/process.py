"""Process runs: one record per welded unit, with its parameters and measured yield.

Yield is a smooth, nonlinear function of the parameters that a regressor can learn: weld
quality peaks when current and travel speed suit the plate thickness, when the heat input
(arc power over travel speed) matches what the plate needs, when voltage and wire feed sit
on the synergic line for the current, and when shielding gas flow keeps porosity away.
Noise, lot-to-lot variation and the welder's own faults blur it; the ``material_lot``
drift moves the optimum.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from mfg_assets.sim import drift
from mfg_assets.sim.config import SimConfig, Welder
from mfg_assets.sim.faults import active, plan_machine_faults, progress
from mfg_assets.sim.messages import SimMessage, json_message
from mfg_assets.sim.rng import rng_for
from mfg_assets.sim.schedule import ambient_temp, time_grid
from mfg_assets.sim.welding import arc_voltage_for, wire_feed_for
from mfg_assets.uns.topics import MessageClass

HOUR_MS = 3_600_000
LOT_HOURS = (4.0, 8.0)  # a coil/batch of sheet lasts a few hours on the line
BEST_YIELD = 98.5
YIELD_NOISE = 0.6
PASS_NOISE = 0.8  # the pass/fail test is its own measurement, a little noisy
MAX_LOSS = 30.0


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    thickness_mm: float


PRODUCTS = (
    Product("door-frame", 1.5),
    Product("floor-panel", 2.0),
    Product("b-pillar", 2.5),
)


def optimal_heat_input(thickness_mm: np.ndarray) -> np.ndarray:
    """kJ/mm that fuses a plate of this thickness without burn-through."""
    return 0.15 + 0.15 * thickness_mm


def optimal_current(thickness_mm: np.ndarray) -> np.ndarray:
    """Current for full penetration of the plate without burn-through (A)."""
    return 110.0 + 42.0 * thickness_mm


def heat_input(current: np.ndarray, voltage: np.ndarray, speed_mm_s: np.ndarray) -> np.ndarray:
    """Arc heat input in kJ/mm with a MIG thermal efficiency of 0.8."""
    return 0.8 * voltage * current / (1000.0 * speed_mm_s)


def optimal_speed(thickness_mm: np.ndarray, heat_factor: np.ndarray | float = 1.0) -> np.ndarray:
    """Travel speed (mm/s) that gives the optimal heat input at the optimal current."""
    current = optimal_current(thickness_mm)
    arc_kw = heat_input(current, arc_voltage_for(current), np.ones_like(current))
    return arc_kw / (optimal_heat_input(thickness_mm) * heat_factor)


def yield_model(
    p: dict[str, np.ndarray],
    heat_factor: np.ndarray | float = 1.0,
    offset: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Noise-free yield in percent for parameter arrays ``p``.

    ``heat_factor`` scales the optimal heat input (material drift), ``offset`` adds the
    lot's and the welder's effects.
    """
    current = p["current_setpoint"]
    thickness = p["plate_thickness"]
    speed = p["travel_speed"]
    hi = heat_input(current, p["voltage_setpoint"], speed)
    r = hi / (optimal_heat_input(thickness) * heat_factor) - 1.0
    losses = (
        40.0 * r * r  # lack of fusion / burn-through
        + 0.04 * (current - optimal_current(thickness)) ** 2  # penetration
        + 600.0 * (speed / optimal_speed(thickness, heat_factor) - 1.0) ** 2  # undercut, humping
        + 1.5 * (p["voltage_setpoint"] - arc_voltage_for(current)) ** 2  # arc stability
        + 5.0 * (p["wire_feed_setpoint"] - wire_feed_for(current)) ** 2  # stubbing, burn-back
        + 0.3 * np.maximum(0.0, 15.0 - p["gas_flow"]) ** 2  # porosity from thin shielding
        + 0.1 * np.maximum(0.0, p["gas_flow"] - 21.0) ** 2  # turbulence draws in air
        + 0.2 * np.maximum(0.0, 17.0 - p["ambient_temp"])  # cold plates, condensation
    )
    # Losses saturate: a badly set weld scraps the unit's seams, it cannot lose more.
    return BEST_YIELD - MAX_LOSS * -np.expm1(-losses / MAX_LOSS) + offset


@dataclass(frozen=True, slots=True)
class Lot:
    lot_id: str
    start_ms: int
    effect: float  # small lot-to-lot yield shift
    new_supplier: bool


def plan_lots(config: SimConfig) -> list[Lot]:
    """Material lots of the welding line in order; the drift lot starts a new supplier."""
    rng = rng_for(config.seed, "lots", config.plant.weld_line)
    drift_start = config.drift_start_ms("material_lot")
    lots: list[Lot] = []
    t = config.start_ms
    n = 0
    while t < config.end_ms:
        length = int(rng.uniform(*LOT_HOURS) * HOUR_MS)
        effect = float(rng.normal(0.0, 0.3))
        if drift_start is not None and t < drift_start < t + length:
            length = drift_start - t  # the new supplier's lot replaces the running one
        new = drift_start is not None and t >= drift_start
        day = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y%m%d")
        lots.append(Lot(f"LOT-{day}-{'S2-' if new else ''}{n:03d}", t, effect, new))
        t += length
        n += 1
    return lots


def unit_records(config: SimConfig, welder: Welder) -> tuple[np.ndarray, list[dict]]:
    """Timestamps and ProcessRun documents of one welding cell."""
    plant = config.plant
    mid = welder.machine_id
    dt = config.unit_period_s
    period_ms = round(dt * 1000)
    phase = int(rng_for(config.seed, "unit-phase", mid).integers(0, period_ms))
    # Cycle times vary by a couple of seconds: jitter up to 2 s (a quarter period at most).
    ts = time_grid(config, dt, phase, 2000, rng_for(config.seed, "unit-jitter", mid))
    n = len(ts)
    cell_index = [w.machine_id for w in plant.welders].index(mid)
    # Each cell mostly welds "its" product, with some mix.
    weights = np.roll(np.array([0.7, 0.2, 0.1]), cell_index)
    # One stream per array keeps every draw prefix-stable (a longer run extends a shorter one).
    product_idx = rng_for(config.seed, "unit-products", mid).choice(
        len(PRODUCTS), size=n, p=weights
    )
    z = rng_for(config.seed, "units", mid).standard_normal((n, 7))
    thick_nom = np.array([p.thickness_mm for p in PRODUCTS])[product_idx]
    # Recipes sit at the product's optimum; operators and tuning spread the set points.
    current = optimal_current(thick_nom) + 9.0 * z[:, 0]
    voltage = arc_voltage_for(current) + 0.7 * z[:, 1]
    speed_nom = optimal_speed(thick_nom)
    params = {
        "current_setpoint": current,
        "voltage_setpoint": voltage,
        "wire_feed_setpoint": wire_feed_for(current) + 0.35 * z[:, 2],
        "travel_speed": speed_nom * (1.0 + 0.06 * z[:, 3]),
        "gas_flow": np.clip(17.5 + 2.2 * z[:, 4], 8.0, 25.0),
        "plate_thickness": thick_nom + 0.04 * z[:, 5],
        "ambient_temp": ambient_temp(config, ts, dt),
    }

    lots = plan_lots(config)
    lot_starts = np.array([lot.start_ms for lot in lots])
    lot_idx = np.searchsorted(lot_starts, ts, side="right") - 1
    effect = np.array([lot.effect for lot in lots])[lot_idx]
    new_supplier = np.array([lot.new_supplier for lot in lots])[lot_idx]
    heat_factor = np.where(new_supplier, drift.LOT_HEAT_INPUT_FACTOR, 1.0)
    offset = effect - np.where(new_supplier, drift.LOT_YIELD_PENALTY, 0.0)

    for event in plan_machine_faults(config, mid, "welder"):
        mask = active(event, ts)
        if event.fault_type == "wire_feed_slip":
            frng = rng_for(config.seed, "unit-fault-effect", event.fault_id)
            offset = offset.copy()
            offset[mask] -= frng.uniform(2.0, 6.0, int(mask.sum()))
        else:
            offset = offset - 3.0 * progress(event, ts)

    y = yield_model(params, heat_factor, offset) + YIELD_NOISE * z[:, 6]
    y = np.clip(y, 0.0, 100.0)
    pass_noise = rng_for(config.seed, "unit-pass", mid).standard_normal(n)
    passed = (y + PASS_NOISE * pass_noise) >= config.yield_threshold

    rounding = {
        "current_setpoint": 1,
        "voltage_setpoint": 2,
        "wire_feed_setpoint": 2,
        "travel_speed": 2,
        "gas_flow": 2,
        "plate_thickness": 3,
        "ambient_temp": 2,
    }
    cols = {k: np.round(v, rounding[k]).tolist() for k, v in params.items()}
    y_list = np.round(y, 2).tolist()
    passed_list = passed.tolist()
    lot_ids = [lots[i].lot_id for i in lot_idx.tolist()]
    prefix = f"{plant.weld_line}-{welder.cell}-"
    docs = []
    for k, t in enumerate(ts.tolist()):
        docs.append(
            {
                "timestamp": t,
                "unitId": f"{prefix}{t}",
                "product": PRODUCTS[product_idx[k]].name,
                "materialLot": lot_ids[k],
                "parameters": {name: col[k] for name, col in cols.items()},
                "yield": y_list[k],
                "passed": passed_list[k],
            }
        )
    return ts, docs


def unit_messages(config: SimConfig, welder: Welder) -> Iterator[SimMessage]:
    plant = config.plant
    topic = plant.topic(
        plant.weld_area, plant.weld_line, welder.cell, welder.machine_id, MessageClass.PROCESS
    )
    ts, docs = unit_records(config, welder)
    for t, doc in zip(ts.tolist(), docs, strict=True):
        yield json_message(t, topic, doc)
