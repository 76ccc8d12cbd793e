"""Graph's error answers, as the WhatsApp emulator gives them (reference/messenger-apis.md §2):
`{"error": {"message", "type", "code", "error_subcode"?, "error_data": {"messaging_product", "details"}?,
"fbtrace_id"}}` with a 4xx/5xx status, and the same error as a `failed` status carries it."""

from __future__ import annotations

import base64
import secrets
from typing import Any


class GraphApiError(Exception):
    """A Graph call failed; answered `{"error": {...}}` with HTTP `status` (reference §2)."""

    def __init__(
        self,
        status: int,
        code: int,
        title: str,
        *,
        details: str = "",
        subcode: int | None = None,
        kind: str = "OAuthException",
        bare_message: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.code = code
        self.title = title
        self.details = details
        self.subcode = subcode
        self.kind = kind
        # Graph's own errors (190, 100/33) carry a plain message; WhatsApp's are "(#code) title".
        self.bare_message = bare_message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.title if self.bare_message else f"(#{self.code}) {self.title}",
            "type": self.kind,
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = base64.urlsafe_b64encode(secrets.token_bytes(9)).decode()
        return {"error": error}

    def status_error(self) -> dict[str, Any]:
        """The same error as a `failed` status's `errors[0]` carries it."""
        error: dict[str, Any] = {"code": self.code, "title": self.title, "message": self.title}
        if self.details:
            error["error_data"] = {"details": self.details}
        error["href"] = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
        return error


def unknown_object(object_id: str) -> GraphApiError:
    return GraphApiError(
        400,
        100,
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        subcode=33,
        kind="GraphMethodException",
        bare_message=True,
    )


def invalid_parameter(details: str, code: int = 100) -> GraphApiError:
    title = "Invalid parameter" if code == 100 else "Parameter value is not valid"
    return GraphApiError(400, code, title, details=details)
