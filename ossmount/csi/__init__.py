"""The ossmount CSI driver (`ossmount csi`): Identity and Node services over the shared-mount daemon, and a
Controller service for dynamic provisioning.

    cli.py           `ossmount csi` (gRPC server on a unix socket)
    csi.proto        our subset of the CSI spec, package csi.v1; csi_pb2*.py are generated (generate.py)
    validation.py    request checks and Alibaba volume attributes → daemon spec (sans-IO)
    errors.py        CsiError, daemon/store error → gRPC status, secret scrubbing: the one place
    node.py          Identity and Node services (one ossmount.daemon.client call per RPC)
    controller.py    Controller service: CreateVolume/DeleteVolume with volumeAs subpath/sharepath
    records.py       the controller's durable records of what it created
"""
