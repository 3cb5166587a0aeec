"""The gRPC face of mms: POS and admin services over core.Engine, terminal auth,
Prometheus metrics and the `mms` command."""
