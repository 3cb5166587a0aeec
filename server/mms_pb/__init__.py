"""Generated gRPC stubs for mms.v1 (see server/protogen.py)."""
