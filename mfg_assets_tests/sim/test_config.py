from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from mfg_assets.sim import DRIFT_SCENARIOS, DriftSpec, SimConfig


def test_defaults_describe_the_documented_plant() -> None:
    config = SimConfig()
    assert config.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert config.end_ms - config.start_ms == 24 * 3_600_000
    plant = config.plant
    assert (plant.enterprise, plant.site) == ("acme", "detroit")
    assert [w.machine_id for w in plant.welders] == ["weld-01", "weld-02", "weld-03"]
    assert [m.machine_id for m in plant.press_machines] == ["press-01", "cnc-01", "cnc-02"]
    assert [c.camera_id for c in plant.cameras] == ["cam-01", "cam-02"]
    assert [e.edge_id for e in plant.edges] == [
        "edge-weld1",
        "edge-press1",
        "edge-cam01",
        "edge-cam02",
    ]
    assert set(DRIFT_SCENARIOS) == {
        "sensor_recalibration", "material_lot", "camera_lighting", "sensor_replacement"}


def test_friendly_inputs_are_normalised() -> None:
    config = SimConfig(start="2026-11-02T06:00:00Z", drift=[("material_lot", 3)])
    assert config.start == datetime(2026, 11, 2, 6, tzinfo=UTC)
    assert config.drift == (DriftSpec("material_lot", 3),)
    assert config.drift_start_ms("material_lot") == config.start_ms + 3 * 3_600_000
    assert config.drift_start_ms("camera_lighting") is None
    # The manifest view is plain JSON.
    doc = orjson.loads(orjson.dumps(config.to_dict()))
    assert doc["start"] == "2026-11-02T06:00:00Z"
    assert doc["drift"] == [["material_lot", 3]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drift": [("solar_flare", 1.0)]}, "unknown drift scenario 'solar_flare'"),
        ({"image_size": 256}, "image_size must be within 64..128"),
        ({"duration_h": 0}, "duration_h must be positive"),
        ({"sensor_period_s": 0.5}, "sensor_period_s must be at least 1 s"),
        ({"sources": ("welding", "radar")}, "unknown sources ['radar']"),
        ({"start": "2026-11-01T00:00:00"}, "has no timezone"),
        ({"image_class_mix": (("ok", 0.5),)}, "sum to 1"),
        ({"seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_bad_config_is_rejected_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        SimConfig(**kwargs)
    assert message in str(err.value)
