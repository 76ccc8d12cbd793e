"""Kommo's account webhooks (kommo-chats-api.md §11 "Account webhooks"): where the bridge has them sent, and
what an `add_chat_template_review` one names.

Kommo signs no account webhook, so its destination carries a token only the bridge can make (an HMAC of
the scope under the channel secret) and a hook is only ever a hint: what it names is read back from Kommo's
REST API with the account's token before anything is done. The body is form-encoded, PHP style:
`add[0][id]=7101&add[0][type]=waba&add[0][reviews][0][id]=301&account[id]=…&account[subdomain]=…`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

TEMPLATE_REVIEW_EVENT: Final = "add_chat_template_review"
ROUTE_PREFIX: Final = "/webhooks/kommo-account"
_TOKEN_CONTEXT: Final = b"kommo-account-hooks:"
_ADDED_ID_RE: Final = re.compile(r"add\]?\[(\d+)\]\[id\]$")
_ADDED_TYPE_RE: Final = re.compile(r"add\]?\[(\d+)\]\[type\]$")
MAX_TEMPLATES: Final = 50


def hook_token(channel_secret: str, scope_id: str) -> str:
    return hmac.new(channel_secret.encode(), _TOKEN_CONTEXT + scope_id.encode(), hashlib.sha256).hexdigest()


def destination(public_url: str, channel_secret: str, scope_id: str) -> str:
    """The URL Kommo posts this account's webhooks to."""
    return f"{public_url.rstrip('/')}{ROUTE_PREFIX}/{scope_id}/{hook_token(channel_secret, scope_id)}"


def token_matches(channel_secret: str, scope_id: str, token: str) -> bool:
    """Constant time; an empty channel secret matches nothing."""
    if not channel_secret:
        return False
    return hmac.compare_digest(token.encode("ascii", "replace"), hook_token(channel_secret, scope_id).encode())


@dataclass(frozen=True)
class ReviewRequest:
    kommo_account_id: int
    template_ids: tuple[int, ...]


def review_request(body: bytes) -> ReviewRequest:
    """The chat templates (type waba) an `add_chat_template_review` hook names, at most MAX_TEMPLATES."""
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    ids: dict[str, int] = {}
    types: dict[str, str] = {}
    account = 0
    for key, value in pairs:
        if (found := _ADDED_ID_RE.search(key)) and value.isdigit():
            ids[found.group(1)] = int(value)
        elif found_type := _ADDED_TYPE_RE.search(key):
            types[found_type.group(1)] = value
        elif key == "account[id]" and value.isdigit():
            account = int(value)
    wanted = [template_id for index, template_id in ids.items() if types.get(index, "waba") == "waba"]
    return ReviewRequest(account, tuple(dict.fromkeys(wanted))[:MAX_TEMPLATES])
