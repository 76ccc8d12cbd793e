"""A manager's album to Telegram: the multipart body with several streamed files is what a standard encoder
sends; the emulator's sendMediaGroup checks and answers as Telegram does; `album_runs` cuts an album into
what Telegram can group; `AlbumSender` sends one album from Kommo's files (by URL or uploaded), against
both emulators on real sockets."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import BadRequestError, TooLargeError
from libs.kommo.emulator import create_amojo_emulator
from libs.media.multipart import FilePart, MultipartFilesBody
from libs.messengers.registry import album_runs as runs_for
from libs.messengers.telegram.adapter import TelegramAdapter, TelegramBotClient
from libs.messengers.telegram.albums import AlbumSender, album_runs
from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState, create_telegram_emulator
from libs.messengers.telegram.emulator_state import Bot
from libs.messengers.telegram.media import CLOUD_UPLOAD_LIMIT
from tests.unit.test_telegram_media_send import serving

BASE = "http://telegram.test"
CLIENT: dict[str, Any] = {"id": 730001, "first_name": "Ines"}
MB = 2**20
BOUNDARY = "album-b0undary"


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ---------------------------------------------------------------------------------------------------------
# The body


async def test_a_body_of_several_files_is_what_a_standard_encoder_sends() -> None:
    fields = {"chat_id": "42", "media": '[{"type":"photo","media":"attach://file0"}]'}
    first, second = b"\xff\xd8first\r\n--x\r\n" * 300, b"\x89PNG second" * 200
    standard = httpx.Request(
        "POST",
        BASE,
        data=fields,
        files=[("file0", ("one «a».jpg", first, "image/jpeg")), ("file1", ("two.png", second, "image/png"))],
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    parts = [
        FilePart("file0", "one «a».jpg", "image/jpeg", len(first), chunks_of(first, 1000)),
        FilePart("file1", "two.png", "image/png", len(second), chunks_of(second, 700)),
    ]
    body = MultipartFilesBody(list(fields.items()), parts, BOUNDARY)

    streamed = b"".join([chunk async for chunk in body.stream()])

    assert streamed == standard.read()
    assert body.content_length == len(streamed)
    assert body.content_type == f"multipart/form-data; boundary={BOUNDARY}"
    unknown = MultipartFilesBody([], [FilePart("f", "a.bin", "application/octet-stream", None, chunks_of(b"a", 1))])
    assert unknown.content_length is None


# ---------------------------------------------------------------------------------------------------------
# Which items Telegram groups


def picture(name: str = "p.jpg", size: int = 1000, *, mime: str = "") -> content_pb2.Content:
    return file_content(content_pb2.MEDIA_KIND_PICTURE, name, size, mime)


def file_content(
    kind: content_pb2.MediaKind.ValueType, name: str, size: int = 1000, mime: str = ""
) -> content_pb2.Content:
    media = content_pb2.Media(
        kind=kind, file_ref=f"https://amojo.example.com/attachments/{name}", file_name=name, size=size, mime_type=mime
    )
    return content_pb2.Content(media=media)


def test_photos_and_videos_group_documents_and_audio_only_with_their_own_kind() -> None:
    video = file_content(content_pb2.MEDIA_KIND_VIDEO, "v.mp4")
    document = file_content(content_pb2.MEDIA_KIND_FILE, "d.pdf")
    audio = file_content(content_pb2.MEDIA_KIND_AUDIO, "a.mp3")
    voice = file_content(content_pb2.MEDIA_KIND_VOICE, "n.ogg")
    text = content_pb2.Content(text=content_pb2.Text(body="hi"))

    contents = [picture(), video, picture(), document, document, audio, audio, picture(), voice, picture(), text]

    assert album_runs(contents, CLOUD_UPLOAD_LIMIT) == [[0, 1, 2], [3, 4], [5, 6], [7], [8], [9], [10]]


def test_an_album_holds_at_most_ten_and_keeps_the_managers_order() -> None:
    assert album_runs([picture()] * 23, CLOUD_UPLOAD_LIMIT) == [
        list(range(0, 10)),
        list(range(10, 20)),
        [20, 21, 22],
    ]


def test_an_item_known_to_be_over_the_limit_goes_alone_and_a_big_photo_groups_as_a_document() -> None:
    too_big = file_content(content_pb2.MEDIA_KIND_FILE, "huge.zip", 60 * MB)
    big_photo = picture("poster.png", 12 * MB)  # over the 10 MB photo limit: it goes as a document
    document = file_content(content_pb2.MEDIA_KIND_FILE, "d.pdf")

    assert album_runs([picture(), too_big, picture()], CLOUD_UPLOAD_LIMIT) == [[0], [1], [2]]
    assert album_runs([big_photo, document, picture()], CLOUD_UPLOAD_LIMIT) == [[0, 1], [2]]
    # A voice note Telegram would not play as one goes as a document, and groups as one.
    wav = file_content(content_pb2.MEDIA_KIND_VOICE, "note.wav", mime="audio/wav")
    assert album_runs([document, wav], CLOUD_UPLOAD_LIMIT) == [[0, 1]]


def test_a_platform_without_albums_sends_every_item_alone() -> None:
    class NoAlbums:
        pass

    telegram = TelegramAdapter()
    contents = [picture(), picture(), picture()]

    assert runs_for(telegram, contents, None) == [[0, 1, 2]]
    assert runs_for(NoAlbums(), contents, None) == [[0], [1], [2]]  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# The emulator's sendMediaGroup


@pytest.fixture
async def bot(emulator: TelegramEmulator) -> Bot:
    bot = emulator.state.create_bot("album_test_bot", "Albums")
    await emulator.state.client_message(bot.id, CLIENT, text="hello")
    return bot


async def send_album(
    http: httpx.AsyncClient, bot: Bot, media: Any, files: dict[str, tuple[str, bytes, str]] | None = None
) -> httpx.Response:
    fields = {"chat_id": str(CLIENT["id"]), "media": json.dumps(media)}
    if files is None:
        return await http.post(f"/bot{bot.token}/sendMediaGroup", data=fields)
    return await http.post(f"/bot{bot.token}/sendMediaGroup", data=fields, files=files)


def assert_error(response: httpx.Response, code: int, description: str) -> None:
    assert response.status_code == code, response.text
    assert response.json() == {"ok": False, "error_code": code, "description": description}


async def uploads(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await http.get("/_emulator/uploads")).json()["uploads"]
    return found


async def test_an_album_is_answered_with_messages_sharing_a_media_group_id(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    files = {
        "a": ("one.jpg", b"\xff\xd8one" * 100, "image/jpeg"),
        "b": ("two.mp4", b"mp4 two" * 50, "video/mp4"),
        "c": ("three.jpg", b"\xff\xd8three" * 80, "image/jpeg"),
    }
    media = [
        {"type": "photo", "media": "attach://a", "caption": "First"},
        {"type": "video", "media": "attach://b", "duration": 4},
        {"type": "photo", "media": "attach://c"},
    ]

    response = await send_album(http, bot, media, files)

    assert response.status_code == 200, response.text
    messages = response.json()["result"]
    assert [m["message_id"] for m in messages] == [2, 3, 4]  # the client's hello was 1
    group_ids = {m["media_group_id"] for m in messages}
    assert len(group_ids) == 1 and all(group_ids)
    assert messages[0]["caption"] == "First" and "caption" not in messages[1]
    assert messages[1]["video"]["duration"] == 4 and "photo" in messages[2]
    recorded = await uploads(http)
    assert [(r["method"], r["shown_as"], r["file_name"], r["caption"], r["media_group_id"]) for r in recorded] == [
        ("sendMediaGroup", "photo", "one.jpg", "First", messages[0]["media_group_id"]),
        ("sendMediaGroup", "video", "two.mp4", "", messages[0]["media_group_id"]),
        ("sendMediaGroup", "photo", "three.jpg", "", messages[0]["media_group_id"]),
    ]
    assert [r["sha256"] for r in recorded] == [hashlib.sha256(f[1]).hexdigest() for f in files.values()]
    assert [s.method for s in emulator.state.sent_messages(bot.id)] == ["sendMediaGroup"] * 3
    # Every file is kept for its file_id, as any sent file is: an album of them goes again by file_id.
    again = await http.post(
        f"/bot{bot.token}/sendMediaGroup",
        json={
            "chat_id": CLIENT["id"],
            "media": [
                {"type": "photo", "media": messages[0]["photo"][-1]["file_id"]},
                {"type": "video", "media": messages[1]["video"]["file_id"]},
            ],
        },
    )
    assert again.status_code == 200, again.text
    assert [r["via"] for r in (await uploads(http))[3:]] == ["file_id", "file_id"]


async def test_one_item_is_sent_outside_any_album(http: httpx.AsyncClient, bot: Bot) -> None:
    response = await send_album(
        http, bot, [{"type": "document", "media": "attach://f"}], {"f": ("a.pdf", b"%PDF", "application/pdf")}
    )

    assert response.status_code == 200, response.text
    [message] = response.json()["result"]
    assert "media_group_id" not in message and message["document"]["file_name"] == "a.pdf"


async def test_albums_telegram_refuses_send_and_keep_nothing(http: httpx.AsyncClient, bot: Bot) -> None:
    jpg = ("p.jpg", b"\xff\xd8jpg", "image/jpeg")
    pdf = ("d.pdf", b"%PDF-1.7", "application/pdf")
    mp3 = ("s.mp3", b"ID3song", "audio/mpeg")
    photo = {"type": "photo", "media": "attach://p"}
    cases: list[tuple[Any, dict[str, tuple[str, bytes, str]], str]] = [
        ([], {}, "Bad Request: there are no messages to send"),
        ([photo] * 11, {"p": jpg}, "Bad Request: too many messages to send as an album"),
        ([photo, {"type": "document", "media": "attach://d"}], {"p": jpg, "d": pdf}, "document"),
        ([{"type": "audio", "media": "attach://s"}, photo], {"p": jpg, "s": mp3}, "audio"),
        (
            [photo, {"type": "animation", "media": "attach://p"}],
            {"p": jpg},
            "Bad Request: can't parse InputMedia: type \"animation\" can't be used in sendMediaGroup",
        ),
        (
            [photo, {"type": "sticker", "media": "attach://p"}],
            {"p": jpg},
            'Bad Request: can\'t parse InputMedia: type "sticker" is unsupported',
        ),
        ([photo, {"type": "photo", "media": "attach://gone"}], {"p": jpg}, "media not found"),
        ({"type": "photo"}, {"p": jpg}, "Bad Request: expected an Array of InputMedia"),
        ([photo, {**photo, "caption": "x" * 1025}], {"p": jpg}, "Bad Request: message caption is too long"),
    ]
    for media, files, description in cases:
        response = await send_album(http, bot, media, files)
        if description in ("document", "audio"):
            description = f"Bad Request: {description} can't be mixed with other media types"
        elif description == "media not found":
            description = "Bad Request: can't parse InputMedia: media not found"
        assert_error(response, 400, description)
    assert_error(
        await http.post(f"/bot{bot.token}/sendMediaGroup", data={"chat_id": str(CLIENT["id"])}),
        400,
        'Bad Request: parameter "media" is required',
    )
    # Nothing listens on port 9 of the loopback: Telegram could not fetch it, and names the item.
    unreachable = [photo, {"type": "photo", "media": "http://127.0.0.1:9/x.jpg"}]
    assert_error(
        await send_album(http, bot, unreachable, {"p": jpg}),
        400,
        'Bad Request: failed to send message #2 with the error message "Failed to get HTTP URL content"',
    )
    assert await uploads(http) == []


async def test_an_upload_over_the_limit_fails_the_whole_album(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    small = ("a.jpg", b"\xff\xd8small", "image/jpeg")
    big = ("big.jpg", bytes(10 * MB + 1), "image/jpeg")
    media = [{"type": "photo", "media": "attach://a"}, {"type": "photo", "media": "attach://b"}]

    response = await send_album(http, bot, media, {"a": small, "b": big})

    assert_error(response, 413, "Request Entity Too Large")
    assert await uploads(http) == []
    assert list(emulator.state.files.spool_path().parent.iterdir()) == []  # no file left on disk


# ---------------------------------------------------------------------------------------------------------
# AlbumSender: Kommo's files to Telegram as one album


@dataclass
class World:
    kommo_url: str
    telegram: TelegramState
    http: httpx.AsyncClient
    sender: AlbumSender

    async def attach(self, name: str, data: bytes, mime: str = "") -> dict[str, Any]:
        params = {"name": name, **({"mime": mime} if mime else {})}
        response = await self.http.post(f"{self.kommo_url}/_emulator/attachments", params=params, content=data)
        response.raise_for_status()
        attachment: dict[str, Any] = response.json()
        return attachment

    def uploads(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.telegram.uploads.find()]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    amojo_app, amojo = create_amojo_emulator()
    telegram_app, telegram = create_telegram_emulator()
    bot = telegram.create_bot("album_send_bot", "Albums")
    await telegram.client_message(bot.id, CLIENT, text="hi")
    async with (
        serving(amojo_app) as kommo_url,
        serving(telegram_app) as telegram_url,
        httpx.AsyncClient(timeout=30) as http,
    ):
        client = TelegramBotClient(telegram_url, bot.token, http)
        yield World(kommo_url, telegram, http, AlbumSender(client, http, telegram_url, CLOUD_UPLOAD_LIMIT))
    await amojo.aclose()
    await telegram.aclose()


def of(
    kind: content_pb2.MediaKind.ValueType, attachment: dict[str, Any], *, caption: str = "", announce_size: bool = True
) -> content_pb2.Content:
    media = content_pb2.Media(
        kind=kind,
        file_ref=attachment["url"],
        file_name=attachment["file_name"],
        size=attachment["file_size"] if announce_size else 0,
        caption=caption,
    )
    return content_pb2.Content(media=media)


async def test_pictures_go_as_one_album_by_url_or_uploaded_in_order(world: World) -> None:
    small = await world.attach("sofa.jpg", b"\xff\xd8sofa" * 300)
    large = await world.attach("room.jpg", b"\xff\xd8" + bytes(6 * MB))  # over the 5 MB Telegram fetches
    unsized = await world.attach("lamp.png", b"\x89PNG lamp" * 100)
    contents = [
        of(content_pb2.MEDIA_KIND_PICTURE, small, caption="Sofa"),
        of(content_pb2.MEDIA_KIND_PICTURE, large),
        of(content_pb2.MEDIA_KIND_PICTURE, unsized, announce_size=False),
    ]

    message_ids = await world.sender.send(str(CLIENT["id"]), contents)

    assert message_ids == [2, 3, 4]
    recorded = world.uploads()
    assert [(r["method"], r["via"], r["file_name"], r["caption"]) for r in recorded] == [
        ("sendMediaGroup", "url", "sofa.jpg", "Sofa"),
        ("sendMediaGroup", "upload", "room.jpg", ""),
        ("sendMediaGroup", "upload", "lamp.png", ""),
    ]
    assert [r["sha256"] for r in recorded] == [a["sha256"] for a in (small, large, unsized)]
    assert len({r["media_group_id"] for r in recorded}) == 1


async def test_a_url_telegram_refuses_makes_the_album_go_uploaded(world: World) -> None:
    first = await world.attach("a.jpg", b"\xff\xd8a" * 100)
    second = await world.attach("b.jpg", b"\xff\xd8b" * 100)
    contents = [of(content_pb2.MEDIA_KIND_PICTURE, first), of(content_pb2.MEDIA_KIND_PICTURE, second)]
    sent_by_url = await world.http.post(
        f"{world.kommo_url}/_emulator/faults",
        json={"path": f"/attachments/{first['id']}/", "status": 404, "times": 1},
    )
    sent_by_url.raise_for_status()

    await world.sender.send(str(CLIENT["id"]), contents)

    assert [(r["via"], r["sha256"]) for r in world.uploads()] == [
        ("upload", first["sha256"]),
        ("upload", second["sha256"]),
    ]


async def test_a_caption_too_long_follows_the_album_as_text(world: World) -> None:
    first = await world.attach("a.pdf", b"%PDF a" * 100)
    second = await world.attach("b.pdf", b"%PDF b" * 100)
    long_caption = "Terms and conditions. " * 60
    contents = [
        of(content_pb2.MEDIA_KIND_FILE, first, caption=long_caption),
        of(content_pb2.MEDIA_KIND_FILE, second, caption="Price list"),
    ]

    await world.sender.send(str(CLIENT["id"]), contents)

    assert [(r["shown_as"], r["caption"]) for r in world.uploads()] == [("document", ""), ("document", "Price list")]
    assert [s.message["text"] for s in world.telegram.sent_messages() if s.method == "sendMessage"] == [long_caption]


async def test_a_file_found_too_large_only_at_kommo_fails_the_album_clearly(world: World) -> None:
    fine = await world.attach("a.jpg", b"\xff\xd8a" * 100)
    big = await world.attach("big.jpg", b"\xff\xd8" + bytes(11 * MB))
    contents = [
        of(content_pb2.MEDIA_KIND_PICTURE, fine),
        of(content_pb2.MEDIA_KIND_PICTURE, big, announce_size=False),
    ]

    with pytest.raises(TooLargeError) as raised:
        await world.sender.send(str(CLIENT["id"]), contents)

    assert raised.value.reason == status_texts.FILE_TOO_LARGE
    assert raised.value.reason_args["name"] == "big.jpg"
    assert world.uploads() == []


async def test_items_telegram_cannot_group_are_refused_before_any_call(world: World) -> None:
    picture_file = await world.attach("a.jpg", b"\xff\xd8a" * 100)
    document = await world.attach("b.pdf", b"%PDF b" * 100)

    with pytest.raises(BadRequestError):
        await world.sender.send(
            str(CLIENT["id"]),
            [of(content_pb2.MEDIA_KIND_PICTURE, picture_file), of(content_pb2.MEDIA_KIND_FILE, document)],
        )
    assert world.uploads() == []
