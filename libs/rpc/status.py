"""The error tree <-> gRPC status codes, both directions, in one place."""

from __future__ import annotations

import grpc

from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    MissingCredentialError,
    NotFoundError,
    PermanentError,
    RetryableError,
)


def code_for(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, BadRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, MissingCredentialError):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(error, AuthError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, PermanentError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNAVAILABLE


def error_for(code: grpc.StatusCode, details: str) -> BridgeError:
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequestError(details)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        # Our own service credential was refused: a deployment problem an operator fixes, so the
        # work waits (retryable) instead of being thrown away.
        return RetryableError(f"service credential refused ({details}); check BRIDGE_SERVICE_TOKEN")
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE):
        return PermanentError(details)
    return RetryableError(details or code.name)
