"""The error tree <-> gRPC status codes, both directions, in one place."""

from __future__ import annotations

import grpc

from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RetryableError,
)


def code_for(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, BadRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, AuthError):  # a signature or stored credential; never our service token
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, PermanentError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNAVAILABLE


def error_for(code: grpc.StatusCode, details: str) -> BridgeError:
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequestError(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        # Our own service credential was refused (only the interceptor answers this): a deployment
        # problem an operator fixes, so the work waits instead of being thrown away.
        return RetryableError(f"service credential refused ({details}); check BRIDGE_SERVICE_TOKEN")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CredentialRejectedError(details)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE):
        return PermanentError(details)
    return RetryableError(details or code.name)
