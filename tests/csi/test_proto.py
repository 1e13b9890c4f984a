"""The csi.v1 subset: committed stubs are exactly the generator's output, and field numbers, service and
method names are the CSI spec's (csi-daemon.md Appendix A), so a kubelet built on the full csi.proto speaks
to us unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossmount.csi import csi_pb2 as pb
from ossmount.csi.generate import GENERATED, PACKAGE_ROOT, generate

# (message, field, number) from Appendix A.
APPENDIX_A = [
    ("GetPluginInfoResponse", "name", 1), ("GetPluginInfoResponse", "vendor_version", 2),
    ("GetPluginInfoResponse", "manifest", 3),
    ("GetPluginCapabilitiesResponse", "capabilities", 1),
    ("PluginCapability", "service", 1), ("PluginCapability.Service", "type", 1),
    ("ProbeResponse", "ready", 1),
    ("VolumeCapability", "block", 1), ("VolumeCapability", "mount", 2), ("VolumeCapability", "access_mode", 3),
    ("VolumeCapability.MountVolume", "fs_type", 1), ("VolumeCapability.MountVolume", "mount_flags", 2),
    ("VolumeCapability.MountVolume", "volume_mount_group", 3), ("VolumeCapability.AccessMode", "mode", 1),
    ("NodeStageVolumeRequest", "volume_id", 1), ("NodeStageVolumeRequest", "publish_context", 2),
    ("NodeStageVolumeRequest", "staging_target_path", 3), ("NodeStageVolumeRequest", "volume_capability", 4),
    ("NodeStageVolumeRequest", "secrets", 5), ("NodeStageVolumeRequest", "volume_context", 6),
    ("NodeUnstageVolumeRequest", "volume_id", 1), ("NodeUnstageVolumeRequest", "staging_target_path", 2),
    ("NodePublishVolumeRequest", "volume_id", 1), ("NodePublishVolumeRequest", "publish_context", 2),
    ("NodePublishVolumeRequest", "staging_target_path", 3), ("NodePublishVolumeRequest", "target_path", 4),
    ("NodePublishVolumeRequest", "volume_capability", 5), ("NodePublishVolumeRequest", "readonly", 6),
    ("NodePublishVolumeRequest", "secrets", 7), ("NodePublishVolumeRequest", "volume_context", 8),
    ("NodeUnpublishVolumeRequest", "volume_id", 1), ("NodeUnpublishVolumeRequest", "target_path", 2),
    ("NodeGetVolumeStatsRequest", "volume_id", 1), ("NodeGetVolumeStatsRequest", "volume_path", 2),
    ("NodeGetVolumeStatsRequest", "staging_target_path", 3),
    ("NodeGetVolumeStatsResponse", "usage", 1), ("NodeGetVolumeStatsResponse", "volume_condition", 2),
    ("VolumeUsage", "available", 1), ("VolumeUsage", "total", 2), ("VolumeUsage", "used", 3),
    ("VolumeUsage", "unit", 4), ("VolumeCondition", "abnormal", 1), ("VolumeCondition", "message", 2),
    ("NodeGetCapabilitiesResponse", "capabilities", 1), ("NodeServiceCapability", "rpc", 1),
    ("NodeServiceCapability.RPC", "type", 1),
    ("NodeGetInfoResponse", "node_id", 1), ("NodeGetInfoResponse", "max_volumes_per_node", 2),
    ("NodeGetInfoResponse", "accessible_topology", 3), ("Topology", "segments", 1),
    ("CreateVolumeRequest", "name", 1), ("CreateVolumeRequest", "capacity_range", 2),
    ("CreateVolumeRequest", "volume_capabilities", 3), ("CreateVolumeRequest", "parameters", 4),
    ("CreateVolumeRequest", "secrets", 5), ("CapacityRange", "required_bytes", 1),
    ("CapacityRange", "limit_bytes", 2), ("CreateVolumeResponse", "volume", 1),
    ("Volume", "capacity_bytes", 1), ("Volume", "volume_id", 2), ("Volume", "volume_context", 3),
    ("DeleteVolumeRequest", "volume_id", 1), ("DeleteVolumeRequest", "secrets", 2),
    ("ValidateVolumeCapabilitiesRequest", "volume_id", 1), ("ValidateVolumeCapabilitiesRequest", "volume_context", 2),
    ("ValidateVolumeCapabilitiesRequest", "volume_capabilities", 3),
    ("ValidateVolumeCapabilitiesRequest", "parameters", 4), ("ValidateVolumeCapabilitiesRequest", "secrets", 5),
    ("ValidateVolumeCapabilitiesResponse", "confirmed", 1), ("ValidateVolumeCapabilitiesResponse", "message", 2),
    ("ValidateVolumeCapabilitiesResponse.Confirmed", "volume_context", 1),
    ("ValidateVolumeCapabilitiesResponse.Confirmed", "volume_capabilities", 2),
    ("ValidateVolumeCapabilitiesResponse.Confirmed", "parameters", 3),
    ("ControllerGetCapabilitiesResponse", "capabilities", 1), ("ControllerServiceCapability", "rpc", 1),
    ("ControllerGetVolumeRequest", "volume_id", 1), ("ControllerGetVolumeResponse", "volume", 1),
    ("ControllerGetVolumeResponse", "status", 2),
    ("ControllerGetVolumeResponse.VolumeStatus", "published_node_ids", 1),
    ("ControllerGetVolumeResponse.VolumeStatus", "volume_condition", 2),
]

ENUMS = [
    ("PluginCapability.Service.Type", {"UNKNOWN": 0, "CONTROLLER_SERVICE": 1, "VOLUME_ACCESSIBILITY_CONSTRAINTS": 2,
                                       "GROUP_CONTROLLER_SERVICE": 3, "SNAPSHOT_METADATA_SERVICE": 4}),
    ("VolumeCapability.AccessMode.Mode", {"UNKNOWN": 0, "SINGLE_NODE_WRITER": 1, "SINGLE_NODE_READER_ONLY": 2,
                                          "MULTI_NODE_READER_ONLY": 3, "MULTI_NODE_SINGLE_WRITER": 4,
                                          "MULTI_NODE_MULTI_WRITER": 5, "SINGLE_NODE_SINGLE_WRITER": 6,
                                          "SINGLE_NODE_MULTI_WRITER": 7}),
    ("NodeServiceCapability.RPC.Type", {"UNKNOWN": 0, "STAGE_UNSTAGE_VOLUME": 1, "GET_VOLUME_STATS": 2,
                                        "EXPAND_VOLUME": 3, "VOLUME_CONDITION": 4, "SINGLE_NODE_MULTI_WRITER": 5,
                                        "VOLUME_MOUNT_GROUP": 6}),
    ("VolumeUsage.Unit", {"UNKNOWN": 0, "BYTES": 1, "INODES": 2}),
    ("ControllerServiceCapability.RPC.Type", {"CREATE_DELETE_VOLUME": 1, "PUBLISH_UNPUBLISH_VOLUME": 2,
                                             "GET_VOLUME": 12}),
]


def _message(path: str):
    descriptor = pb.DESCRIPTOR.message_types_by_name[path.split(".")[0]]
    for part in path.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[part]
    return descriptor


def test_committed_stubs_are_the_generators_output(tmp_path: Path):
    for made in generate(tmp_path):
        committed = PACKAGE_ROOT / "ossmount" / "csi" / made.name
        assert made.read_bytes() == committed.read_bytes(), f"{made.name} is stale: run python -m ossmount.csi.generate"
    assert sorted(p.name for p in (tmp_path / "ossmount" / "csi").iterdir()) == sorted(GENERATED)


@pytest.mark.parametrize("message, field, number", APPENDIX_A)
def test_field_numbers_are_the_specs(message, field, number):
    assert _message(message).fields_by_name[field].number == number


@pytest.mark.parametrize("enum, values", ENUMS)
def test_enum_values_are_the_specs(enum, values):
    *outer, name = enum.split(".")
    descriptor = _message(".".join(outer)).enum_types_by_name[name]
    for value_name, number in values.items():
        assert descriptor.values_by_name[value_name].number == number


def test_service_paths():
    assert pb.DESCRIPTOR.package == "csi.v1"
    services = {s.full_name: [m.name for m in s.methods] for s in pb.DESCRIPTOR.services_by_name.values()}
    assert services["csi.v1.Identity"] == ["GetPluginInfo", "GetPluginCapabilities", "Probe"]
    assert services["csi.v1.Node"] == ["NodeStageVolume", "NodeUnstageVolume", "NodePublishVolume",
                                       "NodeUnpublishVolume", "NodeGetVolumeStats", "NodeGetCapabilities",
                                       "NodeGetInfo"]
    assert set(services["csi.v1.Controller"]) == {"CreateVolume", "DeleteVolume", "ValidateVolumeCapabilities",
                                                  "ControllerGetCapabilities", "ControllerGetVolume"}


def test_unknown_fields_of_a_newer_co_are_tolerated():
    # A kubelet on the full csi.proto may send fields we left out (e.g. NodeStageVolumeRequest has none
    # beyond 6 today, CreateVolumeRequest has 6-8): they parse and are ignored.
    request = pb.CreateVolumeRequest(name="v")
    wire = request.SerializeToString() + bytes([0x32, 0x00])  # field 6 (volume_content_source), empty message
    parsed = pb.CreateVolumeRequest.FromString(wire)
    assert parsed.name == "v"
