"""Regenerate the committed gRPC stubs from `ossmount/csi/csi.proto`: `python -m ossmount.csi.generate`.

The stubs (`csi_pb2.py`, `csi_pb2.pyi`, `csi_pb2_grpc.py`) are committed so that installing ossmount needs
no code generation; this command is the only way they are made, and tests/csi/test_proto.py runs it into
a temporary directory to prove the committed files are exactly its output.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `ossmount/`
PROTO = "ossmount/csi/csi.proto"
GENERATED = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run grpc_tools.protoc on csi.proto, writing under `out_root/ossmount/csi/`; returns the files made."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out_root.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PACKAGE_ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", PROTO]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    return [out_root / "ossmount" / "csi" / name for name in GENERATED]


def main() -> int:
    for path in generate(PACKAGE_ROOT):
        print(f"wrote {path.relative_to(PACKAGE_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
