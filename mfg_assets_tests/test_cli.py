"""The analyst's and engineer's command line on a tmp_path lakehouse."""

import orjson

from mfg_assets.cli import main
from mfg_assets.sim import SimConfig, write_replay

TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"


def test_load_then_sql_and_tables(data_dir, capsys):
    write_replay(SimConfig(seed=1, duration_h=1), data_dir / "replay" / "r1")
    assert main(["load"]) == 0
    assert main(["load"]) == 0  # second time: nothing new
    out = capsys.readouterr().out
    assert "messages.jsonl" in out and "nothing new" in out
    query = "SELECT count(*) AS n FROM bronze.process_runs"
    assert main(["sql", query, "--format", "json"]) == 0
    rows = orjson.loads(capsys.readouterr().out)
    assert rows == [{"n": 360}]  # 3 welding cells, one unit every 30 s, for 1 h
    assert main(["sql", "SELECT * FROM bronze.nope"]) == 2
    assert main(["tables"]) == 0
    assert "bronze.sensor_readings" in capsys.readouterr().out


def test_validate_reports_the_reason(data_dir, capsys):
    good = orjson.dumps({"timestamp": 1_793_491_200_000, "machineType": "welder",
                         "readings": [{"sensor": "current", "value": 1.5}]}).decode()
    assert main(["validate", TOPIC, good]) == 0
    assert "channel sensorReadings" in capsys.readouterr().out
    assert main(["validate", TOPIC, '{"timestamp": "x"}']) == 1
    assert capsys.readouterr().out.startswith("schema: SensorReading")
