"""Drain a gateway replica's broker session when its StatefulSet removes it for good.

A StatefulSet scaled down (by hand or by the HorizontalPodAutoscaler) deletes its highest
ordinals. The removed replica's persistent MQTT session stays a member of the shared
subscription and keeps collecting its share until it expires, then drops it
(deploy/README.md, "Gateway replicas"). A restart, an eviction or a rolling update must keep
the session instead: the pod comes back under the same name and resumes it.

This runs as a native sidecar of each gateway pod (``python -m mfg_assets.gateway.scaledown
--pod $(POD_NAME) ...``). Kubernetes sends a sidecar SIGTERM only after the pod's main
containers have exited, so the gateway has flushed, acknowledged and disconnected by then,
and nothing else holds the client id. The sidecar asks the API server for the StatefulSet's
desired replica count: a pod whose ordinal is at or above it is being removed for good, and
its session is drained with ``mfg gateway --drain``; otherwise it exits and the session stays.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mfg.gateway.scaledown")

API = "https://kubernetes.default.svc"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def ordinal(pod_name: str) -> int:
    """A StatefulSet pod's ordinal: ``mfg-gateway-3`` -> 3."""
    head, sep, tail = pod_name.rpartition("-")
    if not (head and sep and tail.isdigit()):
        raise ValueError(f"{pod_name!r} is not a StatefulSet pod name (<set>-<ordinal>)")
    return int(tail)


def removed_for_good(pod_name: str, desired_replicas: int) -> bool:
    """The controller deletes ordinals >= spec.replicas on scale-down, and only then."""
    return ordinal(pod_name) >= desired_replicas


def desired_replicas(
    namespace: str, statefulset: str, api: str = API, account: Path = SERVICE_ACCOUNT
) -> int:
    """spec.replicas of the StatefulSet, read with the pod's own service account token."""
    url = f"{api}/apis/apps/v1/namespaces/{namespace}/statefulsets/{statefulset}"
    token = (account / "token").read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    context = ssl.create_default_context(cafile=str(account / "ca.crt"))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return int(json.load(response)["spec"]["replicas"])


def drain_command(pod_name: str, share_group: str) -> list[str]:
    return ["mfg", "gateway", "--client-id", pod_name, "--share-group", share_group,
            "--metrics-port", "0", "--drain"]


def on_termination(
    pod_name: str,
    replicas: Callable[[], int],
    run: Callable[[list[str]], int],
    share_group: str = "mfg-gateway",
) -> int:
    """What the sidecar does once terminated: drain if removed for good, else nothing."""
    try:
        wanted = replicas()
    except (OSError, ValueError, KeyError) as exc:
        # Unknown: keep the session. A restart resumes it; a removed replica's share is
        # then lost at expiry, which the alert on mfg_gateway_connected reports.
        log.error("cannot read the StatefulSet's replicas (%s): session kept", exc)
        return 1
    if not removed_for_good(pod_name, wanted):
        log.info("%s stays (replicas=%d): session kept for its restart", pod_name, wanted)
        return 0
    log.info("%s removed for good (replicas=%d): draining its session", pod_name, wanted)
    return run(drain_command(pod_name, share_group))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pod", required=True, help="this pod's name (the client id)")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--statefulset", default="mfg-gateway")
    parser.add_argument("--share-group", default="mfg-gateway")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ordinal(args.pod)  # fail at start, not at the end of the pod's life
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    signal.signal(signal.SIGINT, lambda *_: terminated.set())
    while not terminated.wait(3600):
        pass
    return on_termination(
        args.pod,
        lambda: desired_replicas(args.namespace, args.statefulset),
        lambda cmd: subprocess.call(cmd),
        args.share_group,
    )


if __name__ == "__main__":
    sys.exit(main())
