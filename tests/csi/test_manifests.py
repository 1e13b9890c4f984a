"""The example manifests under helpers/kubernetes/: valid YAML, accepted by the Kubernetes OpenAPI schemas
(strict: unknown fields are errors, as `kubectl apply --validate=strict` does), and consistent with each
other and with the driver (driver name, socket paths, service accounts, the CLI flags of `ossmount csi`,
StorageClass parameters and PV attributes that the driver itself accepts). No cluster is needed."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ossmount.csi import validation
from ossmount.csi.cli import build_parser
from ossmount.csi.node import DEFAULT_DRIVER_NAME

MANIFESTS = Path(__file__).resolve().parents[2] / "helpers" / "kubernetes"
KUBERNETES_VERSIONS = ("1.30", "1.37")  # the oldest and newest supported Kubernetes we check against


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


DOCUMENTS = documents()
BY_KIND: dict[str, list[dict]] = {}
for _, _doc in DOCUMENTS:
    BY_KIND.setdefault(_doc["kind"], []).append(_doc)


def containers(kind: str) -> list[dict]:
    return [c for doc in BY_KIND.get(kind, []) for c in doc["spec"]["template"]["spec"]["containers"]]


def test_every_required_object_is_there():
    assert {"CSIDriver", "DaemonSet", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "StorageClass", "PersistentVolume", "PersistentVolumeClaim", "Pod", "Secret"} <= set(BY_KIND)
    images = {c["image"].split(":")[0] for kind in ("DaemonSet", "Deployment") for c in containers(kind)}
    assert "registry.k8s.io/sig-storage/csi-node-driver-registrar" in images
    assert "registry.k8s.io/sig-storage/csi-provisioner" in images


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name, document", DOCUMENTS, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in DOCUMENTS])
def test_schema(name, document, version):
    kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_rejects_mistakes():
    csidriver = dict(BY_KIND["CSIDriver"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**csidriver, "spec": {**csidriver["spec"], "attachRequired": "no"}}, "1.37", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**csidriver, "spec": {**csidriver["spec"], "atachRequired": False}}, "1.37", strict=True)


def test_driver_name_is_the_same_everywhere():
    assert [d["metadata"]["name"] for d in BY_KIND["CSIDriver"]] == [DEFAULT_DRIVER_NAME]
    assert {d["provisioner"] for d in BY_KIND["StorageClass"]} == {DEFAULT_DRIVER_NAME}
    assert {d["spec"]["csi"]["driver"] for d in BY_KIND["PersistentVolume"]} == {DEFAULT_DRIVER_NAME}
    registrar = next(c for c in containers("DaemonSet") if c["name"] == "node-driver-registrar")
    assert f"--kubelet-registration-path=/var/lib/kubelet/plugins/{DEFAULT_DRIVER_NAME}/csi.sock" in registrar["args"]


def test_ossmount_commands_parse():
    commands = [c["command"] for kind in ("DaemonSet", "Deployment") for c in containers(kind)
                if c.get("command", [None])[:2] == ["ossmount", "csi"]]
    assert len(commands) == 2
    node, controller = (build_parser().parse_args(command[2:]) for command in commands)
    assert node.node_id == "$(KUBE_NODE_NAME)" and not node.controller
    assert node.daemon_socket == "/run/ossmount/ossmountd.sock"
    assert controller.controller and controller.state_dir == "/var/lib/ossmount-csi"
    daemon = next(c for c in containers("DaemonSet") if c["command"][:2] == ["ossmount", "daemon"])
    assert "--socket=/run/ossmount/ossmountd.sock" in daemon["command"]


def test_socket_and_state_volumes_line_up():
    for kind in ("DaemonSet", "Deployment"):
        for doc in BY_KIND[kind]:
            pod = doc["spec"]["template"]["spec"]
            volumes = {v["name"] for v in pod["volumes"]}
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, (doc["metadata"]["name"], mount["name"])
            accounts = {(a["metadata"]["name"], a["metadata"]["namespace"]) for a in BY_KIND["ServiceAccount"]}
            assert (pod["serviceAccountName"], doc["metadata"]["namespace"]) in accounts
    controller = BY_KIND["Deployment"][0]["spec"]["template"]["spec"]
    claim = next(v for v in controller["volumes"] if v["name"] == "state")["persistentVolumeClaim"]["claimName"]
    assert claim in {d["metadata"]["name"] for d in BY_KIND["PersistentVolumeClaim"]}


def test_storage_classes_and_pvs_are_accepted_by_the_driver():
    for storage_class in BY_KIND["StorageClass"]:
        parameters = validation.parse_provision_parameters(storage_class["parameters"])
        assert parameters.spec.endpoint == "http://oss-cn-hangzhou-internal.aliyuncs.com"
    for pv in BY_KIND["PersistentVolume"]:
        spec = validation.parse_volume_attributes(pv["spec"]["csi"]["volumeAttributes"], "NodePublishVolume")
        assert spec.bucket == "my-bucket"
        secret_ref = pv["spec"]["csi"]["nodePublishSecretRef"]
        secret = next(s for s in BY_KIND["Secret"] if s["metadata"]["name"] == secret_ref["name"])
        assert set(secret["stringData"]) == {"akId", "akSecret"}
