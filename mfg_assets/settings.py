"""One Settings object, read from environment variables.

The embedded default needs no variable at all: everything lives under the project's
``data/`` folder. Production switches (S3 lakehouse, broker, MLflow server) are the same
variables pointed elsewhere — configuration, never a code fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONTRACT = PACKAGE_DIR / "uns" / "asyncapi" / "plant.yaml"


def _default_data_dir() -> Path:
    # An editable install (the README's setup) keeps data/ beside the package; an installed
    # wheel has no project folder, so fall back to the working directory.
    project = PACKAGE_DIR.parent
    if (project / "pyproject.toml").exists():
        return project / "data"
    return Path.cwd() / "data"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake_uri: str
    replay_dir: Path
    dagster_home: Path
    contract_path: Path
    broker_url: str
    enterprise: str
    partition_start: date
    storage_options: dict[str, str] = field(default_factory=dict)
    # MLflow: a sqlite store under data/mlflow by default; MLFLOW_TRACKING_URI points at a
    # server instead (its artifact store then comes from the server).
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    # The plant's calendar (shifts, working days, holidays, planned stops) as YAML; None:
    # the simulated plant's default (mfg_assets/plant_calendar.py).
    plant_calendar_path: Path | None = None

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("MFG_DATA_DIR") or _default_data_dir()).resolve()
        return cls(
            data_dir=data_dir,
            lake_uri=_env("MFG_LAKE_URI") or str(data_dir / "lake"),
            replay_dir=Path(_env("MFG_REPLAY_DIR") or data_dir / "replay"),
            dagster_home=Path(_env("DAGSTER_HOME") or data_dir / "dagster"),
            contract_path=Path(_env("MFG_CONTRACT") or DEFAULT_CONTRACT),
            broker_url=_env("MFG_BROKER_URL") or "mqtt://127.0.0.1:1883",
            enterprise=_env("MFG_ENTERPRISE") or "acme",
            partition_start=date.fromisoformat(_env("MFG_PARTITION_START") or "2026-11-01"),
            storage_options=_storage_options_from_env(),
            plant_calendar_path=Path(p) if (p := _env("MFG_PLANT_CALENDAR")) else None,
            **_mlflow_from_env(data_dir),
        )

    @property
    def is_remote_lake(self) -> bool:
        return "://" in self.lake_uri and not self.lake_uri.startswith("file://")


def _storage_options_from_env() -> dict[str, str]:
    """delta-rs object-store options for an S3 lakehouse; empty for the local default."""
    names = {
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
        "AWS_REGION": "aws_region",
        "AWS_ENDPOINT_URL": "aws_endpoint_url",
        "AWS_ALLOW_HTTP": "aws_allow_http",
    }
    options = {key: os.environ[env] for env, key in names.items() if os.environ.get(env)}
    return options


def _mlflow_from_env(data_dir: Path) -> dict[str, str]:
    """Tracking URI and artifact root; a server (MLFLOW_TRACKING_URI) keeps its own artifacts."""
    uri = _env("MLFLOW_TRACKING_URI")
    if uri:
        return {
            "mlflow_tracking_uri": uri,
            "mlflow_artifact_root": _env("MFG_MLFLOW_ARTIFACTS") or "",
        }
    return {
        "mlflow_tracking_uri": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
        "mlflow_artifact_root": _env("MFG_MLFLOW_ARTIFACTS")
        or (data_dir / "mlflow" / "artifacts").as_uri(),
    }


def get_settings() -> Settings:
    """Settings as the environment says now (tests change the environment between calls)."""
    return Settings.from_env()
