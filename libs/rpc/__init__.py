"""gRPC plumbing shared by the auth and router servers and their callers."""

from libs.rpc.client import ServiceTokenClientInterceptor, call, open_channel
from libs.rpc.server import GrpcServer, ServiceTokenInterceptor, rpc_errors

__all__ = [
    "GrpcServer",
    "ServiceTokenClientInterceptor",
    "ServiceTokenInterceptor",
    "call",
    "open_channel",
    "rpc_errors",
]
