"""Plain DATA metrics as columns (`MetricColumns`) say exactly what the documents say."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mfg_assets.uns import sparkplug
from mfg_assets.uns import sparkplug_b_pb2 as pb
from mfg_assets.uns.sparkplug import MetricColumns, SparkplugDecodeError
from mfg_assets.uns.sparkplug.columns import _metric_columns
from mfg_assets.uns.sparkplug.decode import _decode_metrics
from mfg_assets_tests.uns.test_sparkplug_fast_decode import ALIASES, _random_metric

T0 = 1_793_491_200_000
NODE, DEVICE = "press1-gw", "press-01"


def _ordered(docs: list[dict[str, Any]]) -> list[list[tuple[str, Any]]]:
    return [list(doc.items()) for doc in docs]  # key order too: documents end up as JSON


def _typed(items: list[dict[str, Any]]) -> list[dict[str, tuple[type, Any]]]:
    return [{key: (type(value), value) for key, value in item.items()} for item in items]


def _items(columns: MetricColumns) -> list[dict[str, Any]]:
    """The documents the columns stand for: None in a column is an absent key."""
    mapping = columns.as_mapping()
    return [
        {key: column[i] for key, column in mapping.items() if column[i] is not None}
        for i in range(len(columns))
    ]


def _same(columns: MetricColumns, metrics: Any, aliases: Any) -> None:
    documents = _decode_metrics(metrics, aliases)
    assert _typed(_items(columns)) == _typed(documents)  # what validation and rows read
    assert _ordered(columns.documents()) == _ordered(documents)


def _plain_metric(rng: random.Random, out: pb.Payload.Metric) -> None:
    """What edge nodes send in DATA: alias (maybe name), maybe a timestamp, one scalar."""
    if rng.random() < 0.2:
        out.name = rng.choice(["temp", "m\u00e9tric"])
    out.alias = rng.randrange(0, 9)  # 9 is bound to an unknown datatype: not plain
    if rng.random() < 0.3:
        out.timestamp = rng.randrange(0, 2**40)
    dtype = ALIASES[out.alias][1]
    if dtype in (9, 10):  # Float, Double
        out.double_value = rng.uniform(-1e3, 1e3)
    elif dtype == 12:  # String
        out.string_value = rng.choice(["ok", "caf\u00e9"])
    elif dtype == 11:  # Boolean
        out.boolean_value = rng.random() < 0.5
    else:  # the integer types of ALIASES, in range for each
        out.int_value = rng.choice([0, 1, 100])


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("aliases", [ALIASES, None])
def test_columns_give_the_documents_or_step_aside(seed: int, aliases) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        payload = pb.Payload()
        for _ in range(rng.randrange(1, 8)):
            _random_metric(rng, payload.metrics.add())
        decoded = pb.Payload.FromString(payload.SerializeToString())
        columns = _metric_columns(decoded.metrics, aliases)
        if columns is None:
            continue  # the document path decides (and words any error)
        _same(columns, decoded.metrics, aliases)


@pytest.mark.parametrize("seed", range(10))
def test_plain_data_metrics_always_come_as_columns(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        payload = pb.Payload()
        for _ in range(rng.randrange(0, 60)):
            _plain_metric(rng, payload.metrics.add())
        decoded = pb.Payload.FromString(payload.SerializeToString())
        columns = _metric_columns(decoded.metrics, ALIASES)
        assert columns is not None
        _same(columns, decoded.metrics, ALIASES)


def _stream(rng: random.Random) -> list[tuple[str, bytes]]:
    """Births, then DATA with plain and irregular metrics, gaps and unknown aliases."""
    births = [{"name": name, "alias": alias, "datatype": dtype, "value": None}
              for alias, (name, dtype) in ALIASES.items() if dtype != 99]  # fmt: skip
    messages = [
        (f"spBv1.0/g/NBIRTH/{NODE}", sparkplug.encode_payload(T0, 0, births[:3])),
        (f"spBv1.0/g/DBIRTH/{NODE}/{DEVICE}", sparkplug.encode_payload(T0, 1, births)),
    ]
    seq = 1
    for k in range(40):
        payload = pb.Payload(timestamp=T0 + k)
        seq = (seq + (2 if rng.random() < 0.05 else 1)) % 256
        payload.seq = seq
        if rng.random() < 0.1:
            payload.uuid = "u"
        make = _plain_metric if rng.random() < 0.7 else _random_metric
        for _ in range(rng.randrange(0, 12)):
            make(rng, payload.metrics.add())
        kind, device = ("DDATA", f"/{DEVICE}") if rng.random() < 0.8 else ("NDATA", "")
        messages.append((f"spBv1.0/g/{kind}/{NODE}{device}", payload.SerializeToString()))
    return messages


def _events(messages: list[tuple[str, bytes]]) -> list[tuple[Any, ...]]:
    session, out = sparkplug.SparkplugSession(), []
    for topic, payload in messages:
        try:
            event = session.handle(topic, payload)
        except SparkplugDecodeError as exc:
            out.append(("error", str(exc)))
            continue
        columnar = event.columns is not None
        out.append((event.online, event.rebirth_needed, _ordered(event.metrics), columnar))
    return out


@pytest.mark.parametrize("seed", range(10))
def test_a_session_says_the_same_with_or_without_columns(seed: int, monkeypatch) -> None:
    messages = _stream(random.Random(seed))
    with_columns = _events(messages)
    monkeypatch.setattr(sparkplug.session, "_metric_columns", lambda metrics, aliases: None)
    without = _events(messages)
    strip = [event[:-1] for event in with_columns]
    assert strip == [event[:-1] for event in without]
    assert any(event[-1] for event in with_columns)  # the column path was taken
    assert not any(event[-1] for event in without if event[0] != "error")
