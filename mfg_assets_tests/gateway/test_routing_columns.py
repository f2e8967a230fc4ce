"""Sparkplug DATA routed from metric columns gives the same bronze tables as from documents."""

from __future__ import annotations

import copy
import random
from typing import Any

import polars as pl
import pytest
import yaml

from mfg_assets.gateway.routing import Batch, Router
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns import sparkplug
from mfg_assets.uns import sparkplug_b_pb2 as pb
from mfg_assets.uns.contract import Contract, load_contract
from mfg_assets_tests.uns.test_sparkplug_columns import _plain_metric
from mfg_assets_tests.uns.test_sparkplug_fast_decode import ALIASES, _random_metric

T0 = 1_793_491_200_000
GROUP, NODE, DEVICE = "detroit", "press1-gw", "press-01"


def _contract(variant: str) -> Contract:
    """The plant contract, or a copy whose metric items column checks judge differently."""
    if variant == "plant":
        return load_contract(DEFAULT_CONTRACT)
    doc = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    schema = doc["components"]["schemas"]["SparkplugPayload"]
    items = copy.deepcopy(schema["properties"]["metrics"]["items"])
    if variant == "alias below 5":  # column checks refuse some: the schema words the errors
        items["properties"]["alias"]["maximum"] = 4
    else:  # "name pattern": not provable by columns, every message takes the schema path
        items["properties"]["name"]["pattern"] = "^[a-z]"
    schema["properties"]["metrics"]["items"] = items
    return load_contract(doc, base_uri=DEFAULT_CONTRACT.resolve().as_uri())


def _births() -> list[tuple[str, bytes]]:
    metrics = [
        {"name": name, "alias": alias, "datatype": dtype, "value": None}
        for alias, (name, dtype) in ALIASES.items()
        if dtype != 99
    ]
    metrics += [
        {"name": "Properties/line", "value": "press1", "datatype": "String"},
        {"name": "Properties/machine_type", "value": "press", "datatype": "String"},
    ]
    nbirth = [{"name": "bdSeq", "value": 0, "datatype": "Int64"}]
    return [
        (sparkplug.format_topic("NBIRTH", GROUP, NODE), sparkplug.encode_payload(T0, 0, nbirth)),
        (
            sparkplug.format_topic("DBIRTH", GROUP, NODE, DEVICE),
            sparkplug.encode_payload(T0, 1, metrics),
        ),
    ]


def _stream(rng: random.Random, count: int = 60) -> list[tuple[str, bytes]]:
    """Mostly plain DDATA; some irregular metrics, seq gaps, unknown aliases, NDATA."""
    messages, seq = _births(), 1
    for k in range(count):
        seq = (seq + (3 if rng.random() < 0.04 else 1)) % 256
        payload = pb.Payload(timestamp=T0 + 1000 * k, seq=seq)
        make = _plain_metric if rng.random() < 0.75 else _random_metric
        for _ in range(rng.randrange(0, 20)):
            make(rng, payload.metrics.add())
        kind = "DDATA" if rng.random() < 0.9 else "NDATA"
        device = DEVICE if kind == "DDATA" else None
        messages.append(
            (sparkplug.format_topic(kind, GROUP, NODE, device), payload.SerializeToString())
        )
    return messages


def _route(contract: Contract, messages: list[tuple[str, bytes]]) -> tuple[Batch, list[Any]]:
    router = Router(contract, source="test")
    landed = [router.route(topic, payload, T0 + k) for k, (topic, payload) in enumerate(messages)]
    return router.take("b"), [landed, router.rebirth_requests]


def _same_tables(left: Batch, right: Batch) -> None:
    assert set(left.tables) == set(right.tables)
    for name, frame in left.tables.items():
        assert frame.equals(right.tables[name]), name
    counts = (left.received, left.valid, left.invalid, left.errors)
    assert counts == (right.received, right.valid, right.invalid, right.errors)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("variant", ["plant", "alias below 5", "name pattern"])
def test_column_routing_writes_the_same_bronze_rows(variant: str, seed: int, monkeypatch) -> None:
    contract = _contract(variant)
    messages = _stream(random.Random(seed))
    proven: list[bool] = []
    accepts = contract.accepts_columns

    def spy(*args: Any) -> bool:
        proven.append(accepts(*args))
        return proven[-1]

    monkeypatch.setattr(contract, "accepts_columns", spy)
    fast, fast_side = _route(contract, messages)
    monkeypatch.setattr(sparkplug.session, "_metric_columns", lambda metrics, aliases: None)
    general, general_side = _route(contract, messages)

    _same_tables(fast, general)
    assert fast_side == general_side
    assert fast.tables["bronze.sensor_readings"].height > 0
    if variant == "plant":
        assert sum(proven) > len(proven) // 2  # most messages were proven from columns
    elif variant == "name pattern":
        assert proven and not any(proven)  # columns came, the schema decided every time
    else:  # the schema refused what columns could not prove, with its own words
        assert any(proven) and not all(proven)
        reasons = fast.tables["bronze.quarantine"].get_column("reason").to_list()
        assert any("alias must be smaller than or equal to 4" in r for r in reasons)


def test_usual_ddata_payload_json_is_unchanged() -> None:
    """A pinned bronze payload: the column path must not change what silver parses."""
    contract = _contract("plant")
    ddata = sparkplug.encode_payload(
        T0 + 5,
        2,
        [
            {"alias": 0, "value": 1.5, "datatype": "Float"},
            {"alias": 1, "value": 2.0, "datatype": "Double", "timestamp": T0 + 4},
            {"alias": 3, "value": "ok", "datatype": "String"},
            {"alias": 4, "value": True, "datatype": "Boolean"},
            {"alias": 2, "value": -7, "datatype": "Int32"},
        ],
        include_datatypes=False,
    )
    topic = sparkplug.format_topic("DDATA", GROUP, NODE, DEVICE)
    batch, (landed, rebirths) = _route(contract, [*_births(), (topic, ddata)])
    assert landed == [True, True, True] and rebirths == []
    rows = batch.tables["bronze.sensor_readings"]
    assert rows.select(pl.col("payload")).item() == (
        '{"timestamp":1793491200005,"machineType":"press","readings":['
        '{"sensor":"bound0","value":1.5},'
        '{"sensor":"bound1","value":2.0,"timestamp":1793491200004},'
        '{"sensor":"bound4","value":1.0},'
        '{"sensor":"bound2","value":-7.0}],'
        '"sparkplug":{"seq":2,"attributes":{"bound3":"ok"}}}'
    )
