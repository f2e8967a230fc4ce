"""The gateway's HorizontalPodAutoscaler, its metrics, and how a scale-down keeps the data.

Offline checks of deploy/k8s (the schema itself is test_k8s_schema's): the HPA scales the
gateway StatefulSet on CPU and on external metrics that prometheus-adapter computes from
series the gateway really exports; scale-down is slow and one replica at a time; and each
pod carries a drain sidecar that empties a removed replica's broker session
(mfg_assets/gateway/scaledown.py), tested here without a cluster.
"""

from __future__ import annotations

import http.server
import json
import re
import ssl
import threading
from pathlib import Path

import pytest
import yaml

import mfg_assets.cli as cli
from mfg_assets.gateway import scaledown
from mfg_assets.gateway.metrics import GatewayMetrics

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
ADAPTER = K8S / "prometheus-adapter" / "values.yaml"


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / "gateway.yaml").read_text()) if d]


def _one(kind: str) -> dict:
    (doc,) = [d for d in _docs() if d["kind"] == kind]
    return doc


def _exported_series() -> set[str]:
    """Sample names a gateway's /metrics serves (histogram buckets included)."""
    metrics = GatewayMetrics()
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_hpa_targets_the_gateway_statefulset_within_bounds():
    hpa, sts = _one("HorizontalPodAutoscaler"), _one("StatefulSet")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]}
    spec = hpa["spec"]
    # never below two (one may be restarting); the StatefulSet's own count is in range
    assert 2 <= spec["minReplicas"] <= sts["spec"]["replicas"] <= spec["maxReplicas"]
    assert spec["maxReplicas"] <= 8, "Delta commit contention: more replicas do not scale"


def test_hpa_scales_on_cpu_and_on_external_gateway_metrics():
    metrics = _one("HorizontalPodAutoscaler")["spec"]["metrics"]
    cpu = [m for m in metrics if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    assert 50 <= cpu[0]["resource"]["target"]["averageUtilization"] <= 90
    # utilization is relative to the request: the container must request CPU
    container = _one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"]
    external = {m["external"]["metric"]["name"]: m["external"]["target"]
                for m in metrics if m["type"] == "External"}
    assert external["mfg_gateway_backlog_messages"]["type"] == "AverageValue"
    # a target above a healthy replica's backlog and below its in-flight window (10000)
    assert 2500 < float(external["mfg_gateway_backlog_messages"]["averageValue"]) < 10000
    assert float(external["mfg_gateway_commit_latency_p95_seconds"]["value"]) > 1.7


def _external_metric_problems(hpa: dict, rules: list[dict], exported: set[str]) -> list[str]:
    """Why an HPA external metric would not be served from the gateway's series (empty: ok)."""
    by_name = {rule["name"]["as"]: rule for rule in rules}
    problems = []
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] != "External":
            continue
        name = metric["external"]["metric"]["name"]
        rule = by_name.get(name)
        if rule is None:
            problems.append(f"{name}: no adapter rule serves it")
            continue
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])[0]
        if series not in exported:
            problems.append(f"{name}: {series} is not on a gateway's /metrics")
        if not re.search(rule["name"]["matches"], series):
            problems.append(f"{name}: name.matches does not match {series}")
        if "<<.LabelMatchers>>" not in rule["metricsQuery"]:  # the HPA's namespace
            problems.append(f"{name}: the query ignores the HPA's namespace")
    return problems


def test_every_external_metric_comes_from_a_series_the_gateway_exports():
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]["external"]
    hpa = _one("HorizontalPodAutoscaler")
    assert sum(m["type"] == "External" for m in hpa["spec"]["metrics"]) >= 1
    assert _external_metric_problems(hpa, rules, _exported_series()) == []


def test_the_metric_check_catches_a_renamed_gateway_metric():
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]["external"]
    hpa = _one("HorizontalPodAutoscaler")
    # the gateway renamed its gauge: the adapter's series would be empty
    exported = {s.replace("pending_messages", "inflight_messages")
                for s in _exported_series()}
    assert any("mfg_gateway_pending_messages" in p
               for p in _external_metric_problems(hpa, rules, exported))
    rules[0]["name"]["as"] = "something_else"
    assert any("no adapter rule" in p
               for p in _external_metric_problems(hpa, rules, _exported_series()))


def test_scale_down_is_slow_and_one_replica_at_a_time():
    behavior = _one("HorizontalPodAutoscaler")["spec"]["behavior"]
    down = behavior["scaleDown"]
    # the default window is 300 s; a removal ends a broker session, so wait much longer
    assert down["stabilizationWindowSeconds"] >= 900
    assert down["selectPolicy"] == "Min"
    assert down["policies"] and all(
        p["type"] == "Pods" and p["value"] == 1 and p["periodSeconds"] >= 300
        for p in down["policies"])
    # scaling up is not held back as long
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]


def test_each_gateway_pod_drains_its_session_when_removed_for_good():
    pod = _one("StatefulSet")["spec"]["template"]["spec"]
    (sidecar,) = [c for c in pod.get("initContainers", [])
                  if c["command"][-1] == "mfg_assets.gateway.scaledown"]
    # a native sidecar: terminated after the gateway has exited, so the client id is free
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == pod["containers"][0]["image"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    values = {"POD_NAME": "mfg-gateway-3", "POD_NAMESPACE": "mfg"}
    args = [re.sub(r"\$\((\w+)\)", lambda m: values[m[1]], a) for a in sidecar["args"]]
    parsed = scaledown.build_parser().parse_args(args)
    assert (parsed.pod, parsed.namespace) == ("mfg-gateway-3", "mfg")
    assert parsed.statefulset == _one("StatefulSet")["metadata"]["name"]
    gateway_args = pod["containers"][0]["args"]
    assert parsed.share_group == gateway_args[gateway_args.index("--share-group") + 1]
    # the same broker credential, CA and lake credential as the gateway it drains for
    gateway = pod["containers"][0]
    assert sidecar["envFrom"] == gateway["envFrom"]
    assert sidecar["volumeMounts"] == gateway["volumeMounts"]
    for name in ("MFG_BROKER_USERNAME", "MFG_BROKER_PASSWORD"):
        assert env[name] == {e["name"]: e for e in gateway["env"]}[name]
    # time for the gateway's flush and then the drain
    assert pod["terminationGracePeriodSeconds"] >= 120


def test_the_drain_sidecar_may_read_the_statefulset_and_nothing_else():
    pod = _one("StatefulSet")["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    assert _one("ServiceAccount")["metadata"]["name"] == account
    binding, role = _one("RoleBinding"), _one("Role")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": "mfg"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["statefulsets"],
                              "resourceNames": ["mfg-gateway"], "verbs": ["get"]}]


# -- mfg_assets/gateway/scaledown.py --------------------------------------------------------


@pytest.mark.parametrize(("pod", "replicas", "removed"), [
    ("mfg-gateway-0", 2, False),
    ("mfg-gateway-1", 2, False),  # a restart or a rolling update: keep the session
    ("mfg-gateway-2", 2, True),   # 3 -> 2: the controller deletes ordinal 2
    ("mfg-gateway-1", 1, True),
    ("mfg-gateway-10", 4, True),
    ("mfg-gateway-3", 11, False),
])
def test_removed_for_good_only_at_or_above_the_desired_replicas(pod, replicas, removed):
    assert scaledown.removed_for_good(pod, replicas) is removed


@pytest.mark.parametrize("bad", ["mfg-gateway", "gateway-x", "7", "mfg-gateway-"])
def test_a_name_without_an_ordinal_is_refused(bad):
    with pytest.raises(ValueError):
        scaledown.ordinal(bad)


def test_on_termination_drains_a_removed_replica_with_our_cli(monkeypatch):
    commands: list[list[str]] = []
    rc = scaledown.on_termination("mfg-gateway-2", lambda: 2,
                                  lambda cmd: commands.append(cmd) or 0)
    assert rc == 0 and len(commands) == 1
    assert commands[0][0] == "mfg"
    seen = {}
    monkeypatch.setattr(cli, "_run_gateway", lambda args: seen.setdefault("args", args) and 0)
    assert cli.main(commands[0][1:]) == 0
    args = seen["args"]
    assert args.drain and args.client_id == "mfg-gateway-2" and args.share_group == "mfg-gateway"


def test_on_termination_keeps_the_session_of_a_replica_that_stays():
    commands: list[list[str]] = []
    assert scaledown.on_termination("mfg-gateway-1", lambda: 2, commands.append) == 0
    assert commands == []


def test_on_termination_keeps_the_session_when_the_api_cannot_be_read():
    def unreachable() -> int:
        raise OSError("connection refused")

    commands: list[list[str]] = []
    assert scaledown.on_termination("mfg-gateway-5", unreachable, commands.append) == 1
    assert commands == []


def test_desired_replicas_reads_spec_replicas_with_the_pod_token(tmp_path: Path):
    from mfg_assets.stack.pki import write_pki

    ca, cert, key = write_pki(tmp_path / "pki")  # a server certificate for 127.0.0.1
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("tok-123\n")
    (account / "ca.crt").write_bytes(ca.read_bytes())
    seen: dict[str, str] = {}

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen["path"], seen["auth"] = self.path, self.headers["Authorization"]
            body = json.dumps({"spec": {"replicas": 3}, "status": {"replicas": 4}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # TLS verified against the service account's ca.crt, as in the cluster
        api = f"https://127.0.0.1:{server.server_port}"
        assert scaledown.desired_replicas("mfg", "mfg-gateway", api, account) == 3
    finally:
        server.shutdown()
    assert seen["path"] == "/apis/apps/v1/namespaces/mfg/statefulsets/mfg-gateway"
    assert seen["auth"] == "Bearer tok-123"
