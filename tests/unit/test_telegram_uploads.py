"""Files to Telegram: the streamed multipart body is byte for byte what a standard encoder sends, and the
Telegram emulator takes uploads as Telegram does (parsed as they stream in, Telegram's limits and errors,
realistic Message objects, every file recorded)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs.media.multipart import MultipartBody
from libs.messengers.telegram.emulator import TelegramEmulator
from libs.messengers.telegram.emulator_state import Bot
from libs.messengers.telegram.media import FileUpload

BASE = "http://telegram.test"
CLIENT: dict[str, Any] = {"id": 710001, "first_name": "Dana"}
MB = 2**20
BOUNDARY = "b0undary-of-the-test"


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def zeros(total: int, chunk: int = MB) -> AsyncIterator[bytes]:
    block = bytes(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


def sha256_of_zeros(total: int) -> str:
    digest = hashlib.sha256()
    block = bytes(MB)
    for start in range(0, total, MB):
        digest.update(block[: min(MB, total - start)])
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# The multipart body


async def test_multipart_body_is_what_a_standard_encoder_sends() -> None:
    fields = {"chat_id": "42", "caption": 'a "quoted" caption\nwith a line', "reply_parameters": '{"message_id":7}'}
    data = b"\x00\x01binary\r\n--not-a-boundary\r\n" * 1000
    standard = httpx.Request(
        "POST",
        BASE,
        data=fields,
        files={"document": ("report 2024 «final».pdf", data, "application/pdf")},
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    body = MultipartBody(list(fields.items()), "document", "report 2024 «final».pdf", "application/pdf", BOUNDARY)

    pieces = [piece async for piece in body.stream(chunks_of(data, 4096))]

    assert b"".join(pieces) == standard.read()
    assert body.content_length(len(data)) == len(standard.read())
    assert body.content_type == f"multipart/form-data; boundary={BOUNDARY}"
    # Streamed: the file's chunks pass through one by one between the preamble and the epilogue.
    assert pieces[0] == body.preamble and pieces[-1] == body.epilogue
    assert pieces[1:-1] == [data[i : i + 4096] for i in range(0, len(data), 4096)]


async def test_file_upload_encodes_bot_api_parameters_as_form_fields() -> None:
    upload = FileUpload("photo", "cat.jpg", "image/jpeg", 3, chunks_of(b"abc", 2))
    payload = {"chat_id": "42", "reply_parameters": {"message_id": 7}, "disable_notification": True, "none": None}

    headers, stream = upload.encode(payload, boundary=BOUNDARY)
    body = b"".join([piece async for piece in stream])

    standard = httpx.Request(
        "POST",
        BASE,
        data={"chat_id": "42", "reply_parameters": '{"message_id":7}', "disable_notification": "true"},
        files={"photo": ("cat.jpg", b"abc", "image/jpeg")},
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert body == standard.read()
    assert headers == {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
    # Without a known size the body goes chunked: no Content-Length.
    unknown = FileUpload("photo", "cat.jpg", "image/jpeg", None, chunks_of(b"abc", 2))
    assert "Content-Length" not in unknown.encode(payload)[0]


# ---------------------------------------------------------------------------------------------------------
# The emulator's send methods


@pytest.fixture
async def bot(emulator: TelegramEmulator) -> Bot:
    bot = emulator.state.create_bot("files_test_bot", "Files")
    await emulator.state.client_message(bot.id, CLIENT, text="hello")  # the chat exists once the client wrote
    return bot


async def upload(
    http: httpx.AsyncClient, bot: Bot, method: str, field: str, name: str, data: bytes, mime: str, **params: Any
) -> httpx.Response:
    fields = {"chat_id": str(CLIENT["id"]), **{k: str(v) for k, v in params.items()}}
    return await http.post(f"/bot{bot.token}/{method}", data=fields, files={field: (name, data, mime)})


async def streamed_upload(
    http: httpx.AsyncClient, bot: Bot, method: str, field: str, size: int, *, announce_length: bool
) -> httpx.Response:
    """Upload `size` zero bytes as a streamed body: with a Content-Length, or chunked without one."""
    file = FileUpload(field, "zeros.bin", "application/octet-stream", size if announce_length else None, zeros(size))
    headers, body = file.encode({"chat_id": str(CLIENT["id"])})
    return await http.post(f"/bot{bot.token}/{method}", content=body, headers=headers)


def assert_error(response: httpx.Response, code: int, description: str) -> None:
    assert response.status_code == code, response.text
    assert response.json() == {"ok": False, "error_code": code, "description": description}


async def uploads(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await http.get("/_emulator/uploads")).json()["uploads"]
    return found


async def test_an_uploaded_document_is_answered_recorded_and_kept_for_its_file_id(
    http: httpx.AsyncClient, bot: Bot
) -> None:
    data = b"%PDF-1.7 a small report\n" * 100

    response = await upload(http, bot, "sendDocument", "document", "report.pdf", data, "application/pdf", caption="Q3")

    assert response.status_code == 200, response.text
    message = response.json()["result"]
    document = message["document"]
    assert document["file_name"] == "report.pdf"
    assert document["mime_type"] == "application/pdf"
    assert document["file_size"] == len(data)
    assert message["caption"] == "Q3" and message["chat"]["id"] == CLIENT["id"]
    [record] = await uploads(http)
    assert record == {
        **record,
        "bot_id": bot.id,
        "chat_id": CLIENT["id"],
        "message_id": message["message_id"],
        "method": "sendDocument",
        "shown_as": "document",
        "via": "upload",
        "caption": "Q3",
        "file_name": "report.pdf",
        "file_size": len(data),
        "mime_type": "application/pdf",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # The bot may send it again by file_id, and getFile serves it.
    again = await http.post(
        f"/bot{bot.token}/sendDocument", json={"chat_id": CLIENT["id"], "document": document["file_id"]}
    )
    assert again.status_code == 200, again.text
    assert again.json()["result"]["document"]["file_name"] == "report.pdf"
    assert (await uploads(http))[-1]["via"] == "file_id"
    file = (await http.post(f"/bot{bot.token}/getFile", json={"file_id": document["file_id"]})).json()["result"]
    assert (await http.get(f"/file/bot{bot.token}/{file['file_path']}")).content == data
    # The request log keeps uploads without their bodies.
    logged = (await http.get("/_emulator/requests", params={"path_contains": "sendDocument"})).json()["requests"]
    assert logged[0]["body"] is None and logged[0]["status"] == 200


async def test_each_method_answers_with_the_file_object_telegram_shows(http: httpx.AsyncClient, bot: Bot) -> None:
    photo = (await upload(http, bot, "sendPhoto", "photo", "cat.jpg", b"\xff\xd8jpeg" * 50, "image/jpeg")).json()
    sizes = photo["result"]["photo"]
    assert [s["width"] for s in sizes] == sorted(s["width"] for s in sizes) and sizes[-1]["file_size"] == 300
    video = await upload(http, bot, "sendVideo", "video", "clip.mp4", b"mp4" * 10, "video/mp4", duration=3)
    assert video.json()["result"]["video"] | {"file_id": "", "file_unique_id": ""} == {
        "file_id": "",
        "file_unique_id": "",
        "file_name": "clip.mp4",
        "mime_type": "video/mp4",
        "file_size": 30,
        "width": 1280,
        "height": 720,
        "duration": 3,
    }
    voice = await upload(http, bot, "sendVoice", "voice", "note.ogg", b"OggS" * 10, "audio/ogg")
    assert voice.json()["result"]["voice"]["mime_type"] == "audio/ogg"
    # A voice note Telegram cannot play as one (WAV) arrives as a file.
    wav = await upload(http, bot, "sendVoice", "voice", "note.wav", b"RIFF" * 10, "audio/wav")
    assert wav.json()["result"]["document"]["file_name"] == "note.wav"
    audio = await upload(http, bot, "sendAudio", "audio", "song.mp3", b"ID3" * 10, "audio/mpeg", title="Song")
    assert audio.json()["result"]["audio"]["title"] == "Song"
    sticker = await upload(http, bot, "sendSticker", "sticker", "hi.webp", b"RIFFWEBP" * 10, "image/webp")
    assert sticker.json()["result"]["sticker"]["is_animated"] is False
    assert "caption" not in sticker.json()["result"]
    assert [r["shown_as"] for r in await uploads(http)] == ["photo", "video", "voice", "document", "audio", "sticker"]


async def test_refusals_use_telegrams_words(http: httpx.AsyncClient, bot: Bot) -> None:
    assert_error(
        await upload(http, bot, "sendSticker", "sticker", "hi.png", b"\x89PNG", "image/png"),
        400,
        "Bad Request: wrong file type of the sticker",
    )
    assert_error(
        await upload(http, bot, "sendPhoto", "photo", "a.jpg", b"jpg", "image/jpeg", caption="x" * 1025),
        400,
        "Bad Request: message caption is too long",
    )
    assert_error(
        await http.post(f"/bot{bot.token}/sendPhoto", json={"chat_id": CLIENT["id"], "photo": "AgACnot-a-file-id"}),
        400,
        "Bad Request: wrong file identifier/HTTP URL specified",
    )
    assert_error(
        await http.post(f"/bot{bot.token}/sendVideo", json={"chat_id": CLIENT["id"]}),
        400,
        "Bad Request: there is no video in the request",
    )
    # Nothing listens on port 9 of the loopback: Telegram could not fetch it either.
    assert_error(
        await http.post(
            f"/bot{bot.token}/sendDocument", json={"chat_id": CLIENT["id"], "document": "http://127.0.0.1:9/x.pdf"}
        ),
        400,
        "Bad Request: failed to get HTTP URL content",
    )
    assert await uploads(http) == []


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "chunked"])
async def test_a_photo_over_10_mb_is_too_large(http: httpx.AsyncClient, bot: Bot, announce_length: bool) -> None:
    response = await streamed_upload(http, bot, "sendPhoto", "photo", 10 * MB + 1, announce_length=announce_length)

    assert_error(response, 413, "Request Entity Too Large")
    assert await uploads(http) == []


async def test_a_file_over_50_mb_is_too_large_unless_the_server_is_local(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    size = 50 * MB + 1
    assert_error(await streamed_upload(http, bot, "sendDocument", "document", size, announce_length=False), 413,
                 "Request Entity Too Large")  # fmt: skip

    await http.put("/_emulator/files/mode", json={"local_api": True})
    response = await streamed_upload(http, bot, "sendDocument", "document", size, announce_length=True)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["document"]["file_size"] == size
    [record] = await uploads(http)
    assert record["sha256"] == sha256_of_zeros(size) and record["file_size"] == size
    # Photos stay at 10 MB even then: the limit is Telegram's, not the Bot API server's.
    assert_error(await streamed_upload(http, bot, "sendPhoto", "photo", 10 * MB + 1, announce_length=True), 413,
                 "Request Entity Too Large")  # fmt: skip


async def test_send_message_finds_links_and_keeps_previews_unless_asked(http: httpx.AsyncClient, bot: Bot) -> None:
    text = "Our catalogue: https://shop.example.com/catalogue?page=1."
    plain = (await http.post(f"/bot{bot.token}/sendMessage", json={"chat_id": CLIENT["id"], "text": text})).json()
    assert plain["result"]["entities"] == [{"type": "url", "offset": 15, "length": 41}]
    assert "link_preview_options" not in plain["result"]
    hidden = await http.post(
        f"/bot{bot.token}/sendMessage",
        json={"chat_id": CLIENT["id"], "text": text, "link_preview_options": json.dumps({"is_disabled": True})},
    )
    assert hidden.json()["result"]["link_preview_options"] == {"is_disabled": True}
