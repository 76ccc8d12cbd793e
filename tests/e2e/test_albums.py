"""A manager's album (several attachments sent at once: one Kommo hook each, sharing media_group_id)
reaches the Telegram client as one album, end to end through all five services and the emulators: one
sendMediaGroup with the files in the manager's order and Kommo's bytes, a status per Kommo message, nothing
of the conversation overtaking it, items Telegram cannot group split into consecutive sends, and the
client's replies to an album item quoting that item in Kommo."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

# Telegram user ids of this module's clients (other modules use other ranges).
PICTURES, TEXT_AFTER, MIXED, REPLY, REFUSED = 8_750_001, 8_750_002, 8_750_003, 8_750_004, 8_750_005
TIMEOUT = 60
MB = 2**20
DELIVERED, FAILED = 1, -1


async def open_chat(sandbox: Sandbox, user_id: int) -> str:
    """The client writes first (Telegram bots cannot), so Kommo has the chat a manager answers in."""
    await sandbox.client_writes(user_id, "Hi! Can you show me some pictures?")

    async def chat_exists() -> bool:
        return any(c["client"].get("client_id", "").endswith(f":{user_id}") for c in await sandbox.kommo_chats())

    await wait_for(chat_exists, timeout=TIMEOUT, what=f"the Kommo chat of client {user_id}")
    return await sandbox.conversation_of(user_id)


async def attachments(sandbox: Sandbox, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    return [await sandbox.kommo_attachment(name, data) for name, data in files]


def hook_message(kind: str, attachment: dict[str, Any], caption: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "text": caption,
        "media": attachment["url"],
        "file_name": attachment["file_name"],
        "file_size": attachment["file_size"],
    }


async def statuses(sandbox: Sandbox, hooks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The delivery status Kommo got for each of the manager's messages, once all have one."""

    async def reported() -> bool:
        known = await sandbox.kommo_statuses()
        return all(known.get(hook["kommo_msgid"]) for hook in hooks)

    await wait_for(reported, timeout=TIMEOUT, what="a delivery status for every message of the album")
    known = await sandbox.kommo_statuses()
    return [known[hook["kommo_msgid"]][-1] for hook in hooks]


async def sent_to(sandbox: Sandbox, user_id: int, count: int) -> list[dict[str, Any]]:
    """What the bot sent the client (the client's own messages left out), once there are `count`."""

    async def mine() -> list[dict[str, Any]]:
        return [s for s in await sandbox.telegram_sent() if s["chat_id"] == user_id]

    async def enough() -> bool:
        return len(await mine()) >= count

    await wait_for(enough, timeout=TIMEOUT, what=f"{count} messages to client {user_id}")
    return sorted(await mine(), key=lambda s: s["message"]["message_id"])


async def album_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    response = await sandbox.http.get(
        f"{sandbox.stack.telegram_url}/_emulator/requests", params={"path_contains": "/sendMediaGroup"}
    )
    calls: list[dict[str, Any]] = response.json()["requests"]
    return calls


async def test_three_pictures_arrive_as_one_album_each_with_its_status(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    conversation_id = await open_chat(sandbox, PICTURES)
    files = [
        ("sofa.jpg", b"\xff\xd8sofa" + bytes(range(256)) * 400),
        ("armchair.jpg", b"\xff\xd8chair" + bytes(6 * MB)),  # over what Telegram fetches: uploaded
        ("lamp.jpg", b"\xff\xd8lamp" + bytes(range(200)) * 300),
    ]
    stored = await attachments(sandbox, files)
    calls_before = len(await album_calls(sandbox))

    hooks = await sandbox.manager_sends_album(
        conversation_id,
        [
            hook_message("picture", stored[0], "The sofa"),
            hook_message("picture", stored[1]),
            hook_message("picture", stored[2], "and a lamp"),
        ],
    )

    assert [hook["status_code"] for hook in hooks] == [200, 200, 200]
    assert [s["status"] for s in await statuses(sandbox, hooks)] == [DELIVERED] * 3
    uploads = await sandbox.telegram_uploads(PICTURES)
    assert [(u["method"], u["shown_as"], u["file_name"], u["caption"]) for u in uploads] == [
        ("sendMediaGroup", "photo", "sofa.jpg", "The sofa"),
        ("sendMediaGroup", "photo", "armchair.jpg", ""),
        ("sendMediaGroup", "photo", "lamp.jpg", "and a lamp"),
    ]
    assert [u["sha256"] for u in uploads] == [a["sha256"] for a in stored], "Telegram got other bytes"
    assert [u["via"] for u in uploads] == ["url", "upload", "url"]
    assert len({u["media_group_id"] for u in uploads}) == 1 and uploads[0]["media_group_id"]
    assert len(await album_calls(sandbox)) == calls_before + 1  # one call for the whole album
    messages = [s["message"] for s in await sent_to(sandbox, PICTURES, 3)]
    assert [m["message_id"] for m in messages] == [u["message_id"] for u in uploads]


async def test_a_text_sent_right_after_the_album_arrives_after_it(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    conversation_id = await open_chat(sandbox, TEXT_AFTER)
    stored = await attachments(sandbox, [("front.jpg", b"\xff\xd8front" * 500), ("back.jpg", b"\xff\xd8back" * 500)])

    album = await sandbox.manager_sends_album(conversation_id, [hook_message("picture", a) for a in stored])
    text = await sandbox.manager_writes(conversation_id, "Both sides, as you asked.")
    reaction = await sandbox.manager_reacts(album[1]["kommo_msgid"], "👍")

    assert [hook["status_code"] for hook in [*album, text, reaction]] == [200] * 4
    sent = await sent_to(sandbox, TEXT_AFTER, 3)
    assert [s["method"] for s in sent] == ["sendMediaGroup", "sendMediaGroup", "sendMessage"]
    assert sent[2]["message"]["text"] == "Both sides, as you asked."
    assert [s["status"] for s in await statuses(sandbox, [*album, text])] == [DELIVERED] * 3

    async def reacted() -> bool:
        return bool(await sandbox.telegram_reactions(TEXT_AFTER))

    # The reaction, held behind the album too, lands on the album's second message.
    await wait_for(reacted, timeout=TIMEOUT, what="the manager's reaction at Telegram")
    [reaction_call] = await sandbox.telegram_reactions(TEXT_AFTER)
    assert reaction_call["message_id"] == sent[1]["message"]["message_id"]


async def test_items_telegram_cannot_group_become_consecutive_sends_in_order(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    conversation_id = await open_chat(sandbox, MIXED)
    stored = await attachments(
        sandbox,
        [
            ("kitchen.jpg", b"\xff\xd8kitchen" * 400),
            ("plan.pdf", b"%PDF-1.7 floor plan" * 300),
            ("hall.jpg", b"\xff\xd8hall" * 400),
            ("garden.mp4", b"\x00\x00\x00\x18ftypmp42" * 300),
            ("terms.txt", b"Terms and conditions\n" * 200),
            ("prices.txt", b"Prices\n" * 200),
        ],
    )
    kinds = ["picture", "file", "picture", "video", "file", "file"]

    hooks = await sandbox.manager_sends_album(
        conversation_id, [hook_message(kind, a) for kind, a in zip(kinds, stored, strict=True)]
    )

    assert [s["status"] for s in await statuses(sandbox, hooks)] == [DELIVERED] * 6
    sent = await sent_to(sandbox, MIXED, 6)
    uploads = {u["message_id"]: u for u in await sandbox.telegram_uploads(MIXED)}
    shown = [(s["method"], uploads[s["message"]["message_id"]]["file_name"]) for s in sent]
    assert shown == [
        ("sendPhoto", "kitchen.jpg"),  # a photo alone: the document after it cannot join it
        ("sendDocument", "plan.pdf"),
        ("sendMediaGroup", "hall.jpg"),  # a photo and a video: one album
        ("sendMediaGroup", "garden.mp4"),
        ("sendMediaGroup", "terms.txt"),  # two documents: another album
        ("sendMediaGroup", "prices.txt"),
    ]
    groups = [s["message"].get("media_group_id") for s in sent]
    assert groups[0] is None and groups[1] is None
    assert groups[2] == groups[3] and groups[4] == groups[5] and groups[2] != groups[4]
    assert [uploads[s["message"]["message_id"]]["sha256"] for s in sent] == [a["sha256"] for a in stored]


async def test_a_client_reply_to_an_album_item_quotes_that_item_in_kommo(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    conversation_id = await open_chat(sandbox, REPLY)
    stored = await attachments(
        sandbox, [("red.jpg", b"\xff\xd8red" * 300), ("blue.jpg", b"\xff\xd8blue" * 300), ("green.jpg", b"\xff\xd8g")]
    )
    hooks = await sandbox.manager_sends_album(conversation_id, [hook_message("picture", a) for a in stored])
    assert [s["status"] for s in await statuses(sandbox, hooks)] == [DELIVERED] * 3
    second = (await sent_to(sandbox, REPLY, 3))[1]["message"]

    result = await sandbox.client_sends(
        sandbox.user(REPLY), {"text": "I'll take the blue one", "reply_to_message_id": second["message_id"]}
    )
    assert result["status"] == 200, result

    async def quoted() -> dict[str, Any] | None:
        incoming = await sandbox.kommo_messages()
        found = [m for m in incoming if m["message"].get("text") == "I'll take the blue one"]
        return found[0] if found else None

    async def arrived() -> bool:
        return await quoted() is not None

    await wait_for(arrived, timeout=TIMEOUT, what="the client's reply in Kommo")
    reply = await quoted()
    assert reply is not None
    assert reply["payload"]["reply_to"] == {"message": {"id": hooks[1]["kommo_msgid"]}}


async def test_an_album_telegram_refuses_fails_every_item_with_the_same_reason(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    conversation_id = await open_chat(sandbox, REFUSED)
    stored = await attachments(sandbox, [("a.jpg", b"\xff\xd8a" * 300), ("b.jpg", b"\xff\xd8b" * 300)])
    await sandbox.telegram_refuses_next("sendMediaGroup", 400, "Bad Request: MEDIA_EMPTY")

    hooks = await sandbox.manager_sends_album(conversation_id, [hook_message("picture", a) for a in stored])

    first, second = await statuses(sandbox, hooks)
    assert first["status"] == second["status"] == FAILED
    assert first["error_code"] == second["error_code"] == 905
    assert first["error"] == second["error"] and "MEDIA_EMPTY" in first["error"]
    assert await sandbox.telegram_uploads(REFUSED) == []
