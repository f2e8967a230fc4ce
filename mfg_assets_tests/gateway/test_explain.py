"""`mfg validate` decodes Sparkplug B and lists every error (issue 13, item 4)."""

from __future__ import annotations

import base64

import orjson

from mfg_assets.cli import main
from mfg_assets.uns import sparkplug
from mfg_assets.uns import sparkplug_b_pb2 as pb

T0 = 1_793_491_200_000
TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"
DDATA = "spBv1.0/detroit/DDATA/press1-gw/press-01"


def _bad_sparkplug() -> bytes:
    """Decodes fine, breaks the contract twice: seq 300 > 255, timestamp before 2000."""
    payload = pb.Payload(timestamp=5, seq=300)
    metric = payload.metrics.add()
    metric.alias, metric.datatype, metric.double_value = 1, 10, 1.5
    return payload.SerializeToString()


def test_sparkplug_payload_is_decoded_and_every_error_reported(capsys, data_dir):
    encoded = base64.b64encode(_bad_sparkplug()).decode()
    assert main(["validate", DDATA, f"base64:{encoded}"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any("data.seq" in line and "300" in line for line in out), out
    assert any("data.timestamp" in line for line in out), out
    assert all(line.startswith("schema: SparkplugPayload: ") for line in out), out


def test_valid_sparkplug_payload_from_a_file_and_hex(tmp_path, capsys, data_dir):
    good = sparkplug.encode_payload(T0, 1, [{"alias": 1, "value": 1.0, "datatype": "Double"}])
    path = tmp_path / "ddata.bin"
    path.write_bytes(good)
    assert main(["validate", DDATA, f"@{path}"]) == 0
    assert "channel sparkplugDevice" in capsys.readouterr().out
    assert main(["validate", DDATA, f"hex:{good.hex()}"]) == 0
    capsys.readouterr()
    assert main(["validate", DDATA, "hex:zz"]) == 2  # not hex: a clear usage error


def test_garbage_sparkplug_bytes_are_a_decode_error(capsys, data_dir):
    assert main(["validate", DDATA, "base64:" + base64.b64encode(b"\xff\xff\xff").decode()]) == 1
    assert capsys.readouterr().out.startswith("bad_payload")


def test_json_payload_reports_all_errors_not_only_the_first(capsys, data_dir):
    bad = orjson.dumps(
        {"timestamp": 5, "machineType": "", "readings": [{"sensor": "a", "value": "x"}]}
    ).decode()
    assert main(["validate", TOPIC, bad]) == 1
    out = capsys.readouterr().out
    # SensorReading's three problems, each named by its path
    for where in ("data.timestamp", "data.machineType", "data.readings[0].value"):
        assert f"schema: SensorReading: {where}" in out, out
