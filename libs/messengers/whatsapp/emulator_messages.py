"""`POST /{phone-number-id}/messages` in the WhatsApp emulator (reference/messenger-apis.md §2, "Outbound",
"Read receipts and typing", "24-hour customer-service window", "Error codes").

A business message is checked as Meta checks it (each type's fields and limits, the template it names,
the media it points at), then the sending limits apply (130429 per number, 131056 per user), and it is
accepted with a wamid. What becomes of it arrives later as status webhooks: `sent` and `delivered`, or
`failed` with 131047 outside the 24-hour window (or at once, in the window's `immediate` mode), 131026 for
a number that is not (or no longer) a reachable WhatsApp user, 131053 for a `link` that cannot be fetched.
The same route marks a client's message read, and with `typing_indicator` shows "typing…".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from libs.messengers.whatsapp.emulator_errors import GraphApiError, invalid_parameter
from libs.messengers.whatsapp.emulator_interactive import check_interactive
from libs.messengers.whatsapp.emulator_media import SIZE_LIMITS, MediaRefused, StoredMedia
from libs.messengers.whatsapp.emulator_state import (
    TYPING_S,
    Client,
    InjectedError,
    PhoneNumber,
    ReadMark,
    StoredMessage,
    WhatsAppState,
)

TEXT_LIMIT: Final = 4096
CAPTION_LIMIT: Final = 1024
TYPES: Final = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "reaction",
        "template",
    }
)
MEDIA_TYPES: Final[Mapping[str, frozenset[str] | None]] = {
    "image": frozenset({"image/jpeg", "image/png"}),
    "video": frozenset({"video/mp4", "video/3gpp"}),
    "audio": frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
    "sticker": frozenset({"image/webp"}),
    "document": None,  # any type
}
_CAPTIONED: Final = frozenset({"image", "video", "document"})
_VOICE_TYPE: Final = "audio/ogg"

WINDOW_CLOSED_ERROR: Final = (
    131047,
    "Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
)
UNDELIVERABLE_ERROR: Final = (
    131026,
    "Message undeliverable",
    "Unable to deliver message. Reasons can include: the recipient phone number is not a WhatsApp phone number; "
    "the recipient has not accepted the new Terms of Service; the recipient is using an old WhatsApp version; "
    "the recipient has blocked the business.",
)


def error(spec: tuple[int, str, str]) -> GraphApiError:
    code, title, details = spec
    return GraphApiError(400, code, title, details=details)


def _not_valid(details: str) -> GraphApiError:
    return invalid_parameter(details, code=131009)


def _text(value: object, name: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise invalid_parameter(f"{name} is required and must be a non-empty string")
    if len(value) > limit:
        raise _not_valid(f"{name} must be at most {limit} characters long")
    return value


@dataclass(frozen=True)
class Outgoing:
    """A business message that passed the checks, and what its settlement needs."""

    kind: str
    recipient: str  # as the request named it
    client: Client | None  # None: not a WhatsApp user the emulator knows (131026 later)
    link: str  # a media `link` to fetch after answering, or ""
    link_types: frozenset[str] | None


def _recipient(state: WhatsAppState, body: Mapping[str, Any]) -> tuple[str, Client | None]:
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise invalid_parameter("recipient_type must be 'individual'")
    to, bsuid = body.get("to"), body.get("recipient")
    if isinstance(to, str) and to.strip():
        digits = "".join(c for c in to if c.isdigit())
        if not digits:
            raise invalid_parameter("Param to must be a phone number")
        return to, state.clients.get(digits)
    if isinstance(bsuid, str) and bsuid.strip():
        return bsuid, state.clients.get(bsuid.strip())
    raise invalid_parameter("The parameter to is required.")


def _media(state: WhatsAppState, number: PhoneNumber, kind: str, media: object) -> tuple[str, StoredMedia | None]:
    """A media object: `{"id"}` of a file this number holds, or `{"link"}` Meta will fetch."""
    if not isinstance(media, dict):
        raise invalid_parameter(f"Param {kind} must be an object")
    media_id, link = media.get("id"), media.get("link")
    if bool(media_id) == bool(link):
        raise invalid_parameter(f"Param {kind} must have exactly one of id and link")
    caption = media.get("caption")
    if caption is not None:
        if kind not in _CAPTIONED:
            raise invalid_parameter(f"Param {kind}['caption'] is not supported for {kind}")
        _text(caption, f"{kind}['caption']", CAPTION_LIMIT)
    if media.get("filename") is not None and kind != "document":
        raise invalid_parameter(f"Param {kind}['filename'] is only supported for documents")
    voice = media.get("voice")
    if voice is not None and (kind != "audio" or not isinstance(voice, bool)):
        raise invalid_parameter("Param voice is a boolean of audio messages")
    allowed = MEDIA_TYPES[kind]
    if link:
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise _not_valid(f"Param {kind}['link'] must be an http(s) URL")
        return link, None
    stored = state.media.get(str(media_id))
    if stored is None or stored.owner != number.id:
        raise _not_valid(f"Invalid media id {media_id}: not found for this phone number")
    if allowed is not None and stored.mime_type not in allowed:
        raise _not_valid(f"media type {stored.mime_type} is not supported for {kind}")
    if voice and stored.mime_type != _VOICE_TYPE:
        raise _not_valid("a voice note must be audio/ogg (Opus)")
    if stored.size > SIZE_LIMITS[kind]:
        raise _not_valid(f"media size {stored.size} exceeds the {SIZE_LIMITS[kind]} bytes allowed for {kind}")
    return "", stored


def _location(location: object) -> None:
    if not isinstance(location, dict):
        raise invalid_parameter("Param location must be an object")
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = location.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not -bound <= value <= bound:
            raise invalid_parameter(f"Param location['{key}'] must be a number within ±{bound}")


def _contacts(contacts: object) -> None:
    if not isinstance(contacts, list) or not contacts:
        raise invalid_parameter("Param contacts must be a non-empty array")
    for contact in contacts:
        name = contact.get("name") if isinstance(contact, dict) else None
        if not isinstance(name, dict) or not isinstance(name.get("formatted_name"), str) or not name["formatted_name"]:
            raise invalid_parameter("Param contacts[]['name']['formatted_name'] is required")
        if not any(isinstance(name.get(k), str) and name[k] for k in ("first_name", "last_name", "middle_name")):
            raise invalid_parameter("Param contacts[]['name'] needs one of first_name, last_name, middle_name")
        phones = contact.get("phones", [])
        if not isinstance(phones, list) or not all(
            isinstance(p, dict) and isinstance(p.get("phone"), str) for p in phones
        ):
            raise invalid_parameter("Param contacts[]['phones'] must be an array of {phone}")


def _chat_message(state: WhatsAppState, number: PhoneNumber, recipient_key: str, wamid: object) -> StoredMessage:
    message = state.messages.get(wamid) if isinstance(wamid, str) else None
    if message is None or message.phone_number_id != number.id or message.client_key != recipient_key:
        raise invalid_parameter(f"message_id {wamid!r} is not a message of this chat")
    return message


def check(state: WhatsAppState, number: PhoneNumber, body: Mapping[str, Any]) -> Outgoing:
    """Every check before a business message is accepted (raises GraphApiError)."""
    kind = body.get("type", "text")
    if kind not in TYPES:
        raise invalid_parameter(f"Param type must be one of {sorted(TYPES)}")
    recipient, client = _recipient(state, body)
    content = body.get(kind)
    link, link_types = "", None
    if kind == "text":
        text = content if isinstance(content, dict) else {}
        _text(text.get("body"), "text['body']", TEXT_LIMIT)
        if "preview_url" in text and not isinstance(text["preview_url"], bool):
            raise invalid_parameter("Param text['preview_url'] must be a boolean")
    elif kind in MEDIA_TYPES:
        link, _ = _media(state, number, kind, content)
        link_types = MEDIA_TYPES[kind]
    elif kind == "location":
        _location(content)
    elif kind == "contacts":
        _contacts(content)
    elif kind == "interactive":
        check_interactive(content)
    elif kind == "reaction":
        reaction = content if isinstance(content, dict) else {}
        if client is not None:
            _chat_message(state, number, client.key, reaction.get("message_id"))
        emoji = reaction.get("emoji")
        if not isinstance(emoji, str) or len(emoji) > 10 or any(c.isascii() and c.isalnum() for c in emoji):
            raise _not_valid("reaction['emoji'] must be an emoji, or '' to remove the reaction")
    elif kind == "template":
        if not isinstance(content, dict):
            raise invalid_parameter("Param template must be an object")
        state.templates.check_send(number.waba_id, content)
    context = body.get("context")
    if context is not None and (not isinstance(context, dict) or not isinstance(context.get("message_id"), str)):
        raise invalid_parameter("Param context['message_id'] must be a message id")
    return Outgoing(str(kind), recipient, client, link, link_types)


def injected_for(state: WhatsAppState, recipient: str) -> InjectedError | None:
    """The next injected error meant for this recipient (or for anyone), used up."""
    for injected in state.injected:
        if not injected.to or injected.to == recipient:
            state.injected.remove(injected)
            return injected
    return None


async def send(state: WhatsAppState, number: PhoneNumber, body: Mapping[str, Any]) -> dict[str, Any]:
    """A business message: checked, limited, accepted; its statuses follow (see `settle`)."""
    outgoing = check(state, number, body)
    client_key = (
        outgoing.client.key
        if outgoing.client is not None
        else "".join(c for c in outgoing.recipient if c.isdigit()) or outgoing.recipient
    )
    injected = injected_for(state, outgoing.recipient)
    if injected is not None and injected.mode == "immediate":
        raise injected.error
    window_closed = outgoing.kind != "template" and not state.window_open(number.id, client_key)
    if window_closed and state.window_mode == "immediate":
        raise error(WINDOW_CLOSED_ERROR)
    refusal = state.limits.admit(number.id, client_key)
    if refusal == "throughput":
        raise GraphApiError(400, 130429, "Rate limit hit", details="Cloud API message throughput has been reached.")
    if refusal == "pair_rate":
        raise GraphApiError(
            400, 131056, "(Business Account, Consumer Account) pair rate limit hit",
            details="Message failed to send because there were too many messages sent from this phone number to "
            "the same phone number in a short period of time.",
        )  # fmt: skip
    message = state.accept(number, client_key, outgoing.kind, dict(body))
    failure = error(WINDOW_CLOSED_ERROR) if window_closed else injected.error if injected is not None else None
    state.settle_later(settle(state, message, outgoing, failure))
    contact: dict[str, str] = {"input": outgoing.recipient}
    if outgoing.client is not None and outgoing.client.wa_id and body.get("to"):
        contact["wa_id"] = outgoing.client.wa_id
    elif outgoing.client is not None:
        contact["user_id"] = outgoing.client.user_id
    else:
        contact["wa_id"] = client_key
    status = "held_for_quality_assessment" if outgoing.kind == "template" and state.hold_templates else "accepted"
    return {
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": message.wamid, "message_status": status}],
    }


async def settle(
    state: WhatsAppState, message: StoredMessage, outgoing: Outgoing, failure: GraphApiError | None
) -> None:
    """What Meta does after answering 200: deliver, or report why not."""
    number = state.numbers[message.phone_number_id]
    client = outgoing.client
    if failure is not None:
        await state.emit_status(message, "failed", failure)
        return
    if client is None or not client.reachable or number.id in client.blocked:
        await state.emit_status(message, "failed", error(UNDELIVERABLE_ERROR))
        return
    if outgoing.link:
        types = outgoing.link_types

        def expected(mime_type: str) -> bool:
            return types is None or mime_type in types

        try:
            limit = SIZE_LIMITS[outgoing.kind]
            fetched = await state.media.fetch_link(state.http, outgoing.link, number.id, expected, limit)
        except MediaRefused as exc:
            await state.emit_status(
                message, "failed", GraphApiError(400, 131053, "Media upload error", details=exc.details)
            )
            return
        media = message.body.get(outgoing.kind)
        if isinstance(media, dict):
            media["fetched"] = fetched.to_json()
    await state.emit_status(message, "sent")
    if client.online:
        await state.emit_status(message, "delivered")


def mark_read(state: WhatsAppState, number: PhoneNumber, body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"status": "read", "message_id"}` (with `typing_indicator` to show typing): a client's message of
    this number, and every earlier one, read."""
    if body.get("status") != "read":
        raise invalid_parameter("Param status must be 'read'")
    wamid = body.get("message_id")
    message = state.messages.get(wamid) if isinstance(wamid, str) else None
    if message is None or message.direction != "in" or message.phone_number_id != number.id:
        raise invalid_parameter(f"message_id {wamid!r} is not a message this number received")
    typing = body.get("typing_indicator")
    if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
        raise invalid_parameter("Param typing_indicator['type'] must be 'text'")
    state.reads.append(ReadMark(number.id, message.wamid, typing is not None, state.clock()))
    for earlier in state.messages.values():
        if earlier.direction == "in" and earlier.client_key == message.client_key and earlier.at <= message.at:
            earlier.status = "read"
    return {"success": True}


def typing_shown(state: WhatsAppState, phone_number_id: str, client_key: str) -> bool:
    """Whether the client sees "typing…" now: a typing indicator in the last 25 s, and no message since."""
    now = state.clock()
    marks = [
        r for r in state.reads
        if r.typing and r.phone_number_id == phone_number_id and state.messages[r.message_id].client_key == client_key
    ]  # fmt: skip
    if not marks or now - marks[-1].at >= TYPING_S:
        return False
    return not any(
        m.phone_number_id == phone_number_id and m.client_key == client_key and m.at >= marks[-1].at for m in state.sent
    )
