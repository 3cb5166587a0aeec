"""The admin gRPC service, one module per domain. base holds the call context (session,
permission, store scope) and the handler table; every other module registers its
handlers with @handler on import, so importing this package gives the whole service."""

from server.rpc.admin import (  # noqa: F401 (each registers its handlers)
    backoffice,
    base,
    cards,
    chain,
    coupons,
    members,
    notify,
    reports,
    rules,
)
from server.rpc.admin.base import AdminService

__all__ = ["AdminService"]
