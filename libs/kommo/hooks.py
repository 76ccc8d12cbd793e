"""Parse Kommo's chat webhooks (v2, §9) into our protobuf events.

Kommo sends each hook once and never retries, so the gateway must decide fast and precisely: a message
hook becomes a `KommoOutboundMessage`, a reaction hook a `KommoReaction`, a typing hook a `KommoTyping`;
anything malformed raises `BadRequestError` saying what is wrong. A message's buttons or Salesbot list
(`markup`) travel with its text as `Text.choices` (see `markup`). The signature is checked by the caller
(`signing.verify_hook_signature`) before parsing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.errors import BadRequestError
from libs.kommo.markup import markup_or_none
from libs.messengers.choices import with_choice_lines

_MEDIA_KINDS: Final[dict[str, content_pb2.MediaKind.ValueType]] = {
    "picture": content_pb2.MEDIA_KIND_PICTURE,
    "video": content_pb2.MEDIA_KIND_VIDEO,
    "file": content_pb2.MEDIA_KIND_FILE,
    "voice": content_pb2.MEDIA_KIND_VOICE,
    "audio": content_pb2.MEDIA_KIND_AUDIO,
}
_ACTIONS: Final = ("typing", "reaction")

KommoHookEvent = events_pb2.KommoOutboundMessage | events_pb2.KommoReaction | events_pb2.KommoTyping


def content_digest(content: content_pb2.Content) -> str:
    """A short fingerprint of a message's content. Kommo documents no edit hook (§13); the reading the
    bridge handles is that an edited message comes as its message hook again, same id, other content,
    so a hook's identity is its message id plus this."""
    return hashlib.sha256(content.SerializeToString(deterministic=True)).hexdigest()[:32]


def hook_msg_id(event: KommoHookEvent) -> str:
    """The `Nats-Msg-Id` of a hook's event: the same only for a true duplicate of the same hook."""
    if isinstance(event, events_pb2.KommoOutboundMessage):
        return f"kommo-hook:{event.kommo_message_id}:{content_digest(event.content)}"
    if isinstance(event, events_pb2.KommoReaction):
        return event.event_id
    conversation = event.conversation_id or event.kommo_chat_id
    return f"kommo-typing:{conversation}:{event.user_kommo_id}:{event.expires_at_ms}"


def parse_chat_hook(body: bytes, scope_id: str) -> events_pb2.KommoOutboundMessage | None:
    """A message hook → `KommoOutboundMessage`; a typing or reaction hook → None (see `parse_hook`)."""
    event = parse_hook(body, scope_id)
    return event if isinstance(event, events_pb2.KommoOutboundMessage) else None


def parse_hook(body: bytes, scope_id: str) -> KommoHookEvent:
    """Any chat hook → its event. `scope_id` comes from the hook URL (`:scope_id`), the body lacks it."""
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
        if "typing" in action:
            return _typing(data, _object(action, "typing", "action"), scope_id)
        if "reaction" in action:
            return _reaction(data, _object(action, "reaction", "action"), scope_id, body)
        raise BadRequestError(f"chat hook: unknown action {sorted(action)}")

    envelope = _object(data, "message", "")
    message = _object(envelope, "message", "message")
    kommo_message_id = _required_str(message, "id", "message.message")
    message_type = _required_str(message, "type", "message.message")
    conversation = _object(envelope, "conversation", "message")
    kommo_chat_id = _required_str(conversation, "id", "message.conversation")
    receiver = _optional_object(envelope, "receiver", "message")
    sender = _optional_object(envelope, "sender", "message")
    source = _optional_object(envelope, "source", "message")

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
        reply_to=_quoted(envelope),
        media_group_id=_optional_str(message, "media_group_id", "message.message"),
        receiver_kommo_id=_optional_str(receiver, "id", "message.receiver"),
        receiver_phone=_optional_str(receiver, "phone", "message.receiver"),
        source_external_id=_optional_str(source, "external_id", "message.source"),
    )


def _quoted(envelope: dict[str, Any]) -> events_pb2.MessageRef | None:
    """`reply_to.message` of a message hook (an embedded message: Kommo's `id`, our `msgid` when the
    quoted message came from us, and its content, which the bridge does not need)."""
    reply_to = _optional_object(envelope, "reply_to", "message")
    if not reply_to:
        return None
    quoted = _object(reply_to, "message", "message.reply_to")
    where = "message.reply_to.message"
    ref = events_pb2.MessageRef(
        kommo_message_id=_optional_str(quoted, "id", where),
        msgid=_optional_str(quoted, "msgid", where) or _optional_str(quoted, "client_id", where),
    )
    if not ref.kommo_message_id and not ref.msgid:
        raise BadRequestError(f"chat hook: {where} has neither id nor msgid")
    return ref


def _typing(data: dict[str, Any], typing: dict[str, Any], scope_id: str) -> events_pb2.KommoTyping:
    """`action.typing{user{id}, conversation{id, client_id?}, expired_at}` (seconds)."""
    where = "action.typing"
    conversation = _object(typing, "conversation", where)
    user = _object(typing, "user", where)
    expired_at = _optional_int(typing, "expired_at", where)
    if expired_at <= 0:
        raise BadRequestError(f"chat hook: {where}.expired_at is missing")
    return events_pb2.KommoTyping(
        account_id=_optional_str(data, "account_id", ""),
        scope_id=scope_id,
        conversation_id=_optional_str(conversation, "client_id", f"{where}.conversation"),
        kommo_chat_id=_required_str(conversation, "id", f"{where}.conversation"),
        user_kommo_id=_required_str(user, "id", f"{where}.user"),
        expires_at_ms=expired_at * 1000,
    )


def _reaction(data: dict[str, Any], reaction: dict[str, Any], scope_id: str, body: bytes) -> events_pb2.KommoReaction:
    """`action.reaction{message{id, client_id?, …}, user{id}, conversation{id, client_id?}, type, emoji?}`.

    §13.2: an older example names the message by a bare `msgid` instead of `message`, and which id it
    holds is not said; when it is all there is, it is offered as both Kommo's id and ours, and the
    router takes whichever it knows.
    """
    where = "action.reaction"
    conversation = _object(reaction, "conversation", where)
    user = _object(reaction, "user", where)
    kind = _required_str(reaction, "type", where)
    if kind not in ("react", "unreact"):
        raise BadRequestError(f"chat hook: {where}.type must be react or unreact, is {kind!r}")
    emoji = _optional_str(reaction, "emoji", where)
    if kind == "react" and not emoji:
        raise BadRequestError(f"chat hook: {where}.emoji is missing")
    message = _optional_object(reaction, "message", where)
    target = events_pb2.MessageRef(
        kommo_message_id=_optional_str(message, "id", f"{where}.message"),
        msgid=_optional_str(message, "client_id", f"{where}.message"),
    )
    legacy = _optional_str(reaction, "msgid", where)
    if not target.kommo_message_id and not target.msgid:
        if not legacy:
            raise BadRequestError(f"chat hook: {where} names no message (neither message.id nor msgid)")
        target = events_pb2.MessageRef(kommo_message_id=legacy, msgid=legacy)
    return events_pb2.KommoReaction(
        # Kommo gives a reaction no id: the hook's own bytes are its identity, so only a true duplicate
        # of the same hook is ever taken for one.
        event_id=f"kommo-reaction:{hashlib.sha256(body).hexdigest()[:32]}",
        account_id=_optional_str(data, "account_id", ""),
        scope_id=scope_id,
        conversation_id=_optional_str(conversation, "client_id", f"{where}.conversation"),
        kommo_chat_id=_required_str(conversation, "id", f"{where}.conversation"),
        target=target,
        user_kommo_id=_required_str(user, "id", f"{where}.user"),
        emoji=emoji,
        removed=kind == "unreact",
        raw=body,
    )


def _template(template: dict[str, Any], text: str) -> content_pb2.Content:
    """`message.message.template{id, external_id, content, params[{key, value}]}`: a chat template the
    manager sent; the platform sends its own template named by `external_id`."""
    where = "message.message.template"
    params = template.get("params") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise BadRequestError(f"chat hook: {where}.params must be an array of objects")
    return content_pb2.Content(
        template=content_pb2.Template(
            kommo_template_id=_optional_int(template, "id", where),
            external_id=_required_str(template, "external_id", where),
            content=_optional_str(template, "content", where),
            params=[
                content_pb2.TemplateParam(
                    key=_required_str(p, "key", f"{where}.params[{i}]"),
                    value=_optional_str(p, "value", f"{where}.params[{i}]"),
                )
                for i, p in enumerate(params)
            ],
            rendered=text,
        )
    )


def _media(message: dict[str, Any], message_type: str, caption: str) -> content_pb2.Media:
    where = "message.message"
    return content_pb2.Media(
        kind=_MEDIA_KINDS[message_type],
        file_ref=_required_str(message, "media", where),
        file_name=_optional_str(message, "file_name", where),
        size=_optional_int(message, "file_size", where),
        caption=caption,
        duration_s=_optional_int(message, "media_duration", where),
    )


def _content(message: dict[str, Any], message_type: str) -> content_pb2.Content:
    where = "message.message"
    text = _optional_str(message, "text", where)
    template = _optional_object(message, "template", where)
    if template and template.get("external_id"):  # a template of ours (Kommo's own have no external_id)
        content = _template(template, text)
        if message_type in _MEDIA_KINDS and _optional_str(message, "media", where):
            # The file of a template with a media header comes as the hook's own `media`.
            content.template.header_media.CopyFrom(_media(message, message_type, ""))
        return content
    markup = markup_or_none(message.get("markup"), f"{where}.markup")
    if message_type == "text":
        # A Salesbot's list carries its message as the list's `body`.
        body = (markup.list_body if markup else "") or text
        if not body:
            raise BadRequestError("chat hook: a text message without message.message.text")
        offered = markup.choices if markup and markup.choices.WhichOneof("kind") else None
        return content_pb2.Content(text=content_pb2.Text(body=body, choices=offered))
    if message_type in _MEDIA_KINDS:
        # A file cannot carry buttons everywhere: its options follow in the caption, so none is lost.
        caption = with_choice_lines(text, markup.choices) if markup else text
        return content_pb2.Content(media=_media(message, message_type, caption))
    if message_type == "sticker":
        media_url = _optional_str(message, "media", where) or _optional_str(message, "sticker_id", where)
        if not media_url:
            raise BadRequestError("chat hook: a sticker without media or sticker_id")
        size = _optional_int(message, "file_size", where)
        return content_pb2.Content(sticker=content_pb2.Sticker(file_ref=media_url, size=max(0, size)))
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
