"""Telegram's side of a live chat: quotes, edits and reactions in both directions, and typing.

Inbound, `parse_update` (adapter) hands the parts of an Update that are about these here: a reply's
target and quoted text, and `message_reaction` updates (which Telegram sends only when the webhook asks
for them in `allowed_updates`). Outbound, the calls a manager's edit, reaction or typing becomes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs.errors import BadRequestError, PermanentError
from libs.messengers.telegram.reactions import telegram_reaction

if TYPE_CHECKING:
    from libs.messengers.telegram.adapter import TelegramBotClient, _Reader

log = logging.getLogger(__name__)

QUOTE_MAX_CHARS: Final = 200
"""A quote is a reminder of what was answered, not a copy of it."""
_NOT_MODIFIED: Final = "message is not modified"


# ---------------------------------------------------------------------------------------------------------
# Inbound


def quoted(read: _Reader, message: Mapping[str, Any]) -> tuple[str, str]:
    """(the id of the message this one replies to, the quoted text). Telegram puts the whole replied
    message in `reply_to_message` (same chat only) and the part the client selected in `quote`."""
    target = message.get("reply_to_message")
    reply_id = ""
    text = ""
    if target is not None:
        replied = read.obj(message, "reply_to_message", "message")
        reply_id = str(read.int_(replied, "message_id", "message.reply_to_message"))
        text = read.str_(replied, "text", "message.reply_to_message") or read.str_(
            replied, "caption", "message.reply_to_message"
        )
    if message.get("quote") is not None:
        text = read.str_(read.obj(message, "quote", "message"), "text", "message.quote") or text
    return reply_id, text[:QUOTE_MAX_CHARS]


def _emoji_set(read: _Reader, change: Mapping[str, Any], key: str) -> list[str]:
    """The plain emoji of a reaction list; custom emoji and paid stars have no emoji Kommo could show."""
    reactions = change.get(key)
    if not isinstance(reactions, list):
        raise read.fail(f"message_reaction.{key}", "an array", reactions)
    found: list[str] = []
    for index, reaction in enumerate(reactions):
        if not isinstance(reaction, dict):
            raise read.fail(f"message_reaction.{key}[{index}]", "an object", reaction)
        if reaction.get("type") == "emoji":
            emoji = read.str_(reaction, "emoji", f"message_reaction.{key}[{index}]", required=True)
            if emoji not in found:
                found.append(emoji)
    return found


def reaction_update(
    read: _Reader, update: Mapping[str, Any], body: bytes, connection_id: str
) -> events_pb2.InboundMessage | None:
    """A client changed their reactions to a message: what they added and what they took back. None for
    a group chat, an anonymous reaction, or a change in custom emoji only."""
    # Imported here: the adapter imports this module to parse updates.
    from libs.messengers.telegram.adapter import _profile

    change = read.obj(update, "message_reaction", "update")
    chat = read.obj(change, "chat", "message_reaction")
    if read.str_(chat, "type", "message_reaction.chat", required=True) != "private" or change.get("user") is None:
        return None
    user = read.obj(change, "user", "message_reaction")
    old = _emoji_set(read, change, "old_reaction")
    new = _emoji_set(read, change, "new_reaction")
    added = [emoji for emoji in new if emoji not in old]
    removed = [emoji for emoji in old if emoji not in new]
    if not added and not removed:
        return None
    return events_pb2.InboundMessage(
        event_id=f"telegram:{connection_id}:{read.update_id}",
        platform=content_pb2.PLATFORM_TELEGRAM,
        connection_id=connection_id,
        chat_id=str(read.int_(chat, "id", "message_reaction.chat")),
        sender_id=str(read.int_(user, "id", "message_reaction.user")),
        sender=_profile(read, user, "message_reaction.user"),
        sent_at_ms=read.int_(change, "date", "message_reaction") * 1000,
        reaction=events_pb2.ReactionChange(
            target_platform_message_id=str(read.int_(change, "message_id", "message_reaction")),
            added=added,
            removed=removed,
        ),
        raw=body,
    )


# ---------------------------------------------------------------------------------------------------------
# Outbound


def _message_id(platform_message_id: str) -> int:
    try:
        return int(platform_message_id)
    except ValueError:
        raise BadRequestError(f"telegram: {platform_message_id!r} is not a message id") from None


async def edit(client: TelegramBotClient, chat_id: str, platform_message_id: str, content: content_pb2.Content) -> None:
    """Change a message the bot sent: its text (editMessageText) or its caption (editMessageCaption).
    An edit that changes nothing ("message is not modified") has already happened."""
    kind = content.WhichOneof("body")
    message_id = _message_id(platform_message_id)
    try:
        if kind == "text":
            await client.edit_message_text(chat_id, message_id, content.text.body)
        elif kind == "media":
            await client.edit_message_caption(chat_id, message_id, content.media.caption)
        else:
            raise BadRequestError(f"telegram: a {kind or 'empty'} message cannot be edited")
    except PermanentError as exc:
        if _NOT_MODIFIED not in str(exc):
            raise


async def react(
    client: TelegramBotClient, chat_id: str, platform_message_id: str, emoji: str, *, removed: bool
) -> bool:
    """Set the bot's one reaction on a message, or clear it. False when Telegram has no reaction close
    to `emoji` (nothing is sent: bots may only use Telegram's fixed list)."""
    allowed = None if removed else telegram_reaction(emoji)
    if not removed and allowed is None:
        return False
    await client.set_message_reaction(chat_id, _message_id(platform_message_id), allowed)
    return True
