"""A manager's file from Kommo to Telegram (`MediaSender`), against both emulators served on real sockets:
Kommo's URL when Telegram can fetch it, a streamed upload otherwise or when Telegram refuses the URL,
an oversize photo as a document, and clear failures for files over the limit or gone from Kommo."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from kommo_bridge.events.v1 import content_pb2
from starlette.types import ASGIApp

from libs import status_texts
from libs.errors import NotFoundError, PermanentError, RetryableError, TooLargeError
from libs.kommo.emulator import create_amojo_emulator
from libs.media.outbound_files import platform_can_fetch
from libs.messengers.telegram.adapter import TelegramBotClient
from libs.messengers.telegram.emulator import TelegramState, create_telegram_emulator
from libs.messengers.telegram.media import LOCAL_UPLOAD_LIMIT
from tests.support import wait_for

MB = 2**20
CLIENT: dict[str, Any] = {"id": 720001, "first_name": "Eva"}


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, timeout=10, what="the emulator to listen")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class World:
    kommo_url: str
    telegram_url: str
    telegram: TelegramState
    http: httpx.AsyncClient
    client: TelegramBotClient

    async def attach(self, name: str, data: bytes, mime: str = "") -> dict[str, Any]:
        params = {"name": name, **({"mime": mime} if mime else {})}
        response = await self.http.post(f"{self.kommo_url}/_emulator/attachments", params=params, content=data)
        response.raise_for_status()
        attachment: dict[str, Any] = response.json()
        return attachment

    async def send(self, content: content_pb2.Content, upload_limit: int | None = None) -> int:
        return await self.client.send_content(str(CLIENT["id"]), content, None, upload_limit)

    def uploads(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.telegram.uploads.find()]

    async def kommo_downloads(self) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.kommo_url}/_emulator/requests", params={"path_contains": "/attachments/"}
        )
        requests: list[dict[str, Any]] = response.json()["requests"]
        return requests

    async def fault(self, path: str, **fault: Any) -> None:
        (await self.http.post(f"{self.kommo_url}/_emulator/faults", json={"path": path, **fault})).raise_for_status()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    amojo_app, amojo = create_amojo_emulator()
    telegram_app, telegram = create_telegram_emulator()
    bot = telegram.create_bot("media_send_bot", "Media")
    await telegram.client_message(bot.id, CLIENT, text="hi")
    async with (
        serving(amojo_app) as kommo_url,
        serving(telegram_app) as telegram_url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        yield World(kommo_url, telegram_url, telegram, http, TelegramBotClient(telegram_url, bot.token, http))
    await amojo.aclose()
    await telegram.aclose()


def media(
    kind: str, attachment: dict[str, Any], *, caption: str = "", announce_size: bool = True
) -> content_pb2.Content:
    kinds = {
        "picture": content_pb2.MEDIA_KIND_PICTURE,
        "video": content_pb2.MEDIA_KIND_VIDEO,
        "file": content_pb2.MEDIA_KIND_FILE,
        "voice": content_pb2.MEDIA_KIND_VOICE,
        "audio": content_pb2.MEDIA_KIND_AUDIO,
    }
    return content_pb2.Content(
        media=content_pb2.Media(
            kind=kinds[kind],
            file_ref=attachment["url"],
            file_name=attachment["file_name"],
            size=attachment["file_size"] if announce_size else 0,
            caption=caption,
        )
    )


def sent_as(record: dict[str, Any], attachment: dict[str, Any]) -> tuple[str, str, str, int, str]:
    assert record["sha256"] == attachment["sha256"], "the bytes Telegram got differ from Kommo's"
    return record["method"], record["via"], record["file_name"], record["file_size"], record["mime_type"]


async def test_a_small_picture_goes_by_url_and_a_larger_one_is_uploaded(world: World) -> None:
    small = await world.attach("cat.jpg", b"\xff\xd8cat" * 200)
    large = await world.attach("big cat.jpg", bytes(6 * MB))

    await world.send(media("picture", small, caption="Our cat"))
    await world.send(media("picture", large))

    first, second = world.uploads()
    assert sent_as(first, small) == ("sendPhoto", "url", "cat.jpg", 1000, "image/jpeg")
    assert first["caption"] == "Our cat"
    assert sent_as(second, large) == ("sendPhoto", "upload", "big cat.jpg", 6 * MB, "image/jpeg")


async def test_a_picture_of_unknown_size_is_uploaded(world: World) -> None:
    picture = await world.attach("dog.png", b"\x89PNG" * 100)

    await world.send(media("picture", picture, announce_size=False))

    [record] = world.uploads()
    assert sent_as(record, picture) == ("sendPhoto", "upload", "dog.png", 400, "image/png")


async def test_a_photo_over_telegrams_photo_limit_goes_as_a_document(world: World) -> None:
    photo = await world.attach("poster.jpg", bytes(11 * MB))

    await world.send(media("picture", photo, caption="Print it"))

    [record] = world.uploads()
    assert sent_as(record, photo) == ("sendDocument", "upload", "poster.jpg", 11 * MB, "image/jpeg")
    assert record["caption"] == "Print it"


@pytest.mark.parametrize("announce_size", [True, False], ids=["size-in-hook", "size-from-kommo"])
async def test_a_file_over_the_upload_limit_fails_clearly_and_sends_nothing(world: World, announce_size: bool) -> None:
    archive = await world.attach("backup.zip", bytes(51 * MB))

    with pytest.raises(TooLargeError) as caught:
        await world.send(media("file", archive, announce_size=announce_size))

    assert caught.value.reason == status_texts.FILE_TOO_LARGE
    assert caught.value.reason_args == {
        "name": "backup.zip",
        "size": str(51 * MB),
        "limit": str(50 * MB),
        "platform": "telegram",
    }
    assert status_texts.render(caught.value.reason, caught.value.reason_args, "en") == (
        "Not sent: the file backup.zip (51 MB) is larger than Telegram allows (50 MB). Send a smaller file or a "
        "link to it."
    )
    assert world.uploads() == []
    # Told the size, the bridge does not even download it; else it stops at Kommo's Content-Length.
    if not announce_size:

        async def recorded() -> bool:
            return bool(await world.kommo_downloads())

        await wait_for(recorded, timeout=10, what="the download to be recorded")
    assert len(await world.kommo_downloads()) == (0 if announce_size else 1)


async def test_a_local_bot_api_server_takes_files_up_to_2000_mb(world: World) -> None:
    world.telegram.files.local_api = True
    archive = await world.attach("backup.zip", bytes(60 * MB))

    await world.send(media("file", archive), upload_limit=LOCAL_UPLOAD_LIMIT)

    [record] = world.uploads()
    assert sent_as(record, archive) == ("sendDocument", "upload", "backup.zip", 60 * MB, "application/zip")


async def test_a_document_goes_by_url_only_as_gif_pdf_or_zip(world: World) -> None:
    pdf = await world.attach("terms.pdf", b"%PDF" * 100)
    text = await world.attach("notes.txt", b"notes\n" * 100)

    await world.send(media("file", pdf))
    await world.send(media("file", text))

    first, second = world.uploads()
    assert sent_as(first, pdf) == ("sendDocument", "url", "terms.pdf", 400, "application/pdf")
    assert sent_as(second, text) == ("sendDocument", "upload", "notes.txt", 600, "text/plain")


async def test_a_url_telegram_cannot_fetch_falls_back_to_an_upload(world: World) -> None:
    pdf = await world.attach("terms.pdf", b"%PDF" * 100)
    await world.fault(f"/attachments/{pdf['id']}/", status=404, times=1)

    await world.send(media("file", pdf))

    [record] = world.uploads()
    assert sent_as(record, pdf) == ("sendDocument", "upload", "terms.pdf", 400, "application/pdf")

    # The emulator records a download once its response is over, which may be just after the upload.
    async def downloads_recorded() -> bool:
        return len(await world.kommo_downloads()) >= 2

    await wait_for(downloads_recorded, timeout=10, interval=0.01, what="both downloads recorded")
    assert [r["status"] for r in await world.kommo_downloads()] == [404, 200]


async def test_a_file_gone_from_kommo_fails_clearly(world: World) -> None:
    notes = await world.attach("notes.txt", b"notes")
    await world.http.delete(f"{world.kommo_url}/_emulator/attachments/{notes['id']}")

    with pytest.raises(NotFoundError) as caught:
        await world.send(media("file", notes))

    assert "no longer available in Kommo" in str(caught.value)
    assert caught.value.reason == status_texts.FILE_UNAVAILABLE and caught.value.reason_args == {"name": "notes.txt"}
    assert world.uploads() == []


async def test_kommo_failing_for_now_is_retryable(world: World) -> None:
    notes = await world.attach("notes.txt", b"notes")
    await world.fault(f"/attachments/{notes['id']}/", status=503, times=1)

    with pytest.raises(RetryableError):
        await world.send(media("file", notes))

    await world.send(media("file", notes))
    assert [r["via"] for r in world.uploads()] == ["upload"]


async def test_voice_audio_and_video_use_their_methods(world: World) -> None:
    voice = await world.attach("note.ogg", b"OggS" * 50)
    wav = await world.attach("note.wav", b"RIFF" * 50)
    song = await world.attach("song.mp3", b"ID3" * 50)
    clip = await world.attach("clip.mp4", b"mp4" * 50)

    for kind, attachment in (("voice", voice), ("voice", wav), ("audio", song), ("video", clip)):
        await world.send(media(kind, attachment))

    assert [(r["method"], r["shown_as"]) for r in world.uploads()] == [
        ("sendVoice", "voice"),
        ("sendDocument", "document"),  # a WAV plays as no voice note: the client gets the file
        ("sendAudio", "audio"),
        ("sendVideo", "video"),
    ]


async def test_stickers_need_a_file(world: World) -> None:
    webp = await world.attach("smile.webp", b"RIFFWEBP" * 20)
    png = await world.attach("smile.png", b"\x89PNG" * 20)

    await world.send(content_pb2.Content(sticker=content_pb2.Sticker(file_ref=webp["url"], size=160)))
    await world.send(content_pb2.Content(sticker=content_pb2.Sticker(file_ref=png["url"])))
    with pytest.raises(PermanentError) as caught:
        await world.send(content_pb2.Content(sticker=content_pb2.Sticker(file_ref="kommo-sticker-17")))

    assert [(r["method"], r["via"]) for r in world.uploads()] == [("sendSticker", "url"), ("sendPhoto", "upload")]
    assert caught.value.reason == status_texts.TYPE_UNSUPPORTED
    assert caught.value.reason_args == {"type": "sticker", "platform": "telegram"}


async def test_a_caption_too_long_for_telegram_follows_the_file_whole(world: World) -> None:
    picture = await world.attach("cat.jpg", b"\xff\xd8" * 100)
    caption = "A long story about our cat. " * 60  # 1680 characters: over the 1024 a caption may have

    message_id = await world.send(media("picture", picture, caption=caption))

    photo, text = world.telegram.sent_messages()[-2:]
    assert photo.message["message_id"] == message_id and "caption" not in photo.message
    assert text.method == "sendMessage" and text.message["text"] == caption


def test_telegram_fetches_only_what_it_can_reach() -> None:
    cloud = "https://api.telegram.org"
    assert platform_can_fetch("https://amojo.kommo.com/attachments/1/a.jpg", cloud)
    assert not platform_can_fetch("http://127.0.0.1:9001/attachments/1/a.jpg", cloud)
    assert not platform_can_fetch("http://10.0.0.7/attachments/1/a.jpg", cloud)
    assert not platform_can_fetch("http://kommo-emulator:9001/attachments/1/a.jpg", cloud)
    assert not platform_can_fetch("ftp://amojo.kommo.com/a.jpg", cloud)
    # A Bot API server on our own network (self-hosted, or the emulator) reaches what we reach.
    assert platform_can_fetch("http://127.0.0.1:9001/attachments/1/a.jpg", "http://127.0.0.1:8081")
