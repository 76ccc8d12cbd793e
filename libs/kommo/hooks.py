"""Parse Kommo's chat webhooks (v2, §9) into our protobuf events.

Kommo sends each hook once and never retries, so the gateway must decide fast and precisely: a hook it
can use becomes a `KommoOutboundMessage`; anything malformed raises `BadRequestError` saying what is
wrong. The signature is checked by the caller (`signing.verify_hook_signature`) before parsing.
"""

from __future__ import annotations

import json
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.errors import BadRequestError

_MEDIA_KINDS: Final[dict[str, content_pb2.MediaKind.ValueType]] = {
    "picture": content_pb2.MEDIA_KIND_PICTURE,
    "video": content_pb2.MEDIA_KIND_VIDEO,
    "file": content_pb2.MEDIA_KIND_FILE,
    "voice": content_pb2.MEDIA_KIND_VOICE,
    "audio": content_pb2.MEDIA_KIND_AUDIO,
}
_ACTIONS: Final = ("typing", "reaction")


def parse_chat_hook(body: bytes, scope_id: str) -> events_pb2.KommoOutboundMessage | None:
    """A message hook → `KommoOutboundMessage`; a typing or reaction hook → None (handled elsewhere).

    `scope_id` comes from the hook URL (`:scope_id`), the hook body does not carry it.
    """
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError(f"chat hook: body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadRequestError(f"chat hook: body must be a JSON object, got {type(data).__name__}")

    if "message" not in data:
        action = data.get("action")
        if not isinstance(action, dict):
            raise BadRequestError("chat hook: neither a 'message' nor an 'action' object")
        for name in _ACTIONS:
            if name in action:
                _object(action, name, "action")
                return None
        raise BadRequestError(f"chat hook: unknown action {sorted(action)}")

    envelope = _object(data, "message", "")
    message = _object(envelope, "message", "message")
    kommo_message_id = _required_str(message, "id", "message.message")
    message_type = _required_str(message, "type", "message.message")
    conversation = _object(envelope, "conversation", "message")
    kommo_chat_id = _required_str(conversation, "id", "message.conversation")
    receiver = _optional_object(envelope, "receiver", "message")
    sender = _optional_object(envelope, "sender", "message")

    return events_pb2.KommoOutboundMessage(
        account_id=_optional_str(data, "account_id", ""),
        scope_id=scope_id,
        kommo_message_id=kommo_message_id,
        # Absent for a write-first chat: Kommo opened it and we have no conversation yet.
        conversation_id=_optional_str(conversation, "client_id", "message.conversation"),
        kommo_chat_id=kommo_chat_id,
        receiver_client_id=_optional_str(receiver, "client_id", "message.receiver"),
        sender_kommo_id=_optional_str(sender, "id", "message.sender"),
        sent_at_ms=_sent_at_ms(envelope),
        content=_content(message, message_type),
        raw=body,
    )


def _content(message: dict[str, Any], message_type: str) -> content_pb2.Content:
    where = "message.message"
    text = _optional_str(message, "text", where)
    if message_type == "text":
        if not text:
            raise BadRequestError("chat hook: a text message without message.message.text")
        return content_pb2.Content(text=content_pb2.Text(body=text))
    if message_type in _MEDIA_KINDS:
        media_url = _required_str(message, "media", where)
        return content_pb2.Content(
            media=content_pb2.Media(
                kind=_MEDIA_KINDS[message_type],
                file_ref=media_url,
                file_name=_optional_str(message, "file_name", where),
                size=_optional_int(message, "file_size", where),
                caption=text,
                duration_s=_optional_int(message, "media_duration", where),
            )
        )
    if message_type == "sticker":
        media_url = _optional_str(message, "media", where) or _optional_str(message, "sticker_id", where)
        if not media_url:
            raise BadRequestError("chat hook: a sticker without media or sticker_id")
        return content_pb2.Content(sticker=content_pb2.Sticker(file_ref=media_url))
    if message_type == "location":
        location = _object(message, "location", where)
        return content_pb2.Content(
            location=content_pb2.Location(
                lat=_number(location, "lat", f"{where}.location"), lon=_number(location, "lon", f"{where}.location")
            )
        )
    if message_type == "contact":
        contact = _object(message, "contact", where)
        return content_pb2.Content(
            contact=content_pb2.Contact(
                name=_optional_str(contact, "name", f"{where}.contact"),
                phone=_required_str(contact, "phone", f"{where}.contact"),
            )
        )
    raise BadRequestError(f"chat hook: unsupported message type {message_type!r}")


def _sent_at_ms(envelope: dict[str, Any]) -> int:
    msec = _optional_int(envelope, "msec_timestamp", "message")
    if msec:
        return msec
    return _optional_int(envelope, "timestamp", "message") * 1000


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _object(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        state = "missing" if value is None else f"a {type(value).__name__}"
        raise BadRequestError(f"chat hook: {_path(where, key)} must be an object, is {state}")
    return value


def _optional_object(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return {} if data.get(key) is None else _object(data, key, where)


def _required_str(data: dict[str, Any], key: str, where: str) -> str:
    value = _optional_str(data, key, where)
    if not value:
        raise BadRequestError(f"chat hook: {_path(where, key)} is missing or empty")
    return value


def _optional_str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequestError(f"chat hook: {_path(where, key)} must be a string, is {type(value).__name__}")
    return value


def _optional_int(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequestError(f"chat hook: {_path(where, key)} must be an integer, is {type(value).__name__}")
    return value


def _number(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(f"chat hook: {_path(where, key)} must be a number")
    return float(value)
