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


def test_sql_cannot_read_the_environment_or_break_a_table(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("MFG_S3_SECRET_FOR_TEST", "s3cr3t-value")
    write_replay(SimConfig(seed=1, duration_h=0.1), data_dir / "replay" / "r1")
    assert main(["load"]) == 0
    capsys.readouterr()
    assert main(["sql", "SELECT * FROM read_text('/proc/self/environ')"]) == 2
    captured = capsys.readouterr()
    assert "s3cr3t-value" not in captured.out + captured.err
    assert "Permission Error" in captured.err
    log = data_dir / "lake" / "bronze" / "process_runs" / "_delta_log"
    target = log / "00000000000000000099.json"
    assert main(["sql", f"COPY (SELECT 'x') TO '{target}' (FORMAT CSV, HEADER false)"]) == 2
    assert not target.exists()
    assert main(["sql", "SELECT count(*) AS n FROM bronze.process_runs", "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)[0]["n"] > 0


def test_a_broken_table_leaves_sql_and_tables_working(data_dir, capsys):
    write_replay(SimConfig(seed=1, duration_h=0.1), data_dir / "replay" / "r1")
    assert main(["load"]) == 0
    broken = data_dir / "lake" / "bronze" / "process_runs" / "_delta_log"
    (broken / "00000000000000000001.json").write_text("x\n1\n")
    capsys.readouterr()
    assert main(["sql", "SELECT 1 AS one", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert orjson.loads(captured.out) == [{"one": 1}]
    assert "bronze.process_runs skipped" in captured.err
    assert main(["sql", "SELECT count(*) AS n FROM bronze.sensor_readings", "--format",
                 "json"]) == 0
    assert orjson.loads(capsys.readouterr().out)[0]["n"] > 0
    assert main(["tables"]) == 1  # one table is broken: say so in the exit code
    out = capsys.readouterr().out
    assert "bronze.process_runs" in out and "cannot be opened" in out
    assert "bronze.sensor_readings" in out and "version=0" in out
