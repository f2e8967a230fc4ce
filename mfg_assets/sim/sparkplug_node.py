"""The press line's Sparkplug B edge node: births, alias-only data and the death certificate.

One edge node (``press1-gw``) fronts every press/CNC of the line. Its message sequence is
the Sparkplug session: NBIRTH (seq 0, bdSeq, rebirth control), one DBIRTH per device with
names, aliases, Double datatypes and the device's ISA-95 placement as String properties,
then DDATA by alias only, ``seq`` counting 0..255 across all of the node's messages, and
NDEATH with the birth's bdSeq at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mfg_assets.sim.config import PressMachine, SimConfig
from mfg_assets.sim.messages import SPARKPLUG, SPARKPLUG_DEVICE, SPARKPLUG_NODE, SimMessage
from mfg_assets.sim.press import SENSORS, machine_signals
from mfg_assets.uns import sparkplug

BD_SEQ = 0  # first MQTT session of the node in this run


def metric_alias(device_index: int, sensor_index: int) -> int:
    """Aliases are unique across the whole edge node (Sparkplug 3.0), so devices get blocks."""
    return 100 * (device_index + 1) + sensor_index


def ndeath(config: SimConfig, timestamp_ms: int | None = None) -> SimMessage:
    """The node's death certificate: registered as MQTT Will and sent at the end of the run."""
    plant = config.plant
    ts = config.end_ms if timestamp_ms is None else timestamp_ms
    payload = sparkplug.encode_payload(
        ts, None, [{"name": sparkplug.BDSEQ_METRIC, "value": BD_SEQ, "datatype": "Int64"}]
    )
    topic = sparkplug.format_topic("NDEATH", plant.sparkplug_group, plant.edge_node)
    return SimMessage(ts, topic, payload, SPARKPLUG, SPARKPLUG_NODE)


def _nbirth(config: SimConfig, seq: int) -> SimMessage:
    plant = config.plant
    ts = config.start_ms
    metrics: list[dict[str, Any]] = [
        {"name": sparkplug.BDSEQ_METRIC, "value": BD_SEQ, "datatype": "Int64"},
        {"name": sparkplug.REBIRTH_METRIC, "value": False, "datatype": "Boolean"},
        {"name": "Properties/area", "value": plant.press_area, "datatype": "String"},
        {"name": "Properties/line", "value": plant.press_line, "datatype": "String"},
    ]
    topic = sparkplug.format_topic("NBIRTH", plant.sparkplug_group, plant.edge_node)
    payload = sparkplug.encode_payload(ts, seq, metrics)
    return SimMessage(ts, topic, payload, SPARKPLUG, SPARKPLUG_NODE)


def _dbirth(
    config: SimConfig, index: int, machine: PressMachine, first: list[float], seq: int
) -> SimMessage:
    plant = config.plant
    ts = config.start_ms
    metrics: list[dict[str, Any]] = [
        {
            "name": name,
            "alias": metric_alias(index, k),
            "datatype": "Double",
            "value": first[k],
            "properties": {"engUnit": unit},
        }
        for k, (name, unit) in enumerate(SENSORS)
    ]
    for key, value in (
        ("area", plant.press_area),
        ("line", plant.press_line),
        ("cell", machine.cell),
        ("machine_type", machine.machine_type),
    ):
        metrics.append({"name": f"Properties/{key}", "value": value, "datatype": "String"})
    topic = sparkplug.format_topic(
        "DBIRTH", plant.sparkplug_group, plant.edge_node, machine.machine_id
    )
    return SimMessage(
        ts, topic, sparkplug.encode_payload(ts, seq, metrics), SPARKPLUG, SPARKPLUG_DEVICE
    )


def edge_node_messages(config: SimConfig) -> Iterator[SimMessage]:
    """The node's whole session in time order."""
    plant = config.plant
    machines = plant.press_machines
    signals = [machine_signals(config, m) for m in machines]
    columns = [[np.round(values[name], 3).tolist() for name, _ in SENSORS] for _, values in signals]

    seq = 0
    yield _nbirth(config, seq)
    for index, machine in enumerate(machines):
        seq = (seq + 1) & 0xFF
        first = [col[0] if col else 0.0 for col in columns[index]]
        yield _dbirth(config, index, machine, first, seq)

    # Interleave the devices' samples by time; ties go to the lower device index.
    ts_all = np.concatenate([ts for ts, _ in signals]) if signals else np.empty(0, np.int64)
    dev_all = (
        np.concatenate([np.full(len(ts), i) for i, (ts, _) in enumerate(signals)])
        if signals
        else np.empty(0, np.int64)
    )
    k_all = (
        np.concatenate([np.arange(len(ts)) for ts, _ in signals])
        if signals
        else np.empty(0, np.int64)
    )
    order = np.lexsort((dev_all, ts_all))
    topics = [
        sparkplug.format_topic("DDATA", plant.sparkplug_group, plant.edge_node, m.machine_id)
        for m in machines
    ]
    aliases = [[metric_alias(i, k) for k in range(len(SENSORS))] for i in range(len(machines))]
    encode = sparkplug.encode_payload
    for ts, dev, k in zip(
        ts_all[order].tolist(), dev_all[order].tolist(), k_all[order].tolist(), strict=True
    ):
        seq = (seq + 1) & 0xFF
        metrics = [
            sparkplug.Metric(alias=alias, value=col[k], datatype="Double")
            for alias, col in zip(aliases[dev], columns[dev], strict=True)
        ]
        yield SimMessage(ts, topics[dev], encode(ts, seq, metrics), SPARKPLUG, SPARKPLUG_DEVICE)
    yield ndeath(config)
