"""The gRPC server: errors, the engine bridge, POS and admin services, auth, metrics."""
