"""A manager being live in a Kommo chat, as hooks to the channel (§9): reacting to a message, typing,
and changing a message already sent.

The reference documents no hook for a manager's edit (§13); the emulator plays the reading the bridge
handles: Kommo sends the message hook again, with the same message id and the changed content.
"""

from __future__ import annotations

from typing import Any

from libs.errors import BadRequestError, NotFoundError
from libs.kommo.emulator.records import HookResult
from libs.kommo.emulator.state import AmojoState

TYPING_HOOK_TTL_S = 5
"""`expired_at` of a typing hook is the hook's time plus five seconds (§9)."""


def _conversation(state: AmojoState, scope_id: str, conversation_id: str) -> dict[str, Any]:
    chat = state.chat_for(scope_id, conversation_id)
    if chat is None:
        raise NotFoundError(f"no chat for conversation {conversation_id!r} in scope {scope_id!r}")
    return {"id": chat.kommo_chat_id, "client_id": chat.conversation_id}


def _account_id(state: AmojoState, scope_id: str) -> str:
    connection = state.connection(scope_id)
    if connection is None:
        raise NotFoundError(f"scope {scope_id!r} is not connected")
    return connection.account_id


async def manager_reacts(
    state: AmojoState, kommo_msgid: str, emoji: str, *, removed: bool = False, manager_id: str = ""
) -> HookResult:
    """A manager reacts to (or takes back a reaction from) a message of a chat. §13.2: the hook names
    the message both ways, `message{…}` (the table) and the legacy `msgid` (one RU example)."""
    target = state.message(kommo_msgid)
    if target is None:
        raise NotFoundError(f"no message {kommo_msgid!r}")
    if not removed and not emoji:
        raise BadRequestError("a reaction needs an emoji")
    now_s = int(state.now().timestamp())
    message: dict[str, Any] = {"id": target.kommo_msgid}
    if target.msgid:
        message["client_id"] = target.msgid
    message.update(
        {
            "sender": target.sender.to_json(),
            "receiver": target.receiver.to_json() if target.receiver else {},
            "timestamp": target.timestamp_ms // 1000,
            "msec_timestamp": target.timestamp_ms,
        }
    )
    reaction: dict[str, Any] = {
        "message": message,
        "msgid": target.kommo_msgid,
        "user": {"id": manager_id or state.manager.id},
        "conversation": _conversation(state, target.scope_id, target.conversation_id),
        "type": "unreact" if removed else "react",
    }
    if emoji:
        reaction["emoji"] = emoji
    hook = {"account_id": _account_id(state, target.scope_id), "time": now_s, "action": {"reaction": reaction}}
    return await state.deliver_hook(target.scope_id, hook, target.kommo_msgid)


async def manager_types(
    state: AmojoState, scope_id: str, conversation_id: str, manager_id: str = "", *, late_by_s: int = 0
) -> HookResult:
    """A manager types in a chat: the typing hook, valid for five seconds. `late_by_s` plays a hook that
    reaches the channel that long after it was made (past its `expired_at` beyond five seconds)."""
    made_s = int(state.now().timestamp()) - late_by_s
    typing = {
        "user": {"id": manager_id or state.manager.id},
        "conversation": _conversation(state, scope_id, conversation_id),
        "expired_at": made_s + TYPING_HOOK_TTL_S,
    }
    hook = {"account_id": _account_id(state, scope_id), "time": made_s, "action": {"typing": typing}}
    return await state.deliver_hook(scope_id, hook)


async def manager_edits(state: AmojoState, kommo_msgid: str, text: str) -> HookResult:
    """A manager changes a message already sent: the message hook again, same id, new text."""
    scope_id, hook = state.edit_manager_message(kommo_msgid, text)
    return await state.deliver_hook(scope_id, hook, kommo_msgid)
