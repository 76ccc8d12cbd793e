"""A grpc.aio server with service-token authentication, health checking and reflection."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import SpanKind

from libs.errors import BridgeError
from libs.observability.tracing import extract_context, tracer
from libs.rpc.status import code_for, trailing_code

log = logging.getLogger(__name__)

# Calls that must work without a credential: probes and tooling discovery.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every call that does not carry `authorization: Bearer <service token>`."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_PREFIXES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get("authorization", "")
        presented_bytes = presented.encode() if isinstance(presented, str) else presented
        if presented_bytes and hmac.compare_digest(presented_bytes, self._expected):
            return await continuation(handler_call_details)
        log.warning("unauthenticated grpc call refused", extra={"method": method})
        reason = "missing service credential" if not presented_bytes else "invalid service credential"

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

        return grpc.unary_unary_rpc_method_handler(deny)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def rpc_errors(method: F) -> F:
    """Turn the error tree into gRPC statuses for a servicer method, inside a span continuing the
    caller's trace."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        with tracer().start_as_current_span(
            f"grpc {method.__name__}", context=extract_context(metadata), kind=SpanKind.SERVER
        ):
            try:
                return await method(self, request, context)
            except BridgeError as exc:
                await context.abort(code_for(exc), str(exc), trailing_metadata=trailing_code(exc))

    return wrapper  # type: ignore[return-value]


class GrpcServer:
    """Owns the server's life: serving, health, and graceful shutdown (NOT_SERVING, then drain)."""

    def __init__(self, token: str, service_names: Iterable[str]) -> None:
        self.server = grpc.aio.server(interceptors=[ServiceTokenInterceptor(token)])
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._service_names = list(service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*self._service_names, reflection.SERVICE_NAME], self.server)
        self.port = 0

    async def start(self, address: str) -> int:
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
