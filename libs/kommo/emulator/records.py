"""What the emulated amojo stores: channels, connections, users, chats, messages, statuses, hooks.

Plain dataclasses with `to_json()` for the `/_emulator/…` control routes; a channel's secret is never
serialized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Channel:
    """A registered chat channel (what Kommo support creates, §0)."""

    channel_id: str
    secret: str = field(repr=False)
    hook_url: str
    code: str = ""

    def to_json(self) -> dict[str, Any]:  # never the secret
        return {"channel_id": self.channel_id, "hook_url": self.hook_url, "code": self.code}


@dataclass
class Connection:
    scope_id: str
    channel_id: str
    account_id: str
    title: str
    hook_api_version: str
    is_time_window_disabled: bool
    connected: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "scope_id": self.scope_id,
            "channel_id": self.channel_id,
            "account_id": self.account_id,
            "title": self.title,
            "hook_api_version": self.hook_api_version,
            "is_time_window_disabled": self.is_time_window_disabled,
            "connected": self.connected,
        }


@dataclass
class User:
    """A chat participant as Kommo stores it: `id` is Kommo's, `client_id` ours ("" for Kommo users)."""

    id: str
    client_id: str = ""
    name: str = ""
    avatar: str = ""
    phone: str = ""
    email: str = ""
    profile_link: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        for key in ("client_id", "name", "avatar", "phone", "email"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


@dataclass
class Chat:
    kommo_chat_id: str
    scope_id: str
    conversation_id: str
    client: User
    source_external_id: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kommo_chat_id": self.kommo_chat_id,
            "scope_id": self.scope_id,
            "conversation_id": self.conversation_id,
            "client": self.client.to_json(),
            "source_external_id": self.source_external_id,
            "created_at": self.created_at,
        }


@dataclass
class Message:
    """One message in a chat. direction: "incoming" (client → Kommo via the API), "outgoing" (a reply
    imported via the API), "manager" (written in Kommo, delivered to the channel by hook)."""

    kommo_msgid: str
    scope_id: str
    kommo_chat_id: str
    conversation_id: str
    msgid: str
    direction: str
    sender: User
    receiver: User | None
    message: dict[str, Any]
    timestamp_ms: int
    payload: dict[str, Any]
    response: dict[str, Any]
    received_at: float
    silent: bool = False
    edits: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kommo_msgid": self.kommo_msgid,
            "scope_id": self.scope_id,
            "kommo_chat_id": self.kommo_chat_id,
            "conversation_id": self.conversation_id,
            "msgid": self.msgid,
            "direction": self.direction,
            "sender": self.sender.to_json(),
            "receiver": self.receiver.to_json() if self.receiver else None,
            "message": self.message,
            "timestamp_ms": self.timestamp_ms,
            "silent": self.silent,
            "payload": self.payload,
            "received_at": self.received_at,
            "edits": self.edits,
        }


@dataclass(frozen=True)
class DeliveryStatus:
    kommo_msgid: str
    status: int
    error_code: int
    error: str
    key: str
    body: dict[str, Any]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kommo_msgid": self.kommo_msgid,
            "status": self.status,
            "error_code": self.error_code,
            "error": self.error,
            "key": self.key,
            "body": self.body,
            "at": self.at,
        }


@dataclass(frozen=True)
class Typing:
    scope_id: str
    conversation_id: str
    sender_id: str
    duration_ms: int
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "scope_id": self.scope_id,
            "conversation_id": self.conversation_id,
            "sender_id": self.sender_id,
            "duration_ms": self.duration_ms,
            "at": self.at,
        }


@dataclass(frozen=True)
class HookResult:
    """What happened to one webhook: sent once, never retried; only HTTP 200 counts (§9)."""

    kommo_msgid: str
    url: str
    status_code: int | None
    elapsed_s: float
    error: str
    body: bytes = field(repr=False)
    signature: str

    @property
    def ok(self) -> bool:
        return self.status_code == 200

    def to_json(self) -> dict[str, Any]:
        return {
            "kommo_msgid": self.kommo_msgid,
            "url": self.url,
            "status_code": self.status_code,
            "ok": self.ok,
            "elapsed_s": self.elapsed_s,
            "error": self.error,
            "body": json.loads(self.body),
            "signature": self.signature,
        }


@dataclass(frozen=True)
class Reaction:
    """A `/react` call amojo accepted (§8): who reacted to which message, and how."""

    scope_id: str
    conversation_id: str
    kommo_msgid: str
    msgid: str
    user_id: str
    emoji: str
    removed: bool
    # Which of the two path forms carried it (§13.3): "/react" or "/{msgid}/react".
    path_form: str
    body: dict[str, Any]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "scope_id": self.scope_id,
            "conversation_id": self.conversation_id,
            "kommo_msgid": self.kommo_msgid,
            "msgid": self.msgid,
            "user_id": self.user_id,
            "emoji": self.emoji,
            "type": "unreact" if self.removed else "react",
            "path_form": self.path_form,
            "body": self.body,
            "at": self.at,
        }
