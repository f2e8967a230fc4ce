"""Every message the simulator emits is valid against the plant's own AsyncAPI contract."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from mfg_assets.sim import SimConfig, SimMessage, iter_messages
from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import Contract, load_contract
from mfg_assets.uns.topics import MessageClass, parse_topic

PLANT_YAML = Path(__file__).parents[2] / "mfg_assets" / "uns" / "asyncapi" / "plant.yaml"

EXPECTED_MESSAGE = {
    "sensorReadings": "SensorReading",
    "processRuns": "ProcessRun",
    "inspectionImages": "InspectionImage",
    "edgeTelemetry": "EdgeTelemetry",
    "sparkplugNode": "SparkplugPayload",
    "sparkplugDevice": "SparkplugPayload",
}


@pytest.fixture(scope="module")
def contract() -> Contract:
    # Sparkplug payloads are checked decoded, so the codec's decoder goes in first.
    sparkplug.register_contract_decoder()
    return load_contract(PLANT_YAML)


def _check_all(contract: Contract, messages: list[SimMessage]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for m in messages:
        channel, name, errors = contract.validate(m.topic, m.payload)
        assert not errors, f"{m.topic}: {errors}"
        assert channel is not None and channel.id == m.channel
        assert name == EXPECTED_MESSAGE[m.channel]
        seen[m.channel] += 1
    return seen


def test_every_message_of_a_run_matches_the_contract(
    contract: Contract, small_messages: list[SimMessage]
) -> None:
    seen = _check_all(contract, small_messages)
    assert set(seen) == set(EXPECTED_MESSAGE)  # every channel the simulator speaks, exercised


def test_drifted_and_faulty_runs_stay_within_the_contract(contract: Contract) -> None:
    config = SimConfig(
        seed=3,
        duration_h=1.5,
        fault_rate_per_day=12.0,
        image_size=96,
        drift=[(name, 0.5) for name in ("sensor_recalibration", "material_lot", "camera_lighting")],
    )
    _check_all(contract, list(iter_messages(config)))


def test_json_messages_carry_their_document_and_an_isa95_topic(
    small_messages: list[SimMessage],
) -> None:
    for m in small_messages:
        if m.topic.startswith(sparkplug.NAMESPACE):
            assert m.doc is None and not m.is_json
            continue
        assert m.is_json and orjson.loads(m.payload) == m.doc
        topic = parse_topic(m.topic)
        assert topic.enterprise == "acme" and topic.site == "detroit"
        assert m.doc["timestamp"] == m.ts_ms
        if topic.message_class is MessageClass.SENSORS:
            assert topic.area == "body" and topic.line == "weld1"


def test_messages_come_in_time_order_within_the_run(
    small_config: SimConfig, small_messages: list[SimMessage]
) -> None:
    stamps = [m.ts_ms for m in small_messages]
    assert stamps == sorted(stamps)
    assert stamps[0] == small_config.start_ms  # the Sparkplug births open the run
    assert stamps[-1] == small_config.end_ms  # and the node's death closes it
