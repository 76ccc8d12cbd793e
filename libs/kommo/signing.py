"""amojo request signing (§1) and chat-webhook signatures (§9).

Kommo authenticates a channel only by these HMACs, so both the client and the emulator must compute them
byte for byte the same way; this module is the one place that knows how.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from libs.errors import BadRequestError

CONTENT_TYPE = "application/json"
"""The only Content-Type amojo supports; it is part of the string to sign."""

EMPTY_BODY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
"""Content-MD5 of a GET request (MD5 of the empty string)."""


def content_md5(body: bytes) -> str:
    """Lowercase hex MD5 of the exact body bytes (a trailing newline counts)."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def format_date(dt: datetime) -> str:
    """RFC 2822 date as PHP `date(DATE_RFC2822)` writes it: `Thu, 16 Dec 2021 13:15:29 +0000`.

    A naive datetime is taken as UTC; an aware one is converted to UTC.
    """
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return format_datetime(utc.replace(microsecond=0))


def parse_date(value: str) -> datetime:
    """Parse a `Date` header in RFC 2822 (`+0000`) or RFC 1123 (`GMT`) form into an aware UTC datetime.

    Some clients send the `GMT` form; whether amojo accepts it is unconfirmed (§13.9), so we accept both.
    """
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError) as exc:
        raise BadRequestError(f"unparseable Date header {value[:64]!r}") from exc
    if parsed.tzinfo is None:  # "-0000": UTC with unknown local zone
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def request_signature(secret: str, method: str, content_md5: str, content_type: str, date: str, path: str) -> str:
    """Lowercase hex HMAC-SHA1 of `METHOD\\nmd5\\nctype\\ndate\\npath` keyed by the channel secret.

    `path` is the URL path without scheme, host or query string.
    """
    string_to_sign = "\n".join((method.upper(), content_md5, content_type, date, path))
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).hexdigest()


def signed_headers(secret: str, method: str, path: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """The four headers every amojo request needs (GET included), for exactly these body bytes."""
    date = format_date(now if now is not None else datetime.now(UTC))
    md5 = content_md5(body)
    return {
        "Date": date,
        "Content-Type": CONTENT_TYPE,
        "Content-MD5": md5,
        "X-Signature": request_signature(secret, method, md5, CONTENT_TYPE, date, path),
    }


def hook_signature(secret: str, body: bytes) -> str:
    """`X-Signature` of a chat webhook: lowercase hex HMAC-SHA1 of the raw body (§9)."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def verify_hook_signature(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a webhook's `X-Signature`; False when the signature or secret is empty."""
    if not signature or not secret:
        return False
    expected = hook_signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().lower().encode("utf-8", "replace"))
