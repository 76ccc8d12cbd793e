"""Choices (`Text.choices`) as a Telegram inline keyboard, and the client's tap (`callback_query`) coming back
(reference/messenger-apis.md §1, "Buttons").

Out: reply buttons become callback buttons in the manager's rows, link buttons URL buttons; a list becomes one
button per row (its description after a dash), its header and footer lines of the text. Telegram carries 1 to
64 bytes of `callback_data`: a longer value goes as a digest, and the tap is then read back by the button's
text (for Kommo's buttons, whose value is their text, nothing is lost).

In: a tap is `callback_query{id, from, message, data}`; it becomes a Text with the tapped button's text and
its value as `callback_data`, a reply to the message that showed the keyboard. The bot must answer the query
or the client's button keeps spinning: the gateway answers the webhook with `answerCallbackQuery` (the Bot API
runs a method given as a webhook's answer), so no token and no extra call are needed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.messengers.payload_reader import PayloadReader

CALLBACK_DATA_LIMIT: Final = 64
DIGEST_PREFIX: Final = "#"
CALLBACK_EVENT_PREFIX: Final = "callback:"
"""`platform_message_id` of a tap: the callback query's id after this (a tap is no message of its own)."""


def callback_value(value: str) -> str:
    """What Telegram carries for `value`: itself when it fits in 64 bytes, else a digest of it."""
    if 0 < len(value.encode("utf-8")) <= CALLBACK_DATA_LIMIT:
        return value
    return DIGEST_PREFIX + hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def keyboard_text(text: content_pb2.Text) -> str:
    """The message text: a list's header and footer around the body."""
    if not text.choices.HasField("list"):
        return text.body
    listed = text.choices.list
    return "\n\n".join(part for part in (listed.header, text.body, listed.footer) if part.strip())


def inline_keyboard(choices: content_pb2.Choices) -> dict[str, Any]:
    """`reply_markup` of the message offering `choices`."""
    rows: list[list[dict[str, str]]] = []
    if choices.HasField("list"):
        for section in choices.list.sections:
            for row in section.rows:
                label = f"{row.title} – {row.description}" if row.description else row.title
                rows.append([{"text": label, "callback_data": callback_value(row.callback_data)}])
    else:
        for button_row in choices.buttons.rows:
            rows.append(
                [
                    {"text": b.text, "url": b.url}
                    if b.url
                    else {"text": b.text, "callback_data": callback_value(b.callback_data)}
                    for b in button_row.buttons
                ]
            )
    return {"inline_keyboard": [row for row in rows if row]}


def _tapped_button(message: Mapping[str, Any], data: str) -> Mapping[str, Any] | None:
    markup = message.get("reply_markup")
    keyboard = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(keyboard, list):
        return None
    for row in keyboard:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return button
    return None


def callback_update(
    read: PayloadReader, update: Mapping[str, Any], body: bytes, connection_id: str, update_id: int
) -> events_pb2.InboundMessage | None:
    """A tap on a callback button of the bot's message in a private chat → the client's answer."""
    query = read.obj(update, "callback_query", "update")
    query_id = read.str_(query, "id", "callback_query", required=True)
    sender = read.obj(query, "from", "callback_query")
    message = query.get("message")
    if not isinstance(message, dict):
        return None  # a button of an inline-mode message: no chat of ours
    chat = read.obj(message, "chat", "callback_query.message")
    if read.str_(chat, "type", "callback_query.message.chat", required=True) != "private":
        return None
    data = read.str_(query, "data", "callback_query")
    if not data:
        return None  # a game's button: nothing chosen
    button = _tapped_button(message, data)
    label = button.get("text") if button is not None else None
    title = label if isinstance(label, str) and label else data
    # A digest stands for a value too long for Telegram; the button's text is what the client chose.
    value = title if data.startswith(DIGEST_PREFIX) else data
    first = read.str_(sender, "first_name", "callback_query.from")
    last = read.str_(sender, "last_name", "callback_query.from")
    username = read.str_(sender, "username", "callback_query.from")
    sender_id = read.int_(sender, "id", "callback_query.from")
    return events_pb2.InboundMessage(
        event_id=f"telegram:{connection_id}:{update_id}",
        platform=content_pb2.PLATFORM_TELEGRAM,
        connection_id=connection_id,
        chat_id=str(read.int_(chat, "id", "callback_query.message.chat")),
        platform_message_id=CALLBACK_EVENT_PREFIX + query_id,
        sender_id=str(sender_id),
        sender=content_pb2.Profile(
            name=f"{first} {last}".strip(),
            username=username,
            profile_link=f"https://t.me/{username}" if username else "",
            language=read.str_(sender, "language_code", "callback_query.from"),
        ),
        # A tap carries no date of its own: it happens as it arrives.
        sent_at_ms=int(time.time() * 1000),
        raw=body,
        content=content_pb2.Content(text=content_pb2.Text(body=title, callback_data=value)),
        reply_to_platform_message_id=str(read.int_(message, "message_id", "callback_query.message")),
    )


def webhook_answer(events: Sequence[events_pb2.InboundMessage]) -> dict[str, Any] | None:
    """`answerCallbackQuery` for a tap, as the webhook's answer: the client's button stops spinning."""
    for event in events:
        if event.platform_message_id.startswith(CALLBACK_EVENT_PREFIX):
            query_id = event.platform_message_id.removeprefix(CALLBACK_EVENT_PREFIX)
            return {"method": "answerCallbackQuery", "callback_query_id": query_id}
    return None
