"""Reading Kommo's answers, shared by the amojo client and the account (OAuth, REST) client: what a
failed call looked like, and when Kommo asks us to come back."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import httpx

from libs.errors import BadRequestError, RetryableError
from libs.kommo.signing import parse_date


def text_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def number_field(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def json_object(response: httpx.Response) -> tuple[dict[str, Any], Any]:
    """The body as a dict ({} when it is not one), and the parsed JSON (None when it is not JSON)."""
    try:
        parsed: Any = response.json()
    except ValueError:
        parsed = None
    return (parsed if isinstance(parsed, dict) else {}), parsed


def _retry_after_header(response: httpx.Response) -> float | None:
    header = response.headers.get("retry-after", "").strip()
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = (parse_date(header) - datetime.now(UTC)).total_seconds()
        except BadRequestError:
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_after(response: httpx.Response, body: dict[str, Any], *, body_first: bool) -> float | None:
    """Seconds to wait, from a `Retry-After` header (seconds or an HTTP date) or a body `retry_after`.
    REST v4 documents the body field (body_first); amojo's answers are read header first."""
    from_body = number_field(body, "retry_after")
    from_body = max(0.0, from_body) if from_body is not None else None
    from_header = _retry_after_header(response)
    first, second = (from_body, from_header) if body_first else (from_header, from_body)
    return first if first is not None else second


def transport_failure(service: str, operation: str, error: httpx.HTTPError) -> RetryableError:
    """A call that got no HTTP answer: always worth retrying, and never carrying the URL (it may hold
    secrets) into the message."""
    if isinstance(error, httpx.TimeoutException):
        return RetryableError(f"{service} {operation}: timed out ({type(error).__name__})")
    if isinstance(error, httpx.TransportError):
        return RetryableError(f"{service} {operation}: connection failed ({type(error).__name__})")
    return RetryableError(f"{service} {operation}: request failed ({type(error).__name__})")
