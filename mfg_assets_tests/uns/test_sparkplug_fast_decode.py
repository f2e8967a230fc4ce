"""The data fast path (`_decode_metrics`) gives the general decoder's documents and errors."""

from __future__ import annotations

import random
import struct

import pytest

from mfg_assets.uns import sparkplug_b_pb2 as pb
from mfg_assets.uns.sparkplug import SparkplugDecodeError
from mfg_assets.uns.sparkplug.decode import _decode_metric, _decode_metrics


def _general(payload: pb.Payload, aliases):
    return [_decode_metric(m, aliases) for m in payload.metrics]


def _outcome(decode, payload: pb.Payload, aliases):
    try:
        return ("ok", decode(payload, aliases))
    except SparkplugDecodeError as exc:
        return ("error", str(exc))


def _random_metric(rng: random.Random, out: pb.Payload.Metric) -> None:
    """Common data metrics mixed with every irregular shape the fast path must hand over."""
    if rng.random() < 0.3:
        out.name = rng.choice(["temp", "Properties/line", "m\u00e9tric", "x"])
    if rng.random() < 0.8:
        out.alias = rng.randrange(0, 12)  # 0..9 bound below, 10..11 unknown
    if rng.random() < 0.4:
        out.timestamp = rng.randrange(0, 2**40)
    if rng.random() < 0.4:
        out.datatype = rng.choice([1, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 22, 99])
    field = rng.choice(
        [
            "int_value",
            "long_value",
            "float_value",
            "double_value",
            "boolean_value",
            "string_value",
            "bytes_value",
            None,
            "dataset_value",
            "template_value",
        ]
    )
    if field == "int_value":
        out.int_value = rng.choice([0, 7, 255, 256, 70000, 2**32 - 1])
    elif field == "long_value":
        out.long_value = rng.choice([0, 1, 2**63, 2**64 - 1])
    elif field == "float_value":
        out.float_value = rng.uniform(-1e6, 1e6)
    elif field == "double_value":
        out.double_value = rng.choice([rng.uniform(-1e9, 1e9), float("inf"), 0.0])
    elif field == "boolean_value":
        out.boolean_value = rng.random() < 0.5
    elif field == "string_value":
        out.string_value = rng.choice(["", "ok", "caf\u00e9"])
    elif field == "bytes_value":
        out.bytes_value = rng.choice([b"", b"\x00\x01", struct.pack("<3d", 1, 2, 3), b"a\0b\0"])
    elif field == "dataset_value":
        out.dataset_value.num_of_columns = 1
        out.dataset_value.columns.append("c")
        out.dataset_value.types.append(9)
    elif field == "template_value":
        out.template_value.is_definition = False
    roll = rng.random()
    if roll < 0.05:
        out.is_null = rng.random() < 0.5
    elif roll < 0.1:
        out.is_historical = True
    elif roll < 0.15:
        out.is_transient = False  # present but False: still not the plain shape
    elif roll < 0.18:
        out.properties.keys.append("unit")
        out.properties.values.add(type=12, string_value="bar")
    elif roll < 0.2:
        out.metadata.is_multi_part = False


ALIASES = {k: (f"bound{k}", [9, 10, 3, 12, 11, 7, 8, 4, 5, 99][k]) for k in range(10)}


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("aliases", [ALIASES, None])
def test_fast_path_matches_the_general_decoder(seed: int, aliases) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        payload = pb.Payload()
        for _ in range(rng.randrange(1, 8)):
            _random_metric(rng, payload.metrics.add())
        decoded = pb.Payload.FromString(payload.SerializeToString())  # as received
        fast = _outcome(lambda p, a: _decode_metrics(p.metrics, a), decoded, aliases)
        assert fast == _outcome(_general, decoded, aliases)


def test_bad_value_in_a_data_metric_keeps_the_general_error() -> None:
    payload = pb.Payload()
    payload.metrics.add(alias=1, double_value=1.5)
    payload.metrics.add(alias=2, int_value=300)  # bound as UInt8 below: out of range
    aliases = {1: ("ok", 10), 2: ("small", 5)}  # Double, UInt8
    with pytest.raises(SparkplugDecodeError, match=r"metric 'small': value 300 out of range"):
        _decode_metrics(payload.metrics, aliases)
