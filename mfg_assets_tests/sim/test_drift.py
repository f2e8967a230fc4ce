"""Drift scenarios switch on at their time, on their targets, and change nothing else.

Each scenario is compared with the same seed and no drift: streams are independent, so
before the start the two runs are identical and afterwards only the targets differ.
"""

from __future__ import annotations

import base64

import numpy as np

from mfg_assets.sim import SimConfig, ground_truth, iter_messages
from mfg_assets.sim import drift as drift_mod
from mfg_assets.sim.images import decode_png

from .helpers import sensor_series

BASE = dict(seed=8, duration_h=4.0, sensor_period_s=20.0, unit_period_s=20.0, image_period_s=20.0)
START_H = 2.0


def _pair(name: str, sources: tuple[str, ...]) -> tuple[SimConfig, SimConfig]:
    plain = SimConfig(**BASE, sources=sources)
    drifted = SimConfig(**BASE, sources=sources, drift=[(name, START_H)])
    return plain, drifted


def _record(config: SimConfig, name: str) -> dict:
    (record,) = [r for r in ground_truth(config) if r["kind"] == "drift"]
    assert record["scenario"] == name
    assert record["start_ms"] == config.start_ms + int(START_H * 3_600_000)
    return record


def test_sensor_recalibration_offsets_only_its_sensors_only_after_start() -> None:
    plain, drifted = _pair("sensor_recalibration", ("welding", "press"))
    record = _record(drifted, "sensor_recalibration")
    assert record["targets"] == ["weld-02", "cnc-01"]
    a, b = sensor_series(iter_messages(plain)), sensor_series(iter_messages(drifted))
    offsets = {(o["machine_id"], o["sensor"]): o["offset"] for o in record["details"]["offsets"]}
    for machine, series in a.items():
        after = series["ts"] >= record["start_ms"]
        assert np.array_equal(series["ts"], b[machine]["ts"])
        for sensor, values in series.items():
            if sensor == "ts":
                continue
            diff = b[machine][sensor] - values
            assert np.all(diff[~after] == 0)  # nothing changes before the start
            expected = offsets.get((machine, sensor), 0.0)
            np.testing.assert_allclose(diff[after], expected, atol=2e-3)
    assert offsets == {
        ("weld-02", "current"): drift_mod.CURRENT_OFFSET_A,
        ("cnc-01", "spindle_temp"): drift_mod.SPINDLE_TEMP_OFFSET_C,
    }


def test_material_lot_changes_lots_and_the_yield_relation_after_start() -> None:
    plain, drifted = _pair("material_lot", ("process",))
    record = _record(drifted, "material_lot")
    a = [m.doc for m in iter_messages(plain)]
    b = [m.doc for m in iter_messages(drifted)]
    assert [d["unitId"] for d in a] == [d["unitId"] for d in b]
    before = [i for i, d in enumerate(a) if d["timestamp"] < record["start_ms"]]
    after = [i for i, d in enumerate(a) if d["timestamp"] >= record["start_ms"]]
    assert all(a[i] == b[i] for i in before)
    # Same parameters, new supplier's lot, a different (worse) yield for the same settings.
    assert all(a[i]["parameters"] == b[i]["parameters"] for i in after)
    assert all("-S2-" in b[i]["materialLot"] and "-S2-" not in a[i]["materialLot"] for i in after)
    drop = np.mean([a[i]["yield"] - b[i]["yield"] for i in after])
    assert drop > 2.0
    assert np.mean([b[i]["passed"] for i in after]) < np.mean([a[i]["passed"] for i in after])


def test_camera_lighting_brightens_one_camera_after_start() -> None:
    plain, drifted = _pair("camera_lighting", ("images",))
    record = _record(drifted, "camera_lighting")
    assert record["targets"] == ["cam-01"]

    def brightness(config: SimConfig) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for m in iter_messages(config):
            camera = m.topic.split("/")[5]
            pixels = decode_png(base64.b64decode(m.doc["data"]))
            out.setdefault(camera, []).append((m.ts_ms, float(pixels.mean())))
        return out

    a, b = brightness(plain), brightness(drifted)
    start = record["start_ms"]
    for camera in ("cam-01", "cam-02"):
        before = [(x[1], y[1]) for x, y in zip(a[camera], b[camera], strict=True) if x[0] < start]
        after = [(x[1], y[1]) for x, y in zip(a[camera], b[camera], strict=True) if x[0] >= start]
        assert all(x == y for x, y in before)
        shift = np.mean([y - x for x, y in after])
        if camera == "cam-01":
            assert shift > 15.0
        else:
            assert shift == 0.0
    # The drift is visible without a reference run too: cam-01 before vs after.
    cam = b["cam-01"]
    early = np.mean([v for t, v in cam if t < start])
    late = np.mean([v for t, v in cam if t >= start])
    assert late - early > 15.0


def test_drift_is_only_recorded_when_it_starts_within_the_run() -> None:
    config = SimConfig(**BASE, drift=[("material_lot", 10.0)])
    assert [r for r in ground_truth(config) if r["kind"] == "drift"] == []


def test_sensor_replacement_scales_one_current_sensor_only_after_start() -> None:
    plain, drifted = _pair("sensor_replacement", ("welding",))
    record = _record(drifted, "sensor_replacement")
    assert record["targets"] == ["weld-02"]
    assert record["details"] == {"sensor": "current", "gain": drift_mod.REPLACEMENT_CURRENT_GAIN}
    a, b = sensor_series(iter_messages(plain)), sensor_series(iter_messages(drifted))
    for machine, series in a.items():
        after = series["ts"] >= record["start_ms"]
        for sensor, values in series.items():
            if sensor == "ts":
                continue
            changed = machine == "weld-02" and sensor == "current"
            assert np.array_equal(b[machine][sensor][~after], values[~after])
            if changed:  # readings are rounded to 3 decimals after the gain
                np.testing.assert_allclose(b[machine][sensor][after],
                                           values[after] * drift_mod.REPLACEMENT_CURRENT_GAIN,
                                           atol=5e-3)
                assert values[after].mean() > 10  # the welder was working: a real change
            else:
                assert np.array_equal(b[machine][sensor][after], values[after])
