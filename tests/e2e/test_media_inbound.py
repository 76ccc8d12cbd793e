"""Every kind of content a client sends reaches Kommo as amojo expects it, and Kommo downloads the
client's files, byte for byte, through the gateway's signed links (all five services as processes,
against the emulators)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from libs.media import MediaLinks
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for

pytestmark = pytest.mark.e2e

FIRST_USER = 7_300_000


async def incoming_of(sandbox: Sandbox, user_id: int) -> dict[str, Any]:
    """The one message Kommo received from this client."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = [
            m for m in await sandbox.kommo_messages() if m["sender"].get("client_id", "").endswith(f":{user_id}")
        ]
        return bool(found)

    await wait_for(arrived, timeout=60, what=f"client {user_id}'s message in Kommo")
    assert len(found) == 1, found
    return found[0]


async def downloaded(sandbox: Sandbox, msgid: str) -> dict[str, Any]:
    """Kommo's finished download of a message's media."""
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        found[:] = await sandbox.kommo_media_downloads(msgid)
        return bool(found) and all(d["done"] for d in found)

    await wait_for(done, timeout=60, what=f"Kommo's download of {msgid}'s media")
    assert len(found) == 1, found
    return found[0]


def split_link(sandbox: Sandbox, url: str) -> tuple[str, str]:
    """(token, name) of a media link on this stack's gateway."""
    prefix = f"{sandbox.stack.public_url}/media/v1/"
    assert url.startswith(prefix), url
    token, name = url.removeprefix(prefix).split("/")
    return token, unquote(name)


async def send_file(
    sandbox: Sandbox, user_id: int, kind: str, mime_type: str, fields: dict[str, Any], caption: str = ""
) -> dict[str, Any]:
    """A client sends a file of `kind`; returns what the emulator stored (file_id, size, sha256)."""
    data = os.urandom(20_000 + user_id % 1000 * 100)
    stored = await sandbox.telegram_file(data, "photo" if kind == "photo" else kind, mime_type)
    telegram = {"file_id": stored["file_id"], "file_unique_id": stored["file_unique_id"], "file_size": len(data)}
    telegram.update(fields)
    message: dict[str, Any] = {kind: telegram}
    if kind == "photo":
        thumb = await sandbox.telegram_file(os.urandom(900), "photo", mime_type)
        small = {"file_id": thumb["file_id"], "file_unique_id": thumb["file_unique_id"], "file_size": 900}
        message["photo"] = [{**small, "width": 90, "height": 60}, {**telegram, "width": 1280, "height": 853}]
    if kind == "animation":
        message["document"] = telegram  # Telegram sets both for an animation
    if caption:
        message["caption"] = caption
    result = await sandbox.client_sends(sandbox.user(user_id), message)
    assert result["status"] == 200, result
    return stored


class FileCase(NamedTuple):
    kind: str
    mime_type: str
    # The Telegram object's fields besides file_id, file_unique_id and file_size.
    fields: dict[str, Any]
    caption: str
    # The amojo message Kommo must receive, without `media` (and `file_size`, the stored file's).
    expected: dict[str, Any]
    # The name and Content-Type the file is downloaded with.
    name: str
    content_type: str


FILES = {
    "picture": FileCase(
        "photo",
        "image/jpeg",
        {},
        "my receipt",
        {"type": "picture", "text": "my receipt", "file_name": "picture.jpg"},
        "picture.jpg",
        "image/jpeg",
    ),
    "video": FileCase(
        "video",
        "video/mp4",
        {"width": 640, "height": 360, "duration": 7, "file_name": "clip.mp4", "mime_type": "video/mp4"},
        "",
        {"type": "video", "file_name": "clip.mp4", "media_duration": 7},
        "clip.mp4",
        "video/mp4",
    ),
    "file": FileCase(
        "document",
        "application/pdf",
        {"file_name": "Счёт №5.pdf", "mime_type": "application/pdf"},
        "see attached",
        {"type": "file", "text": "see attached", "file_name": "Счёт №5.pdf"},
        "Счёт №5.pdf",
        "application/pdf",
    ),
    "voice": FileCase(
        "voice",
        "audio/ogg",
        {"duration": 4, "mime_type": "audio/ogg"},
        "",
        {"type": "voice", "file_name": "voice.ogg", "media_duration": 4},
        "voice.ogg",
        "audio/ogg",
    ),
    "audio": FileCase(
        "audio",
        "audio/mpeg",
        {"duration": 200, "performer": "Nina", "title": "Song", "mime_type": "audio/mpeg"},
        "",
        {"type": "audio", "file_name": "Nina - Song.mp3", "media_duration": 200},
        "Nina - Song.mp3",
        "audio/mpeg",
    ),
    "sticker": FileCase(
        "sticker",
        "image/webp",
        {"type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False, "emoji": "🎉"},
        "",
        {"type": "sticker"},
        "sticker.webp",
        "image/webp",
    ),
    "video note": FileCase(
        "video_note",
        "video/mp4",
        {"length": 240, "duration": 9},
        "",
        {"type": "video", "file_name": "video.mp4", "media_duration": 9},
        "video.mp4",
        "video/mp4",
    ),
    "animation": FileCase(
        "animation",
        "video/mp4",
        {"width": 320, "height": 240, "duration": 3, "file_name": "fun.mp4", "mime_type": "video/mp4"},
        "",
        {"type": "video", "file_name": "fun.mp4", "media_duration": 3},
        "fun.mp4",
        "video/mp4",
    ),
}


@pytest.mark.parametrize("case", list(FILES), ids=list(FILES))
async def test_a_clients_file_reaches_kommo_and_kommo_downloads_the_same_bytes(
    shared_sandbox: Sandbox, case: str
) -> None:
    kind, mime_type, fields, caption, expected, name, content_type = FILES[case]
    user_id = FIRST_USER + list(FILES).index(case)
    stored = await send_file(shared_sandbox, user_id, kind, mime_type, fields, caption)

    incoming = await incoming_of(shared_sandbox, user_id)
    body = dict(incoming["message"])
    url = body.pop("media")
    if case != "sticker":
        expected = {**expected, "file_size": stored["file_size"]}
    assert body == expected
    assert url.endswith("/" + quote(name, safe=""))
    assert split_link(shared_sandbox, url)[1] == name
    assert "/bot" not in url and shared_sandbox.stack.sandbox_bot_token not in url

    download = await downloaded(shared_sandbox, incoming["msgid"])
    assert (download["status"], download["size"], download["sha256"]) == (200, stored["file_size"], stored["sha256"])
    assert (download["content_type"], download["content_length"], download["file_name"]) == (
        content_type,
        stored["file_size"],
        name,
    )


# Telegram content, the amojo message expected.
OTHERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "location": (
        {"location": {"latitude": -23.5505, "longitude": -46.6333}},
        {"type": "location", "location": {"lon": -46.6333, "lat": -23.5505}},
    ),
    "venue": (
        {
            "location": {"latitude": 38.7105, "longitude": -9.1366},
            "venue": {
                "location": {"latitude": 38.7105, "longitude": -9.1366},
                "title": "Café Central",
                "address": "Rua Augusta 1",
            },
        },
        {"type": "location", "text": "Café Central", "location": {"lon": -9.1366, "lat": 38.7105}},
    ),
    "contact": (
        {"contact": {"phone_number": "+5511999990000", "first_name": "Carla", "last_name": "Lima", "user_id": 77}},
        {"type": "contact", "contact": {"name": "Carla Lima", "phone": "+5511999990000"}},
    ),
    "text with a link": (
        {
            "text": "Is this one in stock? https://shop.example/item?id=7",
            "entities": [{"type": "url", "offset": 22, "length": 30}],
        },
        {"type": "text", "text": "Is this one in stock? https://shop.example/item?id=7"},
    ),
}


@pytest.mark.parametrize("case", list(OTHERS), ids=list(OTHERS))
async def test_content_without_a_file_reaches_kommo_exactly(shared_sandbox: Sandbox, case: str) -> None:
    message, expected = OTHERS[case]
    user_id = FIRST_USER + 100 + list(OTHERS).index(case)
    result = await shared_sandbox.client_sends(shared_sandbox.user(user_id), message)
    assert result["status"] == 200, result
    incoming = await incoming_of(shared_sandbox, user_id)
    assert incoming["message"] == expected
    assert await shared_sandbox.kommo_media_downloads(incoming["msgid"]) == []


async def test_a_file_over_the_cloud_download_limit_becomes_a_clear_text(shared_sandbox: Sandbox) -> None:
    user_id = FIRST_USER + 200
    size = 25 * 2**20
    stored = await shared_sandbox.telegram_file(bytes(size), "document", "video/mp4")
    document = {
        "file_id": stored["file_id"],
        "file_unique_id": stored["file_unique_id"],
        "file_name": "wedding.mp4",
        "mime_type": "video/mp4",
        "file_size": size,
    }
    result = await shared_sandbox.client_sends(shared_sandbox.user(user_id), {"document": document})
    assert result["status"] == 200, result
    incoming = await incoming_of(shared_sandbox, user_id)
    assert incoming["message"] == {
        "type": "text",
        "text": '[The client sent a file that is too large for the Telegram bot API to fetch: "wedding.mp4", 25 MB '
        "(the limit is 20 MB). Ask the client to send it another way.]",
    }
    assert await shared_sandbox.kommo_media_downloads(incoming["msgid"]) == []


@pytest.fixture(scope="module")
async def link(shared_sandbox: Sandbox) -> tuple[str, dict[str, Any]]:
    """A link Kommo received for a client's document, and what the emulator stored."""
    user_id = FIRST_USER + 300
    fields = {"file_name": "offer.pdf", "mime_type": "application/pdf"}
    stored = await send_file(shared_sandbox, user_id, "document", "application/pdf", fields)
    incoming = await incoming_of(shared_sandbox, user_id)
    await downloaded(shared_sandbox, incoming["msgid"])
    return str(incoming["message"]["media"]), stored


async def test_a_signed_link_serves_the_file_as_an_attachment(
    shared_sandbox: Sandbox, link: tuple[str, dict[str, Any]]
) -> None:
    url, stored = link
    response = await shared_sandbox.http.get(url)
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == stored["sha256"]
    headers = response.headers
    assert headers["content-type"] == "application/pdf"
    assert headers["content-length"] == str(stored["file_size"])
    assert headers["content-disposition"] == "attachment; filename=\"offer.pdf\"; filename*=UTF-8''offer.pdf"
    assert headers["cache-control"].startswith("private")
    assert headers["x-content-type-options"] == "nosniff"
    head = await shared_sandbox.http.head(url)
    assert (head.status_code, head.headers["content-length"]) == (200, str(stored["file_size"]))


async def test_a_signed_link_is_refused_when_tampered_with_for_another_file_or_expired(
    shared_sandbox: Sandbox, link: tuple[str, dict[str, Any]]
) -> None:
    url, _ = link
    stack = shared_sandbox.stack
    http = shared_sandbox.http
    token, name = split_link(shared_sandbox, url)
    payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    tampered = await http.get(f"{stack.public_url}/media/v1/{payload}.{flipped}/{name}")
    assert (tampered.status_code, tampered.json()) == (403, {"ok": False, "error": "this media link is not valid"})
    other_name = await http.get(f"{stack.public_url}/media/v1/{token}/invoice.pdf")
    assert other_name.status_code == 403
    malformed = await http.get(f"{stack.public_url}/media/v1/not-a-token/{name}")
    assert malformed.status_code == 403

    # The same file, signed with the same key, but its time is up.
    links = MediaLinks(stack.service_token, stack.public_url, 60)
    file = links.verify(token, name)
    expired = await http.get(links.url(file, expires_at=1_600_000_000))
    assert (expired.status_code, expired.json()) == (410, {"ok": False, "error": "this media link has expired"})

    # A genuine link to another file of the same channel still names only that file.
    another = links.url(dataclasses.replace(file, file_ref="BQACAgIAAxkBAAIunknown"))
    assert urlsplit(another).path != urlsplit(url).path
    response = await http.get(another)
    assert response.status_code == 404  # Telegram has no such file: nothing else is served under it


async def test_platform_failures_become_clear_gateway_answers(
    shared_sandbox: Sandbox, link: tuple[str, dict[str, Any]]
) -> None:
    url, _ = link
    faults = f"{shared_sandbox.stack.telegram_url}/_emulator/faults"
    http = shared_sandbox.http

    async def answer_with(fault: dict[str, Any]) -> httpx.Response:
        (await http.post(faults, json=fault)).raise_for_status()
        try:
            return await http.get(url)
        finally:
            await http.delete(faults)

    gone = await answer_with({"path": "^/file/", "status": 404})
    assert (gone.status_code, gone.json()["error"]) == (404, "Telegram no longer has this file")
    failing = await answer_with({"path": "^/file/", "status": 500})
    assert failing.status_code == 502
    slow_down = await answer_with({"path": "getFile$", "status": 429, "retry_after": 7})
    assert (slow_down.status_code, slow_down.headers["retry-after"]) == (503, "7")
    assert (await http.get(url)).status_code == 200
