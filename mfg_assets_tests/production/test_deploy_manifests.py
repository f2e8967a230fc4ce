"""deploy/: the manifests parse, have the Kubernetes shape, and call our CLI as it is.

No cluster here and kubectl validates only against a server, so this checks what can be
checked offline: YAML, required fields, the CLI arguments each container passes, and that
every env var, secret and config map a pod names is one we define or document.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import mfg_assets.cli as cli
import mfg_assets.edge.cli as edge_cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "values.yaml")


# the key that holds a kind's content (None: a ServiceAccount needs none)
BODY = {"ConfigMap": "data", "Secret": "data", "Role": "rules", "RoleBinding": "roleRef",
        "ServiceAccount": None}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _workloads() -> list[dict]:
    docs = [doc for path in MANIFESTS for doc in _documents(path)]
    return [doc for doc in docs if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def test_there_are_manifests_for_gateway_and_edge():
    names = {doc["metadata"]["name"] for doc in _workloads()}
    assert "mfg-gateway" in names
    assert any(name.startswith("mfg-edge-") for name in names)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_has_the_kubernetes_shape(path: Path):
    for doc in _documents(path):
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"].get("name") and doc["metadata"].get("namespace") == "mfg"
        body = BODY.get(doc["kind"], "spec")
        assert body is None or body in doc, (doc["kind"], body)
        if doc["kind"] in ("Deployment", "StatefulSet"):
            spec = doc["spec"]
            selector = spec["selector"]["matchLabels"]
            labels = spec["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), "selector must match the pod labels"


def test_container_args_parse_with_our_cli(monkeypatch: pytest.MonkeyPatch):
    seen: dict[str, object] = {}
    monkeypatch.setattr(cli, "_run_gateway", lambda args: seen.setdefault("gateway", args) and 0)
    # `mfg edge run` is the device's own CLI (mfg_assets/edge/cli.py), delegated to
    monkeypatch.setattr(edge_cli, "run_edge", lambda args: seen.setdefault("edge", args) and 0)
    for doc in _workloads():
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert container["image"].endswith(":0.1.0"), "pin the image, never :latest"
            # Kubernetes expands $(VAR) from the container env; substitute as it would
            env = {e["name"]: e.get("value", "x") for e in container.get("env", [])}
            args = [
                re.sub(r"\$\((\w+)\)", lambda m, env=env: env[m[1]], arg)
                for arg in container["args"]
            ]
            assert cli.main(args) == 0
    gateway, edge = seen["gateway"], seen["edge"]
    assert gateway.share_group == "mfg-gateway" and gateway.metrics_port == 9108
    assert gateway.session_expiry == 3600
    assert edge.edge_id == "edge-cam01"


def test_gateway_runs_two_replicas_and_exposes_metrics_beyond_localhost():
    gateway = next(d for d in _workloads() if d["metadata"]["name"] == "mfg-gateway")
    assert gateway["spec"]["replicas"] == 2
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MFG_METRICS_HOST"]["value"] == "0.0.0.0"
    # credentials come from Secrets, never inline values
    for name in ("MFG_BROKER_USERNAME", "MFG_BROKER_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"]


def test_gateway_replicas_keep_their_client_id_across_restarts():
    """Issue 13 item 3: a Deployment's pods come back under new names, so `--client-id
    $(POD_NAME)` started a new session and the old one kept its share of the traffic on the
    broker until expiry. A StatefulSet's pod names (hence client ids) are stable."""
    docs = _documents(K8S / "gateway.yaml")
    (gateway,) = [d for d in docs if d["metadata"]["name"] == "mfg-gateway" and "template"
                  in d.get("spec", {})]
    assert gateway["kind"] == "StatefulSet"
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--client-id") + 1] == "$(POD_NAME)"
    pod_name = {e["name"]: e for e in container["env"]}["POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # the session outlives the restart objective but not a day (item 10)
    expiry = int(args[args.index("--session-expiry") + 1])
    assert 300 < expiry <= 3600, expiry
    # the governing Service exists in the same file and is headless
    (service,) = [d for d in docs if d["kind"] == "Service"
                  and d["metadata"]["name"] == gateway["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= (
        gateway["spec"]["template"]["metadata"]["labels"].items())


def test_no_secret_value_is_inlined_in_deploy():
    pattern = re.compile(r"(?i)(password|secret)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}")
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".conf", ""):
            for line in path.read_text().splitlines():
                if line.lstrip().startswith("#") or "secretKeyRef" in line:
                    continue
                assert not pattern.search(line), f"{path}: {line}"


def test_helm_values_use_k8s_run_launcher_and_queue_training():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"][-1] == "mfg_assets.definitions"
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {"key": "mfg/workload", "value": "training", "limit": 2} in limits[
        "tagConcurrencyLimits"
    ]
    assert values["global"]["postgresqlSecretName"]


def test_dockerfile_installs_cpu_torch_with_constraints():
    text = (K8S / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "download.pytorch.org/whl/cpu" in text and "-c constraints.txt" in text
    assert 'ENTRYPOINT ["mfg"]' in text


def _extras() -> dict[str, set[str]]:
    """pyproject's extras: name -> the distributions it installs, nested extras expanded."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]

    def dists(extra: str) -> set[str]:
        out: set[str] = set()
        for requirement in declared[extra]:
            req = Requirement(requirement)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                for nested in req.extras:
                    out |= dists(nested)
            else:
                out.add(canonicalize_name(req.name))
        return out

    return {extra: dists(extra) for extra in declared}


def _installed_extras(dockerfile: str) -> set[str]:
    """Extras of the project (``.``) that the Dockerfile's ``pip install`` lines install."""
    text = dockerfile.replace("\\\n", " ")
    extras: set[str] = set()
    for line in text.splitlines():
        if line.lstrip().startswith("RUN") and "pip install" in line:
            for match in re.finditer(r"""(?:^|\s)['"]?\.\[([\w,\- ]+)\]['"]?""", line):
                extras.update(e.strip() for e in match[1].split(","))
    return extras


def test_user_code_image_installs_the_extra_that_provides_dagster():
    """The base dependencies are the edge's (no Dagster): an image built with ``pip install .``
    cannot load the code location that the Helm chart starts from it. The extra that carries
    Dagster is read from pyproject, so renaming or splitting it fails here, not in a cluster."""
    needed = {"dagster", "dagster-postgres", "dagster-aws", "deltalake", "polars", "torch"}
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    if values["runLauncher"]["type"] == "K8sRunLauncher":  # run pods load it from the image
        needed.add("dagster-k8s")
    extras = _extras()
    assert not needed & {canonicalize_name(Requirement(r).name) for r in tomllib.loads(
        (DEPLOY.parent / "pyproject.toml").read_text())["project"]["dependencies"]}, (
        "the base dependencies changed: revisit which extra the image installs")
    installed = _installed_extras((K8S / "Dockerfile").read_text())
    assert installed, "the user code image installs no extra: `pip install .` is the edge only"
    assert installed <= extras.keys(), installed - extras.keys()
    provided = set().union(*(extras[e] for e in installed))
    assert needed <= provided, f"missing from {sorted(installed)}: {sorted(needed - provided)}"
    # the command the chart runs exists in that install
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"][-1] == "mfg_assets.definitions"


def test_the_extras_parser_reads_what_pip_reads():
    assert _installed_extras("RUN pip install -c constraints.txt . \\\n && true") == set()
    assert _installed_extras("RUN pip install -c c.txt '.[platform]' \\\n && x") == {"platform"}
    assert _installed_extras('RUN pip install ".[platform,s3]"') == {"platform", "s3"}
    assert "dagster" in _extras()["test"]  # test = ["mfg_assets[platform]", ...]


def test_compute_logs_go_to_s3_named_by_settings_everywhere():
    """Issue 17 item 7: the local/stack instance and the Helm values configure the same
    S3ComputeLogManager from the same variables, which the cluster's settings define, and
    every pod that writes or reads the logs gets them (the test against a real S3 server is
    test_compute_logs_s3.py)."""
    local = yaml.safe_load((DEPLOY / "local" / "dagster.yaml").read_text())["compute_logs"]
    assert (local["module"], local["class"]) == (
        "dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
    env_of = {key: value["env"] for key, value in local["config"].items()
              if isinstance(value, dict)}
    assert env_of == {"bucket": "DAGSTER_COMPUTE_LOG_BUCKET",
                      "prefix": "DAGSTER_COMPUTE_LOG_PREFIX", "endpoint_url": "AWS_ENDPOINT_URL"}
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    helm = values["computeLogManager"]
    assert helm["type"] == "S3ComputeLogManager"
    chart = helm["config"]["s3ComputeLogManager"]
    assert {"bucket": chart["bucket"]["env"], "prefix": chart["prefix"]["env"],
            "endpoint_url": chart["endpointUrl"]["env"]} == env_of
    (settings,) = _documents(K8S / "settings.yaml")
    assert set(env_of.values()) <= settings["data"].keys()
    # writers (run pods) and the reader (the UI) have the settings and the S3 credential
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for pod in (launcher, values["dagsterWebserver"]):
        assert {"name": "mfg-settings"} in pod["envConfigMaps"]
        assert {"name": "mfg-lake-s3"} in pod["envSecrets"]
    assert {"name": "mfg-settings"} in values["dagsterDaemon"]["envConfigMaps"]
