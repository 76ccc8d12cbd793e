"""Calling the auth and router services: the service token on every call, errors as our tree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from libs.observability.tracing import inject_context
from libs.rpc.status import code_in, error_for

R = TypeVar("R")


class ServiceTokenClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        metadata.add(*self._metadata)
        carrier: dict[str, str] = {}
        inject_context(carrier)  # the caller's trace continues in the service it calls
        for key, value in carrier.items():
            metadata.add(key, value)
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            metadata,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def open_channel(address: str, token: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, interceptors=[ServiceTokenClientInterceptor(token)])  # type: ignore[list-item]


async def call(rpc: Callable[..., Awaitable[R]], request: Any, *, deadline_s: float = 5.0) -> R:
    """Invoke a stub method, translating gRPC failures into the error tree."""
    try:
        return await rpc(request, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise error_for(exc.code(), exc.details() or "", code_in(exc.trailing_metadata())) from None
