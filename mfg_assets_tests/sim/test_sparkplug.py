"""The press line's Sparkplug B session decodes cleanly, as a host application sees it."""

from __future__ import annotations

from itertools import pairwise

from mfg_assets.sim import SimConfig, SimMessage, iter_messages
from mfg_assets.uns import sparkplug


def _spb(messages: list[SimMessage]) -> list[SimMessage]:
    return [m for m in messages if m.topic.startswith(sparkplug.NAMESPACE)]


def test_host_session_sees_births_then_data_then_death(
    small_config: SimConfig, small_messages: list[SimMessage]
) -> None:
    session = sparkplug.SparkplugSession()
    plant = small_config.plant
    group, node = plant.sparkplug_group, plant.edge_node
    kinds = []
    values: dict[str, list[float]] = {}
    for m in _spb(small_messages):
        event = session.handle(m.topic, m.payload)
        assert event.rebirth_needed is None, (m.topic, event.rebirth_needed)
        assert event.document["timestamp"] == m.ts_ms
        kinds.append(event.message_type)
        if event.message_type == "DDATA":
            assert event.online
            for metric in event.metrics:
                values.setdefault(f"{event.device_id}/{metric['name']}", []).append(metric["value"])
    devices = [mm.machine_id for mm in plant.press_machines]
    assert kinds[0] == "NBIRTH"
    assert kinds[1 : 1 + len(devices)] == ["DBIRTH"] * len(devices)
    assert set(kinds[1 + len(devices) : -1]) == {"DDATA"}
    assert kinds[-1] == "NDEATH"
    assert not session.node_online(group, node)  # NDEATH's bdSeq matched the birth
    # Every device reported every sensor, resolved from aliases to names.
    assert set(values) == {
        f"{d}/{s}" for d in devices for s in ("vibration_rms", "spindle_temp", "power_kw")
    }
    info = session.device_info(group, node, "cnc-01")
    assert info["Properties/area"] == "press" and info["Properties/line"] == "press1"
    assert info["Properties/cell"] == "cell02" and info["Properties/machine_type"] == "cnc"


def test_births_name_alias_and_type_every_metric_and_data_uses_aliases_only(
    small_messages: list[SimMessage],
) -> None:
    aliases: set[int] = set()
    nbirth_bdseq = None
    for m in _spb(small_messages):
        doc = sparkplug.decode_payload(m.payload)
        kind = sparkplug.parse_topic(m.topic).message_type
        if kind == "NBIRTH":
            names = {x["name"]: x for x in doc["metrics"]}
            nbirth_bdseq = names["bdSeq"]["value"]
            assert names["Node Control/Rebirth"]["value"] is False
        elif kind == "DBIRTH":
            for metric in doc["metrics"]:
                if metric["name"].startswith("Properties/"):
                    assert metric["datatype"] == "String"
                    continue
                assert metric["datatype"] == "Double"
                assert metric["alias"] not in aliases  # unique across the edge node
                aliases.add(metric["alias"])
        elif kind == "DDATA":
            assert all("name" not in x and x["alias"] in aliases for x in doc["metrics"])
        else:
            assert kind == "NDEATH" and doc["seq"] is None
            assert doc["metrics"][0]["name"] == "bdSeq"
            assert doc["metrics"][0]["value"] == nbirth_bdseq


def test_seq_counts_every_node_message_and_wraps_at_256() -> None:
    config = SimConfig(duration_h=0.5, sensor_period_s=5.0, sources=("press",))
    seqs = [
        sparkplug.decode_payload(m.payload)["seq"]
        for m in iter_messages(config)
        if "/NDEATH/" not in m.topic
    ]
    assert len(seqs) > 600  # long enough to wrap twice
    assert seqs[:3] == [0, 1, 2]
    assert all(b == (a + 1) % 256 for a, b in pairwise(seqs))
    assert seqs.count(0) >= 3
