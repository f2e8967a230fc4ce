"""Shared fixtures: a lakehouse on tmp_path and settings that point at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfg_assets.lake.delta import Lake


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings' embedded default moved to tmp_path, so tests never touch data/."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("MFG_DATA_DIR", str(root))
    for name in ("MFG_LAKE_URI", "MFG_REPLAY_DIR", "DAGSTER_HOME", "MFG_CONTRACT"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def lake(data_dir: Path) -> Lake:
    return Lake(str(data_dir / "lake"), {})


@pytest.fixture
def broker(tmp_path: Path):
    """A private, restartable mosquitto with persistence, for one test."""
    from mfg_assets_tests.brokers import Mosquitto, mosquitto_binary

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); broker tests skipped")
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    server = Mosquitto(workdir, persistent=True).start()
    yield server
    server.stop()
