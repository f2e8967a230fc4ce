"""deploy/k8s manifests against the Kubernetes API's own OpenAPI schemas (offline).

kubernetes-validate ships the schemas of each Kubernetes release, so every Deployment,
StatefulSet, Service and ConfigMap is checked field by field (strict: unknown fields are errors) for
the oldest and newest release we claim to support, without a cluster.
"""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "values.yaml")
VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest supported Kubernetes


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path: Path, version: str):
    docs = _documents(path)
    assert docs, path
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any mismatch


def test_the_schema_check_catches_a_misspelt_field():
    (gateway,) = [d for d in _documents(K8S / "gateway.yaml") if d["kind"] == "StatefulSet"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolice"] = container.pop("imagePullPolicy", "IfNotPresent")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, VERSIONS[-1], strict=True)
