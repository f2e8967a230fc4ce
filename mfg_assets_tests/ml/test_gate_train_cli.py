"""`mfg train FAMILY` on a plant's own small process table (imported, one run a day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from mfg_assets.cli import main


def write_runs(path, signal: bool, n: int = 150, params: int = 20) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, params))
    y = (80 + 6 * np.tanh(2 * x[:, 0]) + 4 * (np.abs(x[:, 1]) < 0.7) + 3 * x[:, 2] * x[:, 3]
         + rng.normal(0, 0.8, n)) if signal else 80 + rng.normal(0, 3, n)
    x[rng.random(x.shape) < 0.05] = np.nan
    t0 = datetime(2025, 3, 1, 7, tzinfo=UTC)
    frame = pl.DataFrame({f"p{i:02d}": x[:, i] for i in range(params)}).with_columns(
        pl.Series("unit_id", [f"run{i}" for i in range(n)]),
        pl.Series("ts", [(t0 + timedelta(days=i)).isoformat() for i in range(n)]),
        pl.Series("yield", np.clip(y, 0, 100)))
    frame.write_csv(path)


def train(data_dir, capsys, signal: bool) -> tuple[int, str]:
    table = data_dir / "runs.csv"
    write_runs(table, signal)
    threshold = "80"
    assert main(["import", "table", str(table), "--as", "process_runs", "--label", "yield",
                 "--pass-threshold", threshold]) == 0
    capsys.readouterr()
    code = main(["train", "process_yield", "--ephemeral", "--budget", "1"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.integration
@pytest.mark.slow
def test_train_prints_split_baselines_and_promotes(data_dir, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    code, out = train(data_dir, capsys, signal=True)
    assert code == 0, out
    assert "split cross_validation: 150 rows < 1000" in out  # one run a day: no hour blocks
    assert "grouped by row" in out and "not a time axis" in out
    assert "parts: fold0" in out and "baselines: mean.r2=" in out
    assert "notes:" not in out  # both pass/fail classes in every fold
    assert "gate passed" in out and "beats baselines" in out
    assert "Traceback" not in out


@pytest.mark.integration
@pytest.mark.slow
def test_train_refuses_a_model_that_does_not_beat_its_baselines(data_dir, capsys,
                                                                 monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    code, out = train(data_dir, capsys, signal=False)
    assert code == 2, out
    assert "gate refused" in out and "does not beat its baselines" in out
    assert "Traceback" not in out
