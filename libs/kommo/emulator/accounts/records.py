"""What the emulated account side stores: integrations, accounts, authorization codes, token grants,
refresh attempts and hook calls.

Plain dataclasses with `to_json()` for the `/_emulator/…` control routes. No secret, code or token is in a
repr, and tokens are never serialized: they appear only as `fingerprint()`s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, code or secret (first 16 hex of its SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass
class Integration:
    """An integration as registered in Kommo (its keys and exact Redirect URI, §10)."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str

    def to_json(self) -> dict[str, Any]:  # never the secret
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri}


@dataclass
class Account:
    """A Kommo account, served at its domain (`{subdomain}.kommo.com`, §11)."""

    domain: str
    amojo_id: str
    account_id: int
    name: str
    current_user_id: int
    country: str = "US"
    paid: bool = True

    @property
    def subdomain(self) -> str:
        return self.domain.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "subdomain": self.subdomain,
            "amojo_id": self.amojo_id,
            "account_id": self.account_id,
            "name": self.name,
            "current_user_id": self.current_user_id,
            "country": self.country,
            "paid": self.paid,
        }


@dataclass
class AuthCode:
    """An authorization code: 20 minutes, single use (§10)."""

    code: str = field(repr=False)
    domain: str
    client_id: str
    issued_at: datetime
    expires_at: datetime
    used: bool = False
    revoked: bool = False


GrantOrigin = Literal["authorization_code", "refresh_token"]


@dataclass
class Grant:
    """One issued access/refresh pair.

    `parent` is the grant whose refresh token produced this one. Rotation (§10, K-OAUTH): a refresh
    token stays valid until a pair it produced is first used (`retired`), or the account is revoked.
    """

    id: int
    domain: str
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    issued_at: datetime
    access_expires_at: datetime
    refresh_expires_at: datetime
    origin: GrantOrigin
    parent: int | None = None
    first_used_at: datetime | None = None
    api_calls: int = 0
    times_refreshed: int = 0
    retired: bool = False
    revoked: bool = False

    def access_valid(self, now: datetime) -> bool:
        return not self.revoked and now < self.access_expires_at

    def refresh_valid(self, now: datetime) -> bool:
        return not self.revoked and not self.retired and now < self.refresh_expires_at

    def to_json(self, now: datetime) -> dict[str, Any]:  # fingerprints only, never the tokens
        return {
            "id": self.id,
            "parent": self.parent,
            "origin": self.origin,
            "client_id": self.client_id,
            "issued_at": self.issued_at.isoformat(),
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat(),
            "access_fingerprint": fingerprint(self.access_token),
            "refresh_fingerprint": fingerprint(self.refresh_token),
            "access_valid": self.access_valid(now),
            "refresh_valid": self.refresh_valid(now),
            "first_used_at": self.first_used_at.isoformat() if self.first_used_at else None,
            "api_calls": self.api_calls,
            "times_refreshed": self.times_refreshed,
            "retired": self.retired,
            "revoked": self.revoked,
        }


@dataclass(frozen=True)
class RefreshAttempt:
    """One refresh token presented at the token endpoint, and what the emulator answered."""

    domain: str
    fingerprint: str
    ok: bool
    reason: str
    at: datetime
    grant_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "ok": self.ok,
            "reason": self.reason,
            "at": self.at.isoformat(),
            "grant_id": self.grant_id,
        }


@dataclass(frozen=True)
class HookCall:
    """One install (redirect with a code) or uninstall hook the emulator sent; sent once, never retried."""

    kind: Literal["install", "uninstall"]
    domain: str
    url: str
    status_code: int | None
    elapsed_s: float
    error: str
    code: str = field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "domain": self.domain,
            "url": self.url,
            "status_code": self.status_code,
            "elapsed_s": self.elapsed_s,
            "error": self.error,
        }
