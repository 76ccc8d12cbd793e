"""A manager's files, stickers, locations, contacts and links reach the Telegram client exactly: the call
Telegram got (method, caption, file name, size, MIME type, and the bytes, by sha256, equal to the Kommo
attachment), whether Telegram fetched Kommo's URL or the bridge streamed an upload, and the status Kommo
shows. Files Telegram cannot take fail with a clear status and send nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

FIRST_USER = 8_650_000
MB = 2**20
DELIVERED = 1
FAILED = -1


async def open_chat(sandbox: Sandbox, user_id: int) -> str:
    """The client writes first (Telegram bots cannot), so Kommo has the chat a manager answers in."""
    await sandbox.client_writes(user_id, "Hello, can you send me the details?")

    async def chat_exists() -> bool:
        return any(c["client"].get("client_id", "").endswith(f":{user_id}") for c in await sandbox.kommo_chats())

    await wait_for(chat_exists, timeout=60, what=f"the Kommo chat of client {user_id}")
    return await sandbox.conversation_of(user_id)


async def manager_sends_file(
    sandbox: Sandbox, user_id: int, kind: str, name: str, data: bytes, *, caption: str = "", mime_type: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manager attaches a file in the client's chat; returns the attachment and the hook."""
    conversation_id = await open_chat(sandbox, user_id)
    attachment = await sandbox.kommo_attachment(name, data, mime_type)
    message = {
        "type": kind,
        "text": caption,
        "media": attachment["url"],
        "file_name": name,
        "file_size": attachment["file_size"],
    }
    hook = await sandbox.manager_sends(conversation_id, message)
    assert hook["status_code"] == 200, hook
    return attachment, hook


async def final_status(sandbox: Sandbox, hook: dict[str, Any]) -> dict[str, Any]:
    """The delivery status Kommo got for the manager's message."""
    msgid = hook["kommo_msgid"]

    async def reported() -> bool:
        return bool((await sandbox.kommo_statuses()).get(msgid))

    await wait_for(reported, timeout=60, what=f"a delivery status for {msgid}")
    status: dict[str, Any] = (await sandbox.kommo_statuses())[msgid][-1]
    return status


async def upload_to(sandbox: Sandbox, user_id: int) -> dict[str, Any]:
    async def sent() -> bool:
        return bool(await sandbox.telegram_uploads(user_id))

    await wait_for(sent, timeout=60, what=f"a file sent to client {user_id}")
    [upload] = await sandbox.telegram_uploads(user_id)
    return upload


def the_call(upload: dict[str, Any], attachment: dict[str, Any]) -> dict[str, Any]:
    """What Telegram got, once the bytes are proven to be Kommo's."""
    assert upload["sha256"] == attachment["sha256"], "Telegram got other bytes than the Kommo attachment"
    keys = ("method", "shown_as", "via", "caption", "file_name", "file_size", "mime_type")
    return {key: upload[key] for key in keys}


async def sent_to(sandbox: Sandbox, user_id: int, method: str) -> dict[str, Any]:
    async def sent() -> bool:
        return any(m["chat_id"] == user_id and m["method"] == method for m in await sandbox.telegram_sent())

    await wait_for(sent, timeout=60, what=f"{method} to client {user_id}")
    return next(m for m in await sandbox.telegram_sent() if m["chat_id"] == user_id and m["method"] == method)


# ---------------------------------------------------------------------------------------------------------
# One test per content type


async def test_picture(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 1
    data = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 800
    attachment, hook = await manager_sends_file(shared_sandbox, user, "picture", "sofa.jpg", data, caption="Our sofa")

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendPhoto",
        "shown_as": "photo",
        "via": "url",  # small enough for Telegram to fetch from Kommo itself
        "caption": "Our sofa",
        "file_name": "sofa.jpg",
        "file_size": len(data),
        "mime_type": "image/jpeg",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_video(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 2
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(3 * MB)
    attachment, hook = await manager_sends_file(shared_sandbox, user, "video", "demo.mp4", data, caption="Demo")

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendVideo",
        "shown_as": "video",
        "via": "url",
        "caption": "Demo",
        "file_name": "demo.mp4",
        "file_size": len(data),
        "mime_type": "video/mp4",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_file(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 3
    data = "Order 1042\nSofa × 1\nTotal: 499 €\n".encode() * 500
    attachment, hook = await manager_sends_file(shared_sandbox, user, "file", "invoice 1042.txt", data)

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendDocument",
        "shown_as": "document",
        "via": "upload",  # Telegram fetches documents by URL only as GIF, PDF or ZIP: the bridge streams it
        "caption": "",
        "file_name": "invoice 1042.txt",
        "file_size": len(data),
        "mime_type": "text/plain",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_voice(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 4
    data = b"OggS\x00\x02" + bytes(range(200)) * 300
    attachment, hook = await manager_sends_file(shared_sandbox, user, "voice", "voice-note.ogg", data)

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendVoice",
        "shown_as": "voice",
        "via": "url",
        "caption": "",
        "file_name": "voice-note.ogg",
        "file_size": len(data),
        "mime_type": "audio/ogg",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_audio(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 5
    data = b"ID3\x04" + bytes(range(256)) * 1000
    attachment, hook = await manager_sends_file(shared_sandbox, user, "audio", "jingle.mp3", data, caption="Jingle")

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendAudio",
        "shown_as": "audio",
        "via": "url",
        "caption": "Jingle",
        "file_name": "jingle.mp3",
        "file_size": len(data),
        "mime_type": "audio/mpeg",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_sticker(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 6
    conversation_id = await open_chat(shared_sandbox, user)
    attachment = await shared_sandbox.kommo_attachment("thumbs-up.webp", b"RIFF\x00\x01\x00\x00WEBPVP8 " * 40)

    hook = await shared_sandbox.manager_sends(
        conversation_id, {"type": "sticker", "media": attachment["url"], "file_size": attachment["file_size"]}
    )

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendSticker",
        "shown_as": "sticker",
        "via": "url",
        "caption": "",
        "file_name": "thumbs-up.webp",
        "file_size": attachment["file_size"],
        "mime_type": "image/webp",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_sticker_without_a_file_fails_clearly(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 7
    conversation_id = await open_chat(shared_sandbox, user)

    hook = await shared_sandbox.manager_sends(conversation_id, {"type": "sticker", "sticker_id": "kommo-sticker-17"})

    status = await final_status(shared_sandbox, hook)
    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert "sticker" in status["error"] and "Telegram" in status["error"]
    assert await shared_sandbox.telegram_uploads(user) == []


async def test_location(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 8
    conversation_id = await open_chat(shared_sandbox, user)

    hook = await shared_sandbox.manager_sends(
        conversation_id, {"type": "location", "location": {"lat": 52.520008, "lon": 13.404954}}
    )

    sent = await sent_to(shared_sandbox, user, "sendLocation")
    assert sent["message"]["location"] == {"latitude": 52.520008, "longitude": 13.404954}
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_contact(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 9
    conversation_id = await open_chat(shared_sandbox, user)

    hook = await shared_sandbox.manager_sends(
        conversation_id, {"type": "contact", "contact": {"name": "Delivery desk", "phone": "+493012345678"}}
    )

    sent = await sent_to(shared_sandbox, user, "sendContact")
    assert sent["message"]["contact"] == {"phone_number": "+493012345678", "first_name": "Delivery desk"}
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_text_with_a_link_keeps_its_preview(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 10
    conversation_id = await open_chat(shared_sandbox, user)
    text = "Here is the catalogue: https://shop.example.com/catalogue?utm=kommo — see page 3"

    hook = await shared_sandbox.manager_writes(conversation_id, text)

    sent = await sent_to(shared_sandbox, user, "sendMessage")
    assert sent["message"]["text"] == text
    assert sent["message"]["entities"] == [{"type": "url", "offset": 23, "length": 44}]
    # Previews stay on: the bridge never sends link_preview_options that would turn them off.
    requests = (
        await shared_sandbox.http.get(
            f"{shared_sandbox.stack.telegram_url}/_emulator/requests", params={"path_contains": "/sendMessage"}
        )
    ).json()["requests"]
    [call] = [r for r in requests if isinstance(r["body"], dict) and r["body"].get("text") == text]
    assert "link_preview_options" not in call["body"] and "disable_web_page_preview" not in call["body"]
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


# ---------------------------------------------------------------------------------------------------------
# Limits and failures


async def test_a_file_over_telegrams_limit_fails_clearly_and_sends_nothing(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 11
    _, hook = await manager_sends_file(shared_sandbox, user, "file", "catalogue-2025.zip", bytes(51 * MB))

    status = await final_status(shared_sandbox, hook)

    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert status["error"] == (
        "Not sent: the file catalogue-2025.zip (51 MB) is larger than Telegram allows (50 MB). Send a smaller "
        "file or a link to it."
    )
    assert await shared_sandbox.telegram_uploads(user) == []
    assert not [
        m for m in await shared_sandbox.telegram_sent() if m["chat_id"] == user and m["method"] != "sendMessage"
    ]


async def test_a_photo_over_the_photo_limit_goes_as_a_document(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 12
    data = b"\xff\xd8\xff\xe0" + bytes(11 * MB)
    attachment, hook = await manager_sends_file(shared_sandbox, user, "picture", "floor plan.jpg", data, caption="Plan")

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendDocument",
        "shown_as": "document",
        "via": "upload",
        "caption": "Plan",
        "file_name": "floor plan.jpg",
        "file_size": len(data),
        "mime_type": "image/jpeg",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED


async def test_a_file_gone_from_kommo_fails_clearly(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 13
    conversation_id = await open_chat(shared_sandbox, user)
    attachment = await shared_sandbox.kommo_attachment("price list.pdf", b"%PDF-1.7\n" * 100)
    removed = await shared_sandbox.http.delete(
        f"{shared_sandbox.stack.kommo_url}/_emulator/attachments/{attachment['id']}"
    )
    removed.raise_for_status()

    hook = await shared_sandbox.manager_sends(
        conversation_id,
        {"type": "file", "media": attachment["url"], "file_name": "price list.pdf", "file_size": 900},
    )

    status = await final_status(shared_sandbox, hook)
    assert (status["status"], status["error_code"]) == (FAILED, 905)
    assert (
        status["error"]
        == "Not sent: the file price list.pdf could not be downloaded from Kommo. Attach it again and send."
    )
    assert await shared_sandbox.telegram_uploads(user) == []


async def test_a_url_telegram_refuses_to_fetch_falls_back_to_an_upload(shared_sandbox: Sandbox) -> None:
    user = FIRST_USER + 14
    conversation_id = await open_chat(shared_sandbox, user)
    data = b"%PDF-1.7\n" + bytes(range(256)) * 100
    attachment = await shared_sandbox.kommo_attachment("terms.pdf", data)
    # Telegram's fetch of Kommo's URL fails once (the bridge's own download then works).
    await shared_sandbox.kommo_attachment_fails(attachment, 404, times=1)

    hook = await shared_sandbox.manager_sends(
        conversation_id,
        {"type": "file", "media": attachment["url"], "file_name": "terms.pdf", "file_size": len(data)},
    )

    assert the_call(await upload_to(shared_sandbox, user), attachment) == {
        "method": "sendDocument",
        "shown_as": "document",
        "via": "upload",
        "caption": "",
        "file_name": "terms.pdf",
        "file_size": len(data),
        "mime_type": "application/pdf",
    }
    assert (await final_status(shared_sandbox, hook))["status"] == DELIVERED
    refused = (
        await shared_sandbox.http.get(
            f"{shared_sandbox.stack.telegram_url}/_emulator/requests", params={"path_contains": "/sendDocument"}
        )
    ).json()["requests"]
    assert any(
        r["status"] == 400 and isinstance(r["body"], dict) and r["body"].get("document") == attachment["url"]
        for r in refused
    ), json.dumps(refused)[:2000]
