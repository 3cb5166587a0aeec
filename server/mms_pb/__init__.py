"""Generated gRPC stubs for mms.v1 (see server/tools/protogen.py)."""
