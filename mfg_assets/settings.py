"""One Settings object, read from environment variables: the ONE place that reads them.

The embedded default needs no variable at all: everything lives under the project's
``data/`` folder. Production switches (S3 lakehouse, broker, MLflow server) are the same
variables pointed elsewhere — configuration, never a code fork.

Read at call time: :func:`get_settings` reads the environment each time it is called, so a
test (or the closed loop) that changes a variable sees it on the next call without
re-importing anything. Nothing here runs at import time except constants.

Secrets (AWS keys, the broker password) are values here for the stream plane, which has
no Dagster; Dagster resources bind them as ``dg.EnvVar`` instead (``defs/resources.py``),
so the UI shows the variable's name, never the value. Their fields are left out of
``repr`` so that a logged Settings never prints them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONTRACT = PACKAGE_DIR / "uns" / "asyncapi" / "plant.yaml"
ROLLOUT_CRON = "*/10 * * * *"  # running canaries re-evaluated every ten minutes
RUN_EXECUTORS = ("", "multiprocess", "in_process")

# Object-store variables -> delta-rs option names. The secret ones reach Dagster as EnvVar.
AWS_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_REGION": "aws_region",
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "AWS_ALLOW_HTTP": "aws_allow_http",
}
AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


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


def _path(name: str) -> Path | None:
    value = _env(name)
    return Path(value) if value else None


def _whole(name: str, minimum: int = 1) -> int | None:
    """``name`` as a whole number >= ``minimum``, None when unset; anything else is a
    configuration error that names the variable."""
    value = (_env(name) or "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a whole number") from None
    if number < minimum:
        raise ValueError(f"{name}={value!r}: must be at least {minimum}")
    return number


@dataclass(frozen=True)
class AutomationSettings:
    """Cadences: production defaults; a demo, benchmark or test may shorten them."""

    sensor_interval_s: int | None = None  # MFG_SENSOR_INTERVAL_S: every loop sensor
    rollout_cron: str = ROLLOUT_CRON  # MFG_ROLLOUT_CRON
    run_executor: str = ""  # MFG_RUN_EXECUTOR: "" / multiprocess / in_process

    @classmethod
    def from_env(cls) -> AutomationSettings:
        executor = (_env("MFG_RUN_EXECUTOR") or "").strip()
        if executor not in RUN_EXECUTORS:
            raise ValueError(
                f"MFG_RUN_EXECUTOR={executor!r}: expected one of in_process, multiprocess"
            )
        return cls(
            sensor_interval_s=_whole("MFG_SENSOR_INTERVAL_S"),
            rollout_cron=(_env("MFG_ROLLOUT_CRON") or "").strip() or ROLLOUT_CRON,
            run_executor=executor,
        )


@dataclass(frozen=True)
class RolloutSettings:
    """The evidence a canary needs per group before a decision; None: the policy's own
    (50 / 30). The closed loop lowers them: its plant makes a few predictions a minute."""

    min_predictions: int | None = None  # MFG_ROLLOUT_MIN_PREDICTIONS
    min_labelled: int | None = None  # MFG_ROLLOUT_MIN_LABELLED

    @classmethod
    def from_env(cls) -> RolloutSettings:
        return cls(_whole("MFG_ROLLOUT_MIN_PREDICTIONS"), _whole("MFG_ROLLOUT_MIN_LABELLED"))


@dataclass(frozen=True)
class BrokerSettings:
    """Credentials and TLS files for every MQTT client (the URL is ``Settings.broker_url``)."""

    username: str | None = None  # MFG_BROKER_USERNAME
    password: str | None = field(default=None, repr=False)  # MFG_BROKER_PASSWORD
    ca_file: Path | None = None  # MFG_BROKER_CA
    cert_file: Path | None = None  # MFG_BROKER_CERT
    key_file: Path | None = None  # MFG_BROKER_KEY

    @classmethod
    def from_env(cls) -> BrokerSettings:
        return cls(
            _env("MFG_BROKER_USERNAME"),
            _env("MFG_BROKER_PASSWORD"),
            _path("MFG_BROKER_CA"),
            _path("MFG_BROKER_CERT"),
            _path("MFG_BROKER_KEY"),
        )


@dataclass(frozen=True)
class EdgeSettings:
    """Bundle signing and the bundle store (None: the dev keypair / ``data/bundles``)."""

    signing_key: str | None = None  # MFG_EDGE_SIGNING_KEY: private key file (platform side)
    public_key: str | None = None  # MFG_EDGE_PUBLIC_KEY: public key file or PEM (device side)
    bundle_store: str | None = None  # MFG_BUNDLE_STORE: folder or s3:// URI

    @classmethod
    def from_env(cls) -> EdgeSettings:
        return cls(
            _env("MFG_EDGE_SIGNING_KEY"), _env("MFG_EDGE_PUBLIC_KEY"), _env("MFG_BUNDLE_STORE")
        )


@dataclass(frozen=True)
class AlertSettings:
    # MFG_ALERT_WEBHOOK_URL: alerts are POSTed here as JSON (always logged either way). A
    # webhook URL often embeds a token, hence no repr.
    webhook_url: str = field(default="", repr=False)

    @classmethod
    def from_env(cls) -> AlertSettings:
        return cls(_env("MFG_ALERT_WEBHOOK_URL") or "")


@dataclass(frozen=True)
class StackSettings:
    """`make stack` (mfg_assets/stack/): how the launcher reaches its parts."""

    # MFG_STACK_PG_ADMIN: libpq connection string of a PostgreSQL admin (None: built from
    # the stack's host/port/admin user)
    pg_admin: str | None = field(default=None, repr=False)
    # MFG_STACK_GATEWAY_METRICS: comma-separated metrics URLs of the stack's gateways (set by
    # the launcher for its scenario child)
    gateway_metrics: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> StackSettings:
        urls = tuple(u for u in (_env("MFG_STACK_GATEWAY_METRICS") or "").split(",") if u)
        return cls(_env("MFG_STACK_PG_ADMIN"), urls)


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
    # delta-rs object-store options (AWS_*); the credentials in it are secrets.
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    # MLflow: a sqlite store under data/mlflow by default; MLFLOW_TRACKING_URI points at a
    # server instead (its artifact store then comes from the server).
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    # The plant's calendar (shifts, working days, holidays, planned stops) as YAML; None:
    # the simulated plant's default (mfg_assets/plant_calendar.py).
    plant_calendar_path: Path | None = None
    # Where a gateway's Prometheus endpoint binds (0.0.0.0 in a container); MFG_METRICS_HOST
    metrics_host: str = "127.0.0.1"
    # Trials of a drift retrain; None: the models' default (MFG_DRIFT_RETRAIN_BUDGET)
    drift_retrain_budget: int | None = None
    # The plant's promotion-gate overrides per model family (floors, baseline margin) as
    # YAML; None: the family registry's defaults (MFG_MODEL_GATES, see ml/gate.gate_family)
    model_gates_path: Path | None = None
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    stack: StackSettings = field(default_factory=StackSettings)

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
            plant_calendar_path=_path("MFG_PLANT_CALENDAR"),
            metrics_host=_env("MFG_METRICS_HOST") or "127.0.0.1",
            drift_retrain_budget=_whole("MFG_DRIFT_RETRAIN_BUDGET"),
            model_gates_path=_path("MFG_MODEL_GATES"),
            automation=AutomationSettings.from_env(),
            rollout=RolloutSettings.from_env(),
            broker=BrokerSettings.from_env(),
            edge=EdgeSettings.from_env(),
            alerts=AlertSettings.from_env(),
            stack=StackSettings.from_env(),
            **_mlflow_from_env(data_dir),
        )

    @property
    def is_remote_lake(self) -> bool:
        return "://" in self.lake_uri and not self.lake_uri.startswith("file://")

    @property
    def bundle_store_uri(self) -> str:
        """MFG_BUNDLE_STORE, else ``<data dir>/bundles`` (the embedded default)."""
        return self.edge.bundle_store or str(self.data_dir / "bundles")

    def sensor_interval(self, default: int) -> int:
        """Seconds between a loop sensor's evaluations: its production ``default``, or
        ``MFG_SENSOR_INTERVAL_S`` when set."""
        return self.automation.sensor_interval_s or default


def _storage_options_from_env() -> dict[str, str]:
    """delta-rs object-store options for an S3 lakehouse; empty for the local default."""
    return {key: value for env, key in AWS_OPTIONS.items() if (value := _env(env))}


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


def sensor_interval(default: int) -> int:
    """Seconds between a loop sensor's evaluations: its production ``default``, or
    ``MFG_SENSOR_INTERVAL_S`` when set (`mfg demo --scenario drift`, bench_loop and the loop
    test close the whole loop in minutes, which 30-300 s ticks per stage would not allow).
    Read when the definitions are built (a sensor's interval is part of its definition)."""
    return get_settings().sensor_interval(default)


def rollout_cadence() -> str:
    """How often running canaries are re-evaluated (cron; ``MFG_ROLLOUT_CRON`` overrides)."""
    return get_settings().automation.rollout_cron
