"""amojo's error answers: `{"status":0,"error_code":N,"error_type":…,"error_description":…}`."""

from __future__ import annotations

from typing import Final

from starlette.responses import JSONResponse, Response

from libs.emulation import Fault

# The 403 and 404 error_type values are documented (§1); the others are our names, since Kommo's other
# error_type values are unknown (§13.7).
INVALID_SIGNATURE: Final = "ORIGIN_INVALID_SIGNATURE"
NOT_REGISTERED: Final = "ORIGIN_NOT_REGISTERED"
NOT_FOUND: Final = "NOT_FOUND"
INVALID_REQUEST: Final = "INVALID_REQUEST"
_FAULT_ERROR_TYPES: Final = {
    400: INVALID_REQUEST,
    403: INVALID_SIGNATURE,
    404: NOT_FOUND,
    429: "TOO_MANY_REQUESTS",
}


class KommoError(Exception):
    """An answer with a specific `error_type` (signature, registration); raised by request handlers."""

    def __init__(self, status: int, error_type: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error_type = error_type
        self.description = description

    def response(self) -> Response:
        return kommo_error_response(self.status, self.error_type, self.description)


def kommo_error_response(
    status: int, error_type: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"status": 0, "error_code": status, "error_type": error_type, "error_description": description}
    return JSONResponse(body, status_code=status, headers=headers)


def fault_response(fault: Fault) -> Response:
    """Kommo-shaped answer for an injected status fault; a 429 carries `Retry-After` (default 1 s)."""
    error_type = _FAULT_ERROR_TYPES.get(fault.status, "INTERNAL_ERROR" if fault.status >= 500 else INVALID_REQUEST)
    headers = None
    if fault.status == 429:
        headers = {"Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)}
    description = fault.description or f"injected {fault.status}"
    return kommo_error_response(fault.status, error_type, description, headers)
