"""WhatsApp webhook notifications into canonical events (reference/messenger-apis.md §2).

One POST is `{"object": "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}`, and
one `value` may carry several client messages (`messages[]`, their senders in `contacts[]`) and several
statuses of the business's own messages (`statuses[]`). Each becomes one `InboundMessage`, in the order
Meta lists them; a template review (`message_template_status_update`) becomes one carrying
`template_status`; changes of other fields (account updates) carry no event.

Who the client is: `from` / `contacts[].wa_id` is their phone number; `from_user_id` /
`contacts[].user_id` is the business-scoped user id (BSUID) that users who hide their number behind a
username have instead. The chat and sender id is the phone number when there is one, the BSUID otherwise;
the BSUID also travels as `sender.platform_user_id`, so the router can keep a client who later hides their
number, or changes it (`system.user_changed_number`, an `address_changed` event), in one conversation
(services/router/identities.py). Event ids: `whatsapp:<connection>:<wamid>` for a message,
`...:<wamid>:<status>:<timestamp>` for a status (Meta sends statuses twice and out of order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.errors import BadRequestError
from libs.messengers.payload_reader import PayloadReader, type_name
from libs.messengers.whatsapp.graph_errors import GraphError, reason_of

OBJECT: Final = "whatsapp_business_account"
TEMPLATE_FIELD: Final = "message_template_status_update"
DELETED_NOTE: Final = "[The client deleted this message]"
"""What a message the client deleted for everyone (`revoke`) becomes in Kommo: an edit of it, so the
chat shows what the client's WhatsApp shows."""

UNSUPPORTED_NOTE: Final = (
    "[The client sent a kind of message WhatsApp does not pass on to businesses: ask them to send it another way]"
)
"""What the manager reads for an `unsupported` message that does not say what it was (131051)."""

_STATES: Final[Mapping[str, events_pb2.DeliveryState.ValueType]] = {
    "sent": events_pb2.DELIVERY_STATE_SENT,
    "delivered": events_pb2.DELIVERY_STATE_DELIVERED,
    "read": events_pb2.DELIVERY_STATE_READ,
    "played": events_pb2.DELIVERY_STATE_READ,  # a voice note listened to: read, as far as Kommo can show
    "failed": events_pb2.DELIVERY_STATE_FAILED,
}
_MEDIA_KINDS: Final[Mapping[str, content_pb2.MediaKind.ValueType]] = {
    "image": content_pb2.MEDIA_KIND_PICTURE,
    "video": content_pb2.MEDIA_KIND_VIDEO,
    "document": content_pb2.MEDIA_KIND_FILE,
    "audio": content_pb2.MEDIA_KIND_AUDIO,
}
# Messages that say something about the chat rather than to the manager (a first opening of the chat, a
# system note other than a number change): no event.
_SILENT_TYPES: Final = frozenset({"system", "request_welcome"})
NUMBER_CHANGED: Final = "user_changed_number"

# Where the message a client replies to is named, and the flags that mean a forward rather than a reply.
_FORWARD_FLAGS: Final = ("forwarded", "frequently_forwarded")


class _Reader(PayloadReader):
    """Typed reads from a notification, naming the exact field of anything malformed."""

    def __init__(self) -> None:
        super().__init__("whatsapp notification")

    def timestamp_ms(self, parent: Mapping[str, Any], path: str) -> int:
        """`timestamp` is a string of unix seconds."""
        value = parent.get("timestamp")
        if isinstance(value, str) and value.isdigit():
            return int(value) * 1000
        if isinstance(value, int) and not isinstance(value, bool):
            return value * 1000
        raise self.fail(f"{path}.timestamp", "a string of unix seconds", value)


def parse_notification(body: bytes, connection_id: str) -> list[events_pb2.InboundMessage]:
    """Every event of one webhook POST, in Meta's order; [] for a notification with none the bridge carries.
    Raises BadRequestError for input that is not a WhatsApp Business Account notification."""
    try:
        notification: object = json.loads(body)
    except ValueError as exc:
        raise BadRequestError(f"whatsapp notification: body is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(notification, dict):
        raise BadRequestError(f"whatsapp notification: body must be a JSON object, got {type_name(notification)}")
    if notification.get("object") != OBJECT:
        raise BadRequestError(f"whatsapp notification: object must be {OBJECT!r}")
    read = _Reader()
    events: list[events_pb2.InboundMessage] = []
    for e, entry in enumerate(read.list_(notification, "entry", "notification")):
        if not isinstance(entry, dict):
            raise read.fail(f"entry[{e}]", "an object", entry)
        for c, change in enumerate(read.list_(entry, "changes", f"entry[{e}]")):
            path = f"entry[{e}].changes[{c}]"
            if not isinstance(change, dict):
                raise read.fail(path, "an object", change)
            field = change.get("field")
            if field == TEMPLATE_FIELD:
                event = _template_status(read, entry, read.obj(change, "value", path), f"{path}.value", connection_id)
                events.append(event)
                continue
            if field != "messages":
                continue  # account updates and the like: no event
            value = read.obj(change, "value", path)
            events.extend(_Value(read, value, f"{path}.value", connection_id).events())
    return events


def _template_status(
    read: _Reader, entry: Mapping[str, Any], value: Mapping[str, Any], path: str, connection_id: str
) -> events_pb2.InboundMessage:
    """Meta's verdict on a template (`{event, message_template_id, message_template_name,
    message_template_language, reason}`): the router mirrors it into Kommo's chat templates."""
    template_id = value.get("message_template_id")
    if isinstance(template_id, bool) or not isinstance(template_id, int | str) or not str(template_id):
        raise read.fail(f"{path}.message_template_id", "a template id", template_id)
    status = read.nonempty_str(value, "event", path)
    change = events_pb2.TemplateStatusChange(
        template_id=str(template_id),
        name=read.nonempty_str(value, "message_template_name", path),
        language=read.nonempty_str(value, "message_template_language", path),
        status=status,
        reason=read.str_(value, "reason", path),
        account_id=str(entry.get("id") or ""),
    )
    moment = entry.get("time")
    when = moment if isinstance(moment, int) else ""
    return events_pb2.InboundMessage(
        # A template may be approved, paused and approved again: each verdict is its own event.
        event_id=f"whatsapp:{connection_id}:template:{template_id}:{status}:{when}",
        platform=content_pb2.PLATFORM_WHATSAPP,
        connection_id=connection_id,
        template_status=change,
        raw=_raw(value),
    )


def _raw(item: Mapping[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


class _Value:
    """One `changes[].value`: its messages and statuses, with `contacts[]` to name the clients."""

    def __init__(self, read: _Reader, value: Mapping[str, Any], path: str, connection_id: str) -> None:
        self.read = read
        self.value = value
        self.path = path
        self.connection_id = connection_id
        self.contacts = [c for c in read.list_(value, "contacts", path) if isinstance(c, dict)]

    def events(self) -> list[events_pb2.InboundMessage]:
        found: list[events_pb2.InboundMessage] = []
        for index, message in enumerate(self.read.list_(self.value, "messages", self.path)):
            path = f"{self.path}.messages[{index}]"
            if not isinstance(message, dict):
                raise self.read.fail(path, "an object", message)
            event = self.message(message, path)
            if event is not None:
                found.append(event)
        for index, status in enumerate(self.read.list_(self.value, "statuses", self.path)):
            path = f"{self.path}.statuses[{index}]"
            if not isinstance(status, dict):
                raise self.read.fail(path, "an object", status)
            event = self.status(status, path)
            if event is not None:
                found.append(event)
        return found

    # -- who ------------------------------------------------------------------------------------------

    def contact(self, wa_id: str, user_id: str) -> dict[str, Any]:
        for contact in self.contacts:
            if (wa_id and contact.get("wa_id") == wa_id) or (user_id and contact.get("user_id") == user_id):
                return contact
        return self.contacts[0] if len(self.contacts) == 1 else {}

    def client(self, wa_id: str, user_id: str, path: str) -> tuple[str, content_pb2.Profile]:
        """The client's stable id (phone number first, BSUID otherwise) and profile."""
        contact = self.contact(wa_id, user_id)
        wa_id = wa_id or self.read.str_(contact, "wa_id", f"{self.path}.contacts[]")
        user_id = user_id or self.read.str_(contact, "user_id", f"{self.path}.contacts[]")
        client_id = wa_id or user_id
        if not client_id:
            raise BadRequestError(f"whatsapp notification: {path} names no client (no wa_id and no user_id)")
        profile = contact.get("profile")
        profile = profile if isinstance(profile, dict) else {}
        return client_id, content_pb2.Profile(
            name=self.read.str_(profile, "name", f"{self.path}.contacts[].profile"),
            username=self.read.str_(profile, "username", f"{self.path}.contacts[].profile"),
            phone=f"+{wa_id}" if wa_id.isdigit() else "",
            platform_user_id=user_id,
        )

    # -- messages -------------------------------------------------------------------------------------

    def message(self, message: Mapping[str, Any], path: str) -> events_pb2.InboundMessage | None:
        read = self.read
        wamid = read.nonempty_str(message, "id", path)
        kind = read.nonempty_str(message, "type", path)
        new_address = self.number_change(message, path) if kind == "system" else None
        if kind in _SILENT_TYPES and new_address is None:
            return None
        client_id, profile = self.client(
            read.str_(message, "from", path), read.str_(message, "from_user_id", path), path
        )
        event = events_pb2.InboundMessage(
            event_id=f"whatsapp:{self.connection_id}:{wamid}",
            platform=content_pb2.PLATFORM_WHATSAPP,
            connection_id=self.connection_id,
            chat_id=client_id,
            platform_message_id=wamid,
            sender_id=client_id,
            sender=profile,
            sent_at_ms=read.timestamp_ms(message, path),
            raw=_raw(message),
        )
        if new_address is not None:
            event.address_changed.CopyFrom(new_address)
            return event
        if kind == "reaction":
            reaction = read.obj(message, "reaction", path)
            target = read.nonempty_str(reaction, "message_id", f"{path}.reaction")
            emoji = read.str_(reaction, "emoji", f"{path}.reaction")
            # A client has one reaction per message; an empty one takes it back without saying which it
            # was, so "removed" holds "" then: whatever the client's reaction on that message is.
            change = events_pb2.ReactionChange(target_platform_message_id=target)
            (change.added if emoji else change.removed).append(emoji)
            event.reaction.CopyFrom(change)
            return event
        if kind == "edit":
            edit = read.obj(message, "edit", path)
            event.platform_message_id = read.nonempty_str(edit, "original_message_id", f"{path}.edit")
            inner = read.obj(edit, "message", f"{path}.edit")
            inner_kind = read.nonempty_str(inner, "type", f"{path}.edit.message")
            event.edited.CopyFrom(self.content(inner, inner_kind, f"{path}.edit.message"))
            return event
        if kind == "revoke":
            revoke = read.obj(message, "revoke", path)
            event.platform_message_id = read.nonempty_str(revoke, "original_message_id", f"{path}.revoke")
            event.edited.CopyFrom(content_pb2.Content(text=content_pb2.Text(body=DELETED_NOTE)))
            return event
        event.content.CopyFrom(self.content(message, kind, path))
        context = message.get("context")
        if isinstance(context, dict) and not any(context.get(flag) for flag in _FORWARD_FLAGS):
            event.reply_to_platform_message_id = read.str_(context, "id", f"{path}.context")
        return event

    def number_change(self, message: Mapping[str, Any], path: str) -> events_pb2.ClientAddressChange | None:
        """`system{type: "user_changed_number", new_wa_id}` (the old number in `from`; webhooks v12 and later
        name the new number `wa_id`): the client's new address; None for other system notes."""
        system = message.get("system")
        if not isinstance(system, dict) or self.read.str_(system, "type", f"{path}.system") != NUMBER_CHANGED:
            return None
        field = "new_wa_id" if system.get("new_wa_id") else "wa_id"
        new_wa_id = self.read.nonempty_str(system, field, f"{path}.system")
        if not new_wa_id.isdigit():
            raise self.read.fail(f"{path}.system.{field}", "a phone number in digits", new_wa_id)
        return events_pb2.ClientAddressChange(new_chat_id=new_wa_id, new_phone=f"+{new_wa_id}")

    def content(self, message: Mapping[str, Any], kind: str, path: str) -> content_pb2.Content:
        read = self.read
        if kind == "text":
            body = read.str_(read.obj(message, "text", path), "body", f"{path}.text")
            return content_pb2.Content(text=content_pb2.Text(body=body))
        if kind in _MEDIA_KINDS:
            return self.media(read.obj(message, kind, path), kind, f"{path}.{kind}")
        if kind == "sticker":
            sticker = read.obj(message, "sticker", path)
            return content_pb2.Content(
                sticker=content_pb2.Sticker(
                    file_ref=read.nonempty_str(sticker, "id", f"{path}.sticker"),
                    mime_type=_mime_type(read.str_(sticker, "mime_type", f"{path}.sticker")) or "image/webp",
                    size=read.int_(sticker, "file_size", f"{path}.sticker", required=False),
                )
            )
        if kind == "location":
            location = read.obj(message, "location", path)
            name = read.str_(location, "name", f"{path}.location")
            address = read.str_(location, "address", f"{path}.location")
            return content_pb2.Content(
                location=content_pb2.Location(
                    lat=read.float_(location, "latitude", f"{path}.location"),
                    lon=read.float_(location, "longitude", f"{path}.location"),
                    name=", ".join(part for part in (name, address) if part),
                )
            )
        if kind == "contacts":
            return self.contacts_content(read.list_(message, "contacts", path), f"{path}.contacts")
        if kind == "interactive":
            return self.interactive(message, path)
        if kind == "button":  # a template's quick-reply button
            button = read.obj(message, "button", path)
            return content_pb2.Content(
                text=content_pb2.Text(
                    body=read.str_(button, "text", f"{path}.button"),
                    callback_data=read.str_(button, "payload", f"{path}.button"),
                )
            )
        if kind == "order":
            return _text(_order_text(read, read.obj(message, "order", path), f"{path}.order"))
        # Never drop a client's message silently: the manager sees that something arrived.
        unsupported = message.get("unsupported")
        what = unsupported.get("type") if isinstance(unsupported, dict) else None
        if isinstance(what, str) and what:
            return _text(f"[unsupported WhatsApp message: {what}]")
        return _text(UNSUPPORTED_NOTE if kind == "unsupported" else f"[unsupported WhatsApp message: {kind}]")

    def media(self, media: Mapping[str, Any], kind: str, path: str) -> content_pb2.Content:
        read = self.read
        voice = media.get("voice") is True
        return content_pb2.Content(
            media=content_pb2.Media(
                kind=content_pb2.MEDIA_KIND_VOICE if kind == "audio" and voice else _MEDIA_KINDS[kind],
                file_ref=read.nonempty_str(media, "id", path),
                file_name=read.str_(media, "filename", path),
                # Not in the notification (Graph says it on download); newer webhooks may add it.
                size=read.int_(media, "file_size", path, required=False),
                mime_type=_mime_type(read.str_(media, "mime_type", path)),
                caption=read.str_(media, "caption", path),
            )
        )

    def contacts_content(self, cards: list[Any], path: str) -> content_pb2.Content:
        """One shared contact becomes a contact card in Kommo (which holds one name and one phone); several
        become a text listing them all."""
        read = self.read
        people: list[tuple[str, list[str]]] = []
        for index, card in enumerate(cards):
            if not isinstance(card, dict):
                raise read.fail(f"{path}[{index}]", "an object", card)
            name_obj = card.get("name")
            name = ""
            if isinstance(name_obj, dict):
                name = read.str_(name_obj, "formatted_name", f"{path}[{index}].name") or " ".join(
                    part for part in (name_obj.get("first_name"), name_obj.get("last_name")) if isinstance(part, str)
                )
            numbers = [
                phone.get("phone") or phone.get("wa_id")
                for phone in read.list_(card, "phones", f"{path}[{index}]")
                if isinstance(phone, dict)
            ]
            people.append((name, [n for n in numbers if isinstance(n, str) and n]))
        if len(people) == 1 and people[0][1]:
            only, phones = people[0]
            return content_pb2.Content(contact=content_pb2.Contact(name=only or phones[0], phone=phones[0]))
        lines = [f"{who or '(no name)'}: {', '.join(phones) or '(no phone)'}" for who, phones in people]
        return _text("\n".join(["[contacts]", *lines]))

    def interactive(self, message: Mapping[str, Any], path: str) -> content_pb2.Content:
        """A tap on a reply button or a list row: its title as the text, its id as `callback_data`."""
        read = self.read
        interactive = message.get("interactive")
        kind = interactive.get("type") if isinstance(interactive, dict) else None
        if isinstance(interactive, dict) and kind in ("button_reply", "list_reply"):
            reply = read.obj(interactive, kind, f"{path}.interactive")
            return content_pb2.Content(
                text=content_pb2.Text(
                    body=read.str_(reply, "title", f"{path}.interactive.{kind}"),
                    callback_data=read.nonempty_str(reply, "id", f"{path}.interactive.{kind}"),
                )
            )
        if isinstance(interactive, dict) and kind == "nfm_reply":  # a WhatsApp Flow's answers
            reply = read.obj(interactive, "nfm_reply", f"{path}.interactive")
            answers = read.str_(reply, "response_json", f"{path}.interactive.nfm_reply")
            return _text(f"[form answers]\n{answers}" if answers else "[form answers]")
        return _text(f"[unsupported WhatsApp message: interactive {kind if isinstance(kind, str) else ''}]".rstrip())

    # -- statuses -------------------------------------------------------------------------------------

    def status(self, status: Mapping[str, Any], path: str) -> events_pb2.InboundMessage | None:
        """What became of a message the business sent: sent, delivered, read (played), or failed."""
        read = self.read
        if read.str_(status, "recipient_type", path) == "group":
            return None  # the bridge carries one-to-one chats only
        wamid = read.nonempty_str(status, "id", path)
        name = read.nonempty_str(status, "status", path)
        state = _STATES.get(name)
        if state is None:
            return None  # e.g. "deleted", "warning": nothing Kommo can show
        timestamp_ms = read.timestamp_ms(status, path)
        client_id, profile = self.client(
            read.str_(status, "recipient_id", path), read.str_(status, "recipient_user_id", path), path
        )
        receipt = events_pb2.PlatformReceipt(platform_message_id=wamid, state=state)
        if state == events_pb2.DELIVERY_STATE_FAILED:
            errors = read.list_(status, "errors", path)
            first = errors[0] if errors and isinstance(errors[0], dict) else {}
            error = GraphError.from_json(first)
            receipt.reason, args = reason_of(error)
            receipt.reason_args.update(args)
            receipt.platform_error_code = error.code
            receipt.error_text = f"WhatsApp error {error.code}: {error.detail}" if first else "WhatsApp: not delivered"
        return events_pb2.InboundMessage(
            event_id=f"whatsapp:{self.connection_id}:{wamid}:{name}:{timestamp_ms // 1000}",
            platform=content_pb2.PLATFORM_WHATSAPP,
            connection_id=self.connection_id,
            chat_id=client_id,
            platform_message_id=wamid,
            sender_id=client_id,
            sender=profile,
            sent_at_ms=timestamp_ms,
            receipt=receipt,
            raw=_raw(status),
        )


def _text(body: str) -> content_pb2.Content:
    return content_pb2.Content(text=content_pb2.Text(body=body))


def _mime_type(value: str) -> str:
    """`audio/ogg; codecs=opus` -> `audio/ogg`: the type, without parameters."""
    return value.split(";")[0].strip().lower()


def _order_text(read: _Reader, order: Mapping[str, Any], path: str) -> str:
    """A cart sent from the business's catalogue, as the manager reads it."""
    lines = ["[order]"]
    for index, item in enumerate(read.list_(order, "product_items", path)):
        if not isinstance(item, dict):
            raise read.fail(f"{path}.product_items[{index}]", "an object", item)
        product = item.get("product_retailer_id")
        quantity, price, currency = item.get("quantity"), item.get("item_price"), item.get("currency")
        lines.append(f"{quantity} × {product} ({price} {currency})")
    note = read.str_(order, "text", path)
    return "\n".join([*lines, note] if note else lines)
