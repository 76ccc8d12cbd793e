"""Body validation as strict as amojo's typing (§4): ints are ints, bools are bools, required fields are
present. Every failure is a `BadRequestError` naming the field, which the API turns into a 400."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from libs.errors import BadRequestError
from libs.kommo.payloads import FILE_DESCRIBED_TYPES, MESSAGE_TYPES

MEDIA_URL_TYPES: Final = frozenset({"file", "video", "picture", "voice", "audio"})
_SOURCE_MAX_LEN: Final = 40


def _bad(description: str) -> BadRequestError:
    return BadRequestError(description)


def json_object(body: bytes, what: str = "body") -> dict[str, Any]:
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"{what} is not valid JSON") from exc
    if not isinstance(data, dict):
        raise _bad(f"{what} must be a JSON object")
    return data


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def str_field(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise _bad(f"{_name(where, key)} is required")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{_name(where, key)} must be a string")
    if required and not value:
        raise _bad(f"{_name(where, key)} must not be empty")
    return value


def int_field(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _bad(f"{_name(where, key)} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{_name(where, key)} must be an integer")
    return value


def bool_field(data: dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{_name(where, key)} must be a boolean")
    return value


def obj_field(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _bad(f"{_name(where, key)} is required")
        return None
    if not isinstance(value, dict):
        raise _bad(f"{_name(where, key)} must be an object")
    return value


def required_obj(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj_field(data, key, where, required=True)
    assert value is not None
    return value


def required_int(data: dict[str, Any], key: str, where: str) -> int:
    value = int_field(data, key, where, required=True)
    assert value is not None
    return value


def number_field(data: dict[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{_name(where, key)} must be a number")
    return float(value)


def participant(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """sender/receiver/user: id and name required, the rest typed when present (§4)."""
    person = required_obj(data, key, where)
    at = _name(where, key)
    str_field(person, "id", at, required=True)
    str_field(person, "name", at, required=True)
    for optional in ("ref_id", "avatar", "profile_link"):
        str_field(person, optional, at)
    profile = obj_field(person, "profile", at)
    if profile is not None:
        str_field(profile, "phone", f"{at}.profile")
        str_field(profile, "email", f"{at}.profile")
    return person


def source_external_id(data: dict[str, Any], where: str) -> str:
    source = obj_field(data, "source", where)
    if source is None:
        return ""
    external_id = str_field(source, "external_id", f"{_name(where, 'source')}")
    if len(external_id) > _SOURCE_MAX_LEN or not all(" " <= ch <= "~" for ch in external_id):
        raise _bad("source.external_id must be at most 40 printable ASCII characters")
    return external_id


def message_body(data: dict[str, Any], *, editing: bool) -> dict[str, Any]:
    """`payload.message` (§4). When editing, the media fields may be omitted."""
    message = required_obj(data, "message", "payload")
    where = "payload.message"
    message_type = str_field(message, "type", where, required=True)
    if message_type not in MESSAGE_TYPES:
        raise _bad(f"{where}.type must be one of {', '.join(sorted(MESSAGE_TYPES))}")
    text = str_field(message, "text", where)
    if message_type == "text" and not text:
        raise _bad(f"{where}.text is required for a text message")
    media = str_field(message, "media", where)
    if media and not media.startswith(("https://", "http://")):
        raise _bad(f"{where}.media must be a public http(s) URL Kommo can download")
    sticker_id = str_field(message, "sticker_id", where)
    if not editing:
        if message_type in MEDIA_URL_TYPES and not media:
            raise _bad(f"{where}.media is required for a {message_type} message")
        if message_type == "sticker" and not (media or sticker_id):
            raise _bad(f"{where}.media or sticker_id is required for a sticker message")
        if message_type in FILE_DESCRIBED_TYPES:
            str_field(message, "file_name", where, required=True)
            int_field(message, "file_size", where, required=True)
    else:
        str_field(message, "file_name", where)
    file_size = int_field(message, "file_size", where)
    if file_size is not None and file_size < 0:
        raise _bad(f"{where}.file_size must not be negative")
    duration = int_field(message, "media_duration", where)
    if duration is not None and duration < 0:
        raise _bad(f"{where}.media_duration must not be negative")
    str_field(message, "callback_data", where)
    str_field(message, "media_group_id", where)
    location = obj_field(message, "location", where, required=message_type == "location")
    if location is not None:
        number_field(location, "lon", f"{where}.location")
        number_field(location, "lat", f"{where}.location")
    contact = obj_field(message, "contact", where, required=message_type == "contact")
    if contact is not None:
        str_field(contact, "name", f"{where}.contact", required=True)
        str_field(contact, "phone", f"{where}.contact", required=True)
    return message


@dataclass(frozen=True)
class NewMessagePayload:
    payload: dict[str, Any]
    message: dict[str, Any]
    sender: dict[str, Any]
    receiver: dict[str, Any] | None
    source_external_id: str


def new_message_payload(payload: dict[str, Any]) -> NewMessagePayload:
    """`new_message` (§4): sender and, for an imported reply, receiver each need id and name."""
    where = "payload"
    required_int(payload, "timestamp", where)
    required_int(payload, "msec_timestamp", where)
    str_field(payload, "msgid", where, required=True)
    str_field(payload, "conversation_id", where, required=True)
    str_field(payload, "conversation_ref_id", where)
    bool_field(payload, "silent", where)
    source = source_external_id(payload, where)
    sender = participant(payload, "sender", where)
    receiver = participant(payload, "receiver", where) if payload.get("receiver") is not None else None
    reply_to = obj_field(payload, "reply_to", where)
    if reply_to is not None:
        embedded_message(required_obj(reply_to, "message", "payload.reply_to"), "payload.reply_to.message")
    obj_field(payload, "forwards", where)
    message = message_body(payload, editing=False)
    return NewMessagePayload(payload, message, sender, receiver, source)


def edit_message_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`edit_message` (§4): `msgid` or `id`, `conversation_id` and a new `message`; returns the message."""
    where = "payload"
    if not str_field(payload, "msgid", where) and not str_field(payload, "id", where):
        raise _bad("payload.msgid or payload.id is required to edit a message")
    str_field(payload, "conversation_id", where, required=True)
    return message_body(payload, editing=True)


def embedded_message(data: dict[str, Any], where: str) -> tuple[str, str]:
    """An embedded message (EMB, §4): `{id}` (Kommo's) or `{msgid}` (the integration's), alone or in a
    full object; returns (id, msgid)."""
    kommo_id = str_field(data, "id", where)
    msgid = str_field(data, "msgid", where)
    if not kommo_id and not msgid:
        raise _bad(f"{where} needs id or msgid")
    return kommo_id, msgid


@dataclass(frozen=True)
class ReactPayload:
    conversation_id: str
    conversation_ref_id: str
    kommo_msgid: str
    msgid: str
    user_id: str
    user_ref_id: str
    removed: bool
    emoji: str


def react_payload(data: dict[str, Any]) -> ReactPayload:
    """`/react` (§8): a conversation (ours or Kommo's), a message (`id` or `msgid`), a user (`id` and/or
    `ref_id`), `type` react|unreact, and `emoji`, required to react."""
    conversation_id = str_field(data, "conversation_id", "")
    conversation_ref_id = str_field(data, "conversation_ref_id", "")
    if not conversation_id and not conversation_ref_id:
        raise _bad("conversation_id or conversation_ref_id is required")
    kommo_msgid, msgid = embedded_message(data, "")
    user = required_obj(data, "user", "")
    user_id = str_field(user, "id", "user")
    user_ref_id = str_field(user, "ref_id", "user")
    if not user_id and not user_ref_id:
        raise _bad("user.id or user.ref_id is required")
    kind = str_field(data, "type", "", required=True)
    if kind not in ("react", "unreact"):
        raise _bad("type must be react or unreact")
    emoji = str_field(data, "emoji", "")
    if kind == "react" and not emoji:
        raise _bad("emoji is required to react")
    return ReactPayload(
        conversation_id, conversation_ref_id, kommo_msgid, msgid, user_id, user_ref_id, kind == "unreact", emoji
    )
