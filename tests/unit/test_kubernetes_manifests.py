"""deploy/kubernetes/: every manifest is valid against the Kubernetes OpenAPI schema
(kubernetes-validate's bundled schemas, strict: an unknown field fails, offline), and the
pieces fit each other and the image (ports, probe paths, claims, labels)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
#: The oldest Kubernetes release still supported upstream when these were written.
KUBERNETES = "1.32"


def kustomization() -> dict:
    return yaml.safe_load((FOLDER / "kustomization.yaml").read_text())


def resources() -> list[dict]:
    """Every object of the files the kustomization lists."""
    found = []
    for name in kustomization()["resources"]:
        found += [doc for doc in yaml.safe_load_all((FOLDER / name).read_text()) if doc]
    return found


def by_kind(kind: str) -> list[dict]:
    return [doc for doc in resources() if doc["kind"] == kind]


def test_the_kustomization_lists_every_manifest_in_the_folder():
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("doc", resources(), ids=lambda doc: doc["kind"])
def test_every_manifest_is_valid_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_schema_check_refuses_a_misspelt_field():
    (service,) = by_kind("Service")
    service["spec"]["selectr"] = service["spec"].pop("selector")
    with pytest.raises(kubernetes_validate.ValidationError, match="selectr"):
        kubernetes_validate.validate(service, KUBERNETES, strict=True)


def test_probes_use_the_probe_port_and_the_service_only_the_api_port():
    (deployment,) = by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    image = dict(re.findall(r"(KONTEXT_(?:PROBE_)?PORT)=(\d+)",
                            (ROOT / "Dockerfile.cuda").read_text()))
    assert ports == {"http": int(image["KONTEXT_PORT"]),
                     "probes": int(image["KONTEXT_PROBE_PORT"])}
    probes = {name: container[name]["httpGet"] for name in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {name: (get["path"], get["port"]) for name, get in probes.items()} == {
        "startupProbe": ("/healthz", "probes"), "livenessProbe": ("/healthz", "probes"),
        "readinessProbe": ("/readyz", "probes")}
    (service,) = by_kind("Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_one_gpu_weights_read_only_and_the_cache_on_claims_that_exist():
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/weights"]["readOnly"] is True and not mounts["/cache"].get("readOnly")
    claims = {volume["name"]: volume["persistentVolumeClaim"]["claimName"]
              for volume in pod["volumes"] if "persistentVolumeClaim" in volume}
    assert set(claims.values()) == {doc["metadata"]["name"] for doc in
                                    by_kind("PersistentVolumeClaim")}
    assert {mounts["/weights"]["name"], mounts["/cache"]["name"]} == set(claims)
    # Longer than the drain (shutdown_grace_seconds, 60 s) before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > 60
    assert pod["securityContext"]["runAsNonRoot"] is True
