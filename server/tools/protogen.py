"""Generate the Python stubs in server/mms_pb from proto/mms/v1.

The stubs are committed; tests/unit/test_server_protos.py regenerates them into a temporary
directory and diffs, so a proto edit without `python -m server.tools.protogen` fails CI.

protoc writes `from mms.v1 import x_pb2` (the proto's own path); the stubs live flat in
the package server.mms_pb, so that one import form is rewritten to a relative import.
Nothing else in the generated code is touched.
"""

from __future__ import annotations

import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "server" / "mms_pb"
PROTOS = ("types", "pos", "admin", "report", "segment", "campaign", "replication")
_IMPORT = re.compile(r"^from mms\.v1 import ", re.MULTILINE)


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write the stubs (flat) into out_dir and return their paths."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(PROTO_DIR / "mms" / "v1" / f"{name}.proto") for name in PROTOS),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed")
        written = []
        for src in sorted((pathlib.Path(tmp) / "mms" / "v1").glob("*.py*")):
            text = _IMPORT.sub("from . import ", src.read_text())
            dst = out_dir / src.name
            dst.write_text(text)
            written.append(dst)
    init = out_dir / "__init__.py"
    init.write_text('"""Generated gRPC stubs for mms.v1 (see server/tools/protogen.py)."""\n')
    written.append(init)
    return written


if __name__ == "__main__":
    for path in generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(path)
