"""The error tree <-> gRPC status codes, both directions, in one place. An error's stable `code`
travels in the trailing metadata, so an API in front of a service still answers it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    ConflictError,
    CredentialRejectedError,
    NotFoundError,
    PermanentError,
    RetryableError,
)

CODE_METADATA = "bridge-error-code"


def code_for(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, BadRequestError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, ConflictError):
        return grpc.StatusCode.ABORTED
    if isinstance(error, AuthError):  # a signature or stored credential; never our service token
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, PermanentError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNAVAILABLE


def error_for(code: grpc.StatusCode, details: str, error_code: str = "") -> BridgeError:
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(details, code=error_code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequestError(details, code=error_code)
    if code == grpc.StatusCode.ABORTED:
        return ConflictError(details, code=error_code)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        # Our own service credential was refused (only the interceptor answers this): a deployment
        # problem an operator fixes, so the work waits instead of being thrown away.
        return RetryableError(f"service credential refused ({details}); check BRIDGE_SERVICE_TOKEN")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CredentialRejectedError(details, code=error_code)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE):
        return PermanentError(details, code=error_code)
    return RetryableError(details or code.name, code=error_code)


def trailing_code(error: BaseException) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries an error's stable code (none for an error without one)."""
    return ((CODE_METADATA, error.code),) if isinstance(error, BridgeError) and error.code else ()


def code_in(metadata: Iterable[Any] | None) -> str:
    """The stable code a failed call's trailing metadata carries (key, value pairs), or ""."""
    for key, value in metadata or ():
        if key == CODE_METADATA and isinstance(value, str):
            return value
    return ""
