"""Start and stop the local production-like stack (`python -m mfg_assets.stack up|down`).

Order: PostgreSQL databases -> SeaweedFS (buckets) -> mosquitto (TLS, passwords, ACL) ->
MLflow server -> dagster-webserver + dagster-daemon -> edge registrations -> two gateway
replicas -> four edge runtimes (edge-press1 on the press line's Sparkplug node). Every
server listens on 127.0.0.1 only. What runs where is written to ``<root>/stack.json``
(ports, URLs, process groups; no secrets), so that ``down`` from another shell can stop a
stack whose launcher died.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from mfg_assets.edge.store import Device
from mfg_assets.settings import PACKAGE_DIR, get_settings
from mfg_assets.stack import broker as broker_files
from mfg_assets.stack import postgres
from mfg_assets.stack.pki import write_pki
from mfg_assets.stack.processes import Service, free_port, http_ok, port_open, stop_group
from mfg_assets.stack.secrets import StackSecrets
from mfg_assets.stack.supervise import Supervisor

PROJECT = PACKAGE_DIR.parent
DEPLOY = PROJECT / "deploy"
BUCKETS = ("lake", "bundles", "mlflow", "logs")
LAKE_URI = "s3://lake/lake"
BUNDLE_STORE = "s3://bundles/bundles"
MLFLOW_ARTIFACTS = "s3://mlflow/artifacts"
# Dagster's compute logs (run and step stdout/stderr): S3ComputeLogManager, see
# deploy/local/dagster.yaml; written by the runs, read back by the webserver
COMPUTE_LOG_BUCKET = "logs"
COMPUTE_LOG_PREFIX = "dagster/compute-logs"
REGION = "us-east-1"
DEFAULT_EDGES = ("edge-cam01", "edge-cam02", "edge-weld1", "edge-press1")
# Ports `make stack` prefers (falls back to a free one when taken); tests use free ports.
PREFERRED = {"dagster": 3030, "mlflow": 5050, "s3": 8333, "mqtts": 8883}

# SeaweedFS actions per identity: each component only the buckets it needs.
S3_ACTIONS: dict[str, list[str]] = {
    "admin": ["Admin", "Read", "Write", "List", "Tagging"],  # the launcher: creates buckets
    "platform": [f"{a}:{b}" for b in ("lake", "bundles") for a in ("Read", "Write", "List",
                                                                   "Tagging")]
    # Dagster's runs write their stdout/stderr there, the webserver reads them back
    + [f"{a}:{COMPUTE_LOG_BUCKET}" for a in ("Read", "Write", "List")],
    "gateway": [f"{a}:lake" for a in ("Read", "Write", "List", "Tagging")],
    "mlflow": [f"{a}:mlflow" for a in ("Read", "Write", "List")],
    "edge": ["Read:bundles", "List:bundles"],
    # people with `mfg sql` or polars: read the lakehouse, write nothing (no Write, no Tagging)
    "analyst": ["Read:lake", "List:lake"],
}


def s3_identities(s3_secrets: dict[str, list[str]]) -> list[dict[str, object]]:
    """SeaweedFS's identity list (-s3.config) for the stack's credentials."""
    return [
        {
            "name": name,
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": S3_ACTIONS[name],
        }
        for name, (key, secret) in s3_secrets.items()
        if name in S3_ACTIONS
    ]


@dataclass
class StackConfig:
    root: Path = field(default_factory=lambda: PROJECT / "data" / "stack")
    name: str = "mfg"  # prefix of the PostgreSQL databases/roles and of client ids
    edges: tuple[str, ...] = DEFAULT_EDGES
    gateways: int = 2
    preferred_ports: bool = True
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_admin_user: str = "postgres"  # creates the roles and databases (MFG_STACK_PG_ADMIN)
    edge_heartbeat_s: float = 10.0
    enterprise: str = "acme"


def _venv_bin(name: str) -> str:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _clean_env() -> dict[str, str]:
    """The launcher's environment without any project or cloud setting: each component
    gets exactly what it is given below, nothing inherited by accident."""
    prefixes = ("AWS_", "MFG_", "MLFLOW_", "DAGSTER_", "PG", "SSL_CERT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.root = self.config.root.resolve()
        self.services: list[Service] = []
        self.ports: dict[str, int] = {}
        self.secrets: StackSecrets | None = None
        self.devices: list[Device] = []
        self.timings: dict[str, float] = {}
        self.supervisor: Supervisor | None = None

    # -- names ------------------------------------------------------------------------------

    @property
    def db(self) -> dict[str, str]:
        return {"dagster": f"{self.config.name}_dagster", "mlflow": f"{self.config.name}_mlflow"}

    def gateway_ids(self) -> list[str]:
        return [f"{self.config.name}-gateway-{i + 1}" for i in range(self.config.gateways)]

    def _port(self, name: str) -> int:
        preferred = PREFERRED.get(name) if self.config.preferred_ports else None
        self.ports[name] = port = free_port(preferred)
        return port

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def broker_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.ports['mqtts']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dagster']}"

    def gateway_metrics(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports[g]}/metrics" for g in self.gateway_ids()]

    # -- environments per component ----------------------------------------------------------

    def s3_env(self, identity: str) -> dict[str, str]:
        assert self.secrets is not None
        key, secret = self.secrets.s3[identity]
        return {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",  # loopback only; a plant endpoint is https
            "AWS_EC2_METADATA_DISABLED": "true",  # no cloud metadata lookups on a laptop
        }

    def broker_env(self, user: str) -> dict[str, str]:
        assert self.secrets is not None
        return {
            "MFG_BROKER_URL": self.broker_url,
            "MFG_BROKER_USERNAME": user,
            "MFG_BROKER_PASSWORD": self.secrets.broker[user],
            "MFG_BROKER_CA": str(self.root / "secrets" / "pki" / "ca.pem"),
        }

    def platform_env(self) -> dict[str, str]:
        """Dagster (webserver, daemon, runs) and the scenario driver: the asset plane."""
        assert self.secrets is not None
        return {
            **_clean_env(),
            **self.s3_env("platform"),
            "MFG_DATA_DIR": str(self.root / "platform"),
            "MFG_LAKE_URI": LAKE_URI,
            "MFG_BUNDLE_STORE": BUNDLE_STORE,
            "MFG_ENTERPRISE": self.config.enterprise,
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "DAGSTER_HOME": str(self.root / "dagster"),
            "DAGSTER_PG_HOST": self.config.pg_host,
            "DAGSTER_PG_PORT": str(self.config.pg_port),
            "DAGSTER_PG_DB": self.db["dagster"],
            "DAGSTER_PG_USERNAME": self.db["dagster"],
            "DAGSTER_PG_PASSWORD": self.secrets.postgres[self.db["dagster"]],
            "DAGSTER_COMPUTE_LOG_BUCKET": COMPUTE_LOG_BUCKET,
            "DAGSTER_COMPUTE_LOG_PREFIX": COMPUTE_LOG_PREFIX,
            "MFG_EDGE_SIGNING_KEY": str(self.secrets.signing_key),
            "MFG_EDGE_PUBLIC_KEY": str(self.secrets.public_key),
        }

    def scenario_env(self) -> dict[str, str]:
        """The platform plus the plant's broker credential (the simulator publishes)."""
        return {
            **self.platform_env(),
            **self.broker_env(broker_files.PLANT_USER),
            "MFG_STACK_GATEWAY_METRICS": ",".join(self.gateway_metrics()),
        }

    def gateway_env(self) -> dict[str, str]:
        return {
            **_clean_env(),
            **self.s3_env("gateway"),
            **self.broker_env(broker_files.GATEWAY_USER),
            "MFG_DATA_DIR": str(self.root / "gateway"),
            "MFG_LAKE_URI": LAKE_URI,
            "MFG_ENTERPRISE": self.config.enterprise,
        }

    def edge_env(self, edge_id: str) -> dict[str, str]:
        assert self.secrets is not None
        return {
            **_clean_env(),
            **self.s3_env("edge"),
            **self.broker_env(edge_id),
            "MFG_DATA_DIR": str(self.root / "edges" / edge_id),
            "MFG_BUNDLE_STORE": BUNDLE_STORE,
            # the fleet's public key, by configuration; the signing key never reaches an edge
            "MFG_EDGE_PUBLIC_KEY": str(self.secrets.public_key),
        }

    # -- start -------------------------------------------------------------------------------

    def start(self) -> Stack:
        stop_request(self.root).unlink(missing_ok=True)  # a new start supervises again
        started = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".gitignore").write_text("*\n")
        try:
            self._prepare()
            self._step("postgres", self._start_postgres)
            self._step("seaweedfs", self._start_s3)
            self._step("mosquitto", self._start_broker)
            self._step("mlflow+dagster", self._start_servers)
            self._step("edge registrations", self._register_edges)
            self._step("gateways", self._start_gateways)
            self._step("edges", self._start_edges)
        except BaseException:
            self.stop()
            raise
        self.timings["start_total_s"] = round(time.perf_counter() - started, 1)
        # from now on a process that dies is reaped, alerted and restarted under the same
        # command line (a gateway: the same client id, so it resumes its broker session)
        self.supervisor = Supervisor(self.services, on_restart=lambda s: self.write_state(),
                                     stop_requested=lambda: stop_request(self.root).exists())
        self.supervisor.start()
        self.write_state()
        return self

    def _step(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.timings[f"start_{name}_s"] = round(time.perf_counter() - t0, 1)
        self.write_state()

    def _prepare(self) -> None:
        from mfg_assets.cli import _sim_device  # the simulator plant's edges and their topics

        self.devices = []
        for edge_id in self.config.edges:
            device = _sim_device(edge_id)
            if device is None:
                raise ValueError(f"{edge_id} is not an edge of the simulated plant")
            self.devices.append(device)
        users = [broker_files.GATEWAY_USER, broker_files.PLANT_USER, *self.config.edges]
        self.secrets = StackSecrets.load_or_create(
            self.root / "secrets", users, list(S3_ACTIONS), list(self.db.values())
        )
        for name in ("s3", "mqtts", "mlflow", "dagster", *self.gateway_ids()):
            self._port(name)

    def _start_postgres(self) -> None:
        assert self.secrets is not None
        admin = get_settings().stack.pg_admin or (
            f"host={self.config.pg_host} port={self.config.pg_port} "
            f"user={self.config.pg_admin_user} dbname=postgres"
        )
        for database in self.db.values():
            postgres.ensure_database(admin, database, self.secrets.postgres[database])

    def _start_s3(self) -> None:
        assert self.secrets is not None
        workdir = self.root / "seaweedfs"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        identities = s3_identities(self.secrets.s3)
        config = workdir / "s3.json"
        config.unlink(missing_ok=True)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"identities": identities}, out)
        inner = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc",
        )}
        self.ports.update({f"weed.{k}": v for k, v in inner.items()})
        sockets = Path("/tmp") / f"mfg-stack-{self.ports['s3']}"  # unix socket paths <108 B
        sockets.mkdir(exist_ok=True)
        argv = [
            _venv_bin("weed"), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={workdir / 'data'}",
            *(f"-{name}={port}" for name, port in inner.items()),
            "-s3", f"-s3.port={self.ports['s3']}", f"-s3.config={config}",
            f"-s3.localSocket={sockets / 's3.sock'}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-volume.max=0", "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",  # one node: nothing to drain on stop (default 10 s)
        ]
        service = self._spawn("seaweedfs", argv, _clean_env(), lambda: http_ok(self.s3_endpoint),
                              cwd=workdir)
        service.wait_ready(90)
        self._create_buckets()

    def _create_buckets(self) -> None:
        import boto3
        from botocore.exceptions import ClientError

        assert self.secrets is not None
        key, secret = self.secrets.s3["admin"]
        client = boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=key,
                              aws_secret_access_key=secret, region_name=REGION)
        deadline = time.monotonic() + 60
        for bucket in BUCKETS:
            while True:
                try:
                    client.create_bucket(Bucket=bucket)
                    break
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        break
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)  # the filer may still be electing its master

    def _start_broker(self) -> None:
        assert self.secrets is not None
        workdir = self.root / "mosquitto"
        pki = write_pki(self.root / "secrets" / "pki")
        acl = broker_files.acl_text(self.config.enterprise, self.devices)
        conf = broker_files.write_broker_files(
            workdir, DEPLOY / "broker" / "mosquitto.conf", self.ports["mqtts"], pki,
            self.secrets.broker, acl, passwd_binary=_mosquitto("mosquitto_passwd"),
        )
        service = self._spawn("mosquitto", [_mosquitto("mosquitto"), "-c", str(conf)],
                              _clean_env(), lambda: port_open(self.ports["mqtts"]))
        service.wait_ready(20)

    def _start_servers(self) -> None:
        """MLflow, dagster-webserver and dagster-daemon start in parallel (each takes a while
        to import); the scenario needs MLflow and the instance, the UI is for people."""
        assert self.secrets is not None
        mlflow_env = {
            **_clean_env(),
            **self.s3_env("mlflow"),
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "PGPASSWORD": self.secrets.postgres[self.db["mlflow"]],  # not on the command line
        }
        backend = (f"postgresql+psycopg2://{self.db['mlflow']}@{self.config.pg_host}:"
                   f"{self.config.pg_port}/{self.db['mlflow']}")
        mlflow = self._spawn("mlflow", [
            _venv_bin("mlflow"), "server", "--host", "127.0.0.1",
            "--port", str(self.ports["mlflow"]), "--workers", "1",
            "--backend-store-uri", backend,
            # proxied artifacts: clients talk to the server, only it holds the S3 credential
            "--serve-artifacts", "--artifacts-destination", MLFLOW_ARTIFACTS,
            "--uvicorn-opts", "--timeout-graceful-shutdown 5",
        ], mlflow_env, lambda: http_ok(f"{self.mlflow_url}/health"))
        home = self.root / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / "local" / "dagster.yaml", home / "dagster.yaml")
        env = self.platform_env()
        workspace = str(PROJECT / "workspace.yaml")
        web = self._spawn("dagster-webserver", [
            _venv_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.ports["dagster"]),
            "-w", workspace,
        ], env, lambda: http_ok(f"{self.dagster_url}/server_info"), cwd=PROJECT)
        daemon = self._spawn("dagster-daemon", [_venv_bin("dagster-daemon"), "run", "-w",
                                                workspace], env, None, cwd=PROJECT)
        mlflow.wait_ready(180)
        web.wait_ready(240)
        daemon.wait_ready(1)

    def _register_edges(self) -> None:
        """`mfg edge register` for each edge, with the platform credential (edges cannot)."""
        env = {**self.platform_env()}

        def register(edge_id: str) -> None:
            import subprocess

            out = subprocess.run(
                [_venv_bin("mfg"), "edge", "register", "--edge-id", edge_id,
                 "--bundle-store", BUNDLE_STORE],
                env=env, capture_output=True, text=True, timeout=120,
            )
            if out.returncode != 0:
                raise RuntimeError(f"registering {edge_id} failed: {out.stderr[-2000:]}")

        with ThreadPoolExecutor(len(self.config.edges)) as pool:
            list(pool.map(register, self.config.edges))

    def _start_gateways(self) -> None:
        services = []
        for gateway_id in self.gateway_ids():
            metrics = f"http://127.0.0.1:{self.ports[gateway_id]}/metrics"
            services.append(self._spawn(gateway_id, [
                _venv_bin("mfg"), "gateway", "--client-id", gateway_id,
                "--share-group", f"{self.config.name}-gateway",
                "--metrics-port", str(self.ports[gateway_id]),
            ], self.gateway_env(), lambda url=metrics: _gauge(url, "mfg_gateway_connected") == 1))
        for service in services:
            service.wait_ready(120)

    def _start_edges(self) -> None:
        log = self.root / "mosquitto" / "mosquitto.log"
        offset = log.stat().st_size if log.exists() else 0  # earlier runs' lines do not count
        services = []
        for edge_id in self.config.edges:
            client_id = f"mfg-edge-{edge_id}"
            services.append(self._spawn(f"edge:{edge_id}", [
                _venv_bin("mfg"), "edge", "run", "--edge-id", edge_id,
                "--poll", "2", "--heartbeat", str(self.config.edge_heartbeat_s),
            ], self.edge_env(edge_id), lambda c=client_id: _connected_in_log(log, c, offset)))
        for service in services:
            service.wait_ready(120)

    def _spawn(self, name, argv, env, ready, cwd: Path | None = None) -> Service:
        log = self.root / "logs" / f"{name.replace(':', '-')}.log"
        service = Service(name, argv, env, log, ready, cwd).start()
        self.services.append(service)
        return service

    # -- state, stop -------------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        out = {}
        if "dagster" in self.ports:
            out["dagster"] = self.dagster_url
        if "mlflow" in self.ports:
            out["mlflow"] = self.mlflow_url
        if "s3" in self.ports:
            out["s3"] = self.s3_endpoint
        if "mqtts" in self.ports:
            out["broker"] = self.broker_url
        for gateway_id in self.gateway_ids():
            if gateway_id in self.ports:
                out[f"{gateway_id} metrics"] = f"http://127.0.0.1:{self.ports[gateway_id]}/metrics"
        return out

    def write_state(self) -> None:
        state = {
            "launcher_pid": os.getpid(),
            "urls": self.urls(),
            "ports": self.ports,
            "databases": self.db,
            "services": {s.name: s.pid for s in self.services if s.pid},
            "timings": self.timings,
            "lake": LAKE_URI,
            "bundle_store": BUNDLE_STORE,
            "mlflow_artifacts": MLFLOW_ARTIFACTS,
            "compute_logs": f"s3://{COMPUTE_LOG_BUCKET}/{COMPUTE_LOG_PREFIX}",
        }
        (self.root / "stack.json").write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        """Stop in reverse order, one tier at a time (the services of a tier in parallel):
        edges, then gateways (they flush to the lake), Dagster, MLflow, broker, S3 last."""
        if self.supervisor is not None:  # stopping on purpose: nothing is restarted now
            self.supervisor.stop()
            self.supervisor = None
        if not self.services:  # already stopped (start() failed, then the caller's finally)
            return
        started = time.perf_counter()
        tiers: dict[int, list[Service]] = {}
        for service in self.services:
            tiers.setdefault(_tier(service.name), []).append(service)
        for tier in sorted(tiers):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(tiers[tier])) as pool:
                list(pool.map(lambda s: s.stop(), tiers[tier]))
            names = "+".join(sorted({s.name.split(":")[0] for s in tiers[tier]}))
            self.timings[f"stop_{names}_s"] = round(time.perf_counter() - t0, 1)
        self.services = []
        self.timings["stop_total_s"] = round(time.perf_counter() - started, 1)
        for path in Path("/tmp").glob(f"mfg-stack-{self.ports.get('s3', 0)}"):
            shutil.rmtree(path, ignore_errors=True)
        for port in (v for k, v in self.ports.items() if k.startswith("weed.") or k == "s3"):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)
        state = self.root / "stack.json"
        if state.exists():
            doc = json.loads(state.read_text())
            doc["services"] = {}
            doc["stopped"] = True
            doc["timings"] = self.timings
            state.write_text(json.dumps(doc, indent=2))


def _tier(name: str) -> int:
    order = ("edge:", "gateway", "dagster", "mlflow", "mosquitto", "seaweedfs")
    return next((i for i, key in enumerate(order) if key in name), len(order))


def stop_request(root: Path) -> Path:
    """The file `down` leaves so the launcher's supervisor restarts nothing it stops."""
    return root / "stop-requested"


def stop_from_state(root: Path, timeout_s: float = 60.0) -> list[str]:
    """`down` from another shell: ask the launcher to stop (it stops its services in order);
    if it is gone, stop the recorded process groups directly. Returns what was stopped."""
    path = root / "stack.json"
    if not path.exists():
        return []
    stop_request(root).touch()
    doc = json.loads(path.read_text())
    stopped = []
    launcher = doc.get("launcher_pid")
    if launcher and launcher != os.getpid() and _is_stack_launcher(launcher):
        psutil.Process(launcher).terminate()
        with contextlib.suppress(psutil.TimeoutExpired):
            psutil.Process(launcher).wait(timeout_s)
        stopped.append(f"launcher {launcher}")
        doc = json.loads(path.read_text())  # it clears its services once they are stopped
    for name, pid in reversed(list(doc.get("services", {}).items())):
        if psutil.pid_exists(pid):
            stop_group(pid)
            stopped.append(f"{name} {pid}")
    return stopped


def _is_stack_launcher(pid: int) -> bool:
    try:
        return "mfg_assets.stack" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _mosquitto(name: str) -> str:
    for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        if Path(folder, name).exists():
            return str(Path(folder, name))
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not installed (make system-deps)")
    return found


def _gauge(url: str, name: str) -> float | None:
    """One value from a Prometheus text endpoint (None when unreachable or absent)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return parse_metric(text, name)


def parse_metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _connected_in_log(log: Path, client_id: str, offset: int = 0) -> bool:
    """mosquitto logs "New client connected ... as <client id>" once TLS and password passed."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return False
    return any("New client connected" in line and f" as {client_id} " in line
               for line in text.splitlines())
