"""Signed, expiring links to one platform file: how Kommo downloads what a client sent.

amojo takes `message.media` as a public URL it downloads (kommo-chats-api §4), while a platform's own file
URL carries the bot token (Telegram: `/file/bot<token>/<path>`). So Kommo gets a link to the gateway,
`{BRIDGE_PUBLIC_URL}/media/v1/{token}/{file name}`, and the gateway fetches the file from the platform
only when the link is opened. The token is the link's whole authority: it names the file (connection,
platform, file reference, name, MIME type, size) and an expiry, bound together by an HMAC-SHA256.

The HMAC key is derived with HKDF-SHA256 from `BRIDGE_SERVICE_TOKEN` under a fixed label, so every service
holding the service token can sign (kommo_sender) and verify (gateway) without another secret to
distribute; replacing the service token invalidates every link still out. The token is signed, not
encrypted: it shows a platform file reference (useless without the bot token, which never appears in a
link) and the name, type and size Kommo is shown anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from libs.config import Settings
from libs.errors import AuthError

ROUTE_PREFIX: Final = "/media/v1/"
"""Where the gateway serves the links (`GET /media/v1/{token}/{name}`)."""

_KEY_LABEL: Final = b"kommo-bridge media links v1"
_MAC_CONTEXT: Final = b"media/v1\n"
_VERSION: Final = 1
# A token longer than this is not one we made: file references are short, names at most a few hundred bytes.
MAX_TOKEN_CHARS: Final = 4096
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


class MediaLinkRefused(AuthError):
    """The link was not made by us for this file: tampered with, malformed, or naming another file."""


class MediaLinkExpired(MediaLinkRefused):
    """The link was genuine but its time is up (the gateway answers 410 Gone)."""


@dataclass(frozen=True)
class LinkedFile:
    """What a link names: one file of one messenger connection. `platform` is the protobuf Platform value,
    `file_ref` the platform's own reference (a Telegram file_id); name, MIME type and size are what Kommo
    is told and what the gateway answers with."""

    connection_id: str
    platform: int
    file_ref: str
    file_name: str
    mime_type: str
    size: int


def url_file_name(file_name: str) -> str:
    """The file name as the link's last path segment: no path separators or control characters, never a
    dot segment (clients would resolve it away) and never empty."""
    cleaned = "".join(
        "_" if ch in "/\\" or unicodedata.category(ch).startswith("C") else ch for ch in file_name
    ).strip()
    return cleaned if cleaned not in ("", ".", "..") else "file"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(service_token: str) -> bytes:
    """The links' HMAC key: HKDF-SHA256 of the service token under a fixed label, so a link key never
    equals the bearer credential itself and other uses of the token get other keys."""
    if not service_token:
        raise ValueError("media links need the service token (BRIDGE_SERVICE_TOKEN)")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_LABEL)
    return hkdf.derive(service_token.encode("utf-8"))


class MediaLinks:
    """Makes and checks the links. `clock` (epoch seconds) is injectable so tests need not wait."""

    def __init__(
        self, service_token: str, public_url: str, ttl_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = derive_key(service_token)
        self._public_url = public_url.rstrip("/")
        self._ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaLinks:
        return cls(settings.service_token.get_secret_value(), settings.public_url, settings.media_link_ttl_s)

    def __repr__(self) -> str:  # never the key
        return f"MediaLinks(public_url={self._public_url!r}, ttl_s={self._ttl_s!r})"

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, _MAC_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()

    def token(self, file: LinkedFile, *, expires_at: int | None = None) -> str:
        """The token of a link to `file`, valid until `expires_at` (default: now + the configured TTL)."""
        expiry = expires_at if expires_at is not None else int(self._clock() + self._ttl_s)
        fields = [
            _VERSION,
            file.connection_id,
            int(file.platform),
            file.file_ref,
            file.file_name,
            file.mime_type,
            int(file.size),
            int(expiry),
        ]
        payload = _b64encode(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        return f"{payload}.{_b64encode(self._mac(payload))}"

    def url(self, file: LinkedFile, *, expires_at: int | None = None) -> str:
        """`{public_url}/media/v1/{token}/{file name}`: the public URL Kommo downloads."""
        name = quote(url_file_name(file.file_name), safe="")
        return f"{self._public_url}{ROUTE_PREFIX}{self.token(file, expires_at=expires_at)}/{name}"

    def verify(self, token: str, name: str) -> LinkedFile:
        """The file a link names. Raises MediaLinkRefused (malformed, tampered with, or `name` is not the
        named file's) or MediaLinkExpired. The signature is compared in constant time, before anything
        in the token is believed."""
        if len(token) > MAX_TOKEN_CHARS:
            raise MediaLinkRefused("media link: the token is malformed")
        payload, dot, signature = token.partition(".")
        if not dot or not _B64URL.match(payload) or not _B64URL.match(signature):
            raise MediaLinkRefused("media link: the token is malformed")
        # Compared as text with the one encoding we make: base64's spare bits would otherwise let
        # several spellings of a signature pass for the same one.
        if not hmac.compare_digest(_b64encode(self._mac(payload)), signature):
            raise MediaLinkRefused("media link: the signature does not match")
        file, expires_at = _decode_payload(payload)
        if self._clock() >= expires_at:
            raise MediaLinkExpired("media link: the link has expired")
        if not hmac.compare_digest(url_file_name(file.file_name).encode(), name.encode("utf-8", "replace")):
            raise MediaLinkRefused("media link: the link names another file")
        return file


def _decode_payload(payload: str) -> tuple[LinkedFile, int]:
    """The fields of a payload whose signature already matched (so only a bug of ours could break it)."""
    try:
        fields: Any = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError):
        raise MediaLinkRefused("media link: the token is malformed") from None
    if not isinstance(fields, list) or len(fields) != 8 or fields[0] != _VERSION:
        raise MediaLinkRefused("media link: the token is malformed")
    _, connection_id, platform, file_ref, file_name, mime_type, size, expires_at = fields
    texts = (connection_id, file_ref, file_name, mime_type)
    numbers = (platform, size, expires_at)
    if not all(isinstance(t, str) for t in texts) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in numbers
    ):
        raise MediaLinkRefused("media link: the token is malformed")
    return LinkedFile(connection_id, platform, file_ref, file_name, mime_type, size), expires_at
