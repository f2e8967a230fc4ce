"""What a person sees from `mfg`: help with defaults and an example, clean pipes, tables
with sizes, progress only on a terminal, no library chatter."""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys

import orjson
import pytest

from mfg_assets.cli import _subparsers, build_parser, main
from mfg_assets.console import progress, quiet_third_parties, write_frame
from mfg_assets.sim import SimConfig, write_replay


def _all_parsers() -> list[argparse.ArgumentParser]:
    found, todo = [], [build_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        todo += _subparsers(parser)
    return found


def test_every_command_has_an_example_and_shows_its_defaults():
    parsers = _all_parsers()
    assert len(parsers) > 15
    for parser in parsers:
        text = parser.format_help()
        assert "example:\n  mfg" in text, parser.prog
        for action in parser._actions:
            default = action.default
            if (not action.option_strings or default in (None, argparse.SUPPRESS)
                    or isinstance(default, bool) or default == []):
                continue
            # the default is printed in the option's help text, in whatever words
            options = text[text.index("\noptions:"):]
            entry = options[options.index("  " + action.option_strings[-1]):]
            assert "default" in entry.split("\n  -")[0], (parser.prog, action.option_strings)


def test_sql_piped_is_csv_with_whole_headers_and_empty_is_one_line(data_dir, capsys):
    write_replay(SimConfig(seed=1, duration_h=0.2), data_dir / "replay" / "r1")
    assert main(["load"]) == 0
    capsys.readouterr()
    query = "SELECT topic, count(*) AS messages FROM bronze.sensor_readings GROUP BY ALL"
    assert main(["sql", query]) == 0  # stdout is not a terminal here: CSV
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["topic", "messages"]  # one header line, names whole
    assert len(rows) > 1 and all(len(row) == 2 for row in rows)
    assert all(row[1].isdigit() for row in rows[1:])

    empty = "SELECT topic, asset_id FROM bronze.sensor_readings WHERE false"
    assert main(["sql", empty, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert out == "no rows (columns: topic, asset_id)\n"
    assert "shape" not in out
    assert main(["sql", empty, "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []
    # nothing was refused: the quarantine still answers (0 rows), it is not "no such table"
    assert main(["sql", "SELECT count(*) AS n FROM bronze.quarantine", "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == [{"n": 0}]


def test_table_format_keeps_every_column_in_the_terminal_width():
    import polars as pl

    frame = pl.DataFrame({"machine_identifier": ["weld-01"] * 3, "mean_value": [1.23456789] * 3,
                          "note": ["x" * 120] * 3})
    out = io.StringIO()
    write_frame(frame, "table", max_rows=2, out=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert "machine_identifier" in lines[0] and "mean_value" in lines[0]
    assert max(len(line) for line in lines) <= 200
    assert "1.23457" in text and "3 rows, first 2 shown" in text


def test_tables_lists_rows_size_and_last_commit(data_dir, capsys):
    write_replay(SimConfig(seed=1, duration_h=0.1), data_dir / "replay" / "r1")
    assert main(["load"]) == 0
    capsys.readouterr()
    assert main(["tables"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines()
                if row.startswith("bronze.sensor_readings "))
    match = re.search(r"rows=\s*(\d+)\s+size=\s*([\d.]+ (?:B|KiB|MiB|GiB))\s+version=(\d+)\s+"
                      r"committed=(\d{4}-\d\d-\d\d \d\d:\d\dZ)", line)
    assert match, line
    assert int(match[1]) > 0 and match[2] != "0 B"


def test_validate_lists_every_error(data_dir, capsys):
    topic = "acme/detroit/body/weld1/cell01/weld-01/sensors"
    assert main(["validate", topic, '{"timestamp": "x", "machineType": 5}']) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines  # missing readings, machineType type, timestamp type
    assert any("readings" in line for line in lines)
    assert any("machineType" in line for line in lines)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only():
    terminal, pipe = _Terminal(), io.StringIO()
    with progress("loading 3 files", total=3, stream=terminal) as advance:
        advance(3)
    with progress("loading 3 files", total=3, stream=pipe) as advance:
        advance(3)
    assert "loading 3 files" in terminal.getvalue()
    assert pipe.getvalue() == ""


NOISY = """
import logging, sys
if sys.argv[1] == "quiet":
    from mfg_assets.console import quiet_third_parties
    quiet_third_parties()
logging.basicConfig()  # what any host application does: a root handler
import prophet.plot  # noqa: F401  (logs 'Importing plotly failed' without plotly)
import mlflow
mlflow.set_tracking_uri("sqlite:///" + sys.argv[2])
mlflow.search_experiments()  # creates the database: MLflow logs its migrations at INFO
"""


@pytest.mark.slow
def test_cli_entry_silences_prophet_and_mlflow(tmp_path):
    def stderr(mode: str) -> str:
        db = tmp_path / f"{mode}.db"
        return subprocess.run([sys.executable, "-c", NOISY, mode, str(db)], capture_output=True,
                              text=True, timeout=120, check=True).stderr

    loud = stderr("loud")
    assert "mlflow" in loud.lower() or "plotly" in loud.lower()  # the noise exists
    assert stderr("quiet") == ""
    quiet_third_parties()  # idempotent in-process too
