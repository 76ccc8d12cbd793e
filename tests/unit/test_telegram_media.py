"""Telegram files: the emulator's file store, getFile and file server (with the Bot API's limits), and the
adapter's download half (libs.messengers.telegram.media) against it."""

from __future__ import annotations

import hashlib
import os
import traceback
from typing import Any

import httpx
import pytest

from libs.config import load_settings
from libs.emulation import Fault
from libs.errors import CredentialRejectedError, NotFoundError, RetryableError, TimedOutError, TooLargeError
from libs.messengers.registry import adapter_named
from libs.messengers.telegram.emulator import TelegramEmulator
from libs.messengers.telegram.emulator_state import Bot
from libs.messengers.telegram.media import (
    CLOUD_DOWNLOAD_LIMIT,
    LOCAL_UPLOAD_LIMIT,
    download_path,
    telegram_media_limits,
)

BASE = "http://telegram.test"


@pytest.fixture
def bot(emulator: TelegramEmulator) -> Bot:
    return emulator.state.create_bot("files_support_bot", "Files")


async def upload(
    http: httpx.AsyncClient, bot: Bot, data: bytes, kind: str = "document", mime_type: str = "application/pdf"
) -> dict[str, Any]:
    response = await http.post(
        "/_emulator/files", params={"bot_id": bot.id, "kind": kind, "mime_type": mime_type}, content=data
    )
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def get_file(http: httpx.AsyncClient, bot: Bot, file_id: str) -> httpx.Response:
    return await http.post(f"/bot{bot.token}/getFile", json={"file_id": file_id})


async def read_all(http: httpx.AsyncClient, bot: Bot, file_id: str, base: str = BASE) -> tuple[bytes, int | None, str]:
    adapter = adapter_named("telegram")
    async with adapter.open_file(http, base, bot.token, file_id) as stream:
        chunks = [chunk async for chunk in stream.chunks]
    assert all(len(chunk) <= 64 * 1024 for chunk in chunks)
    return b"".join(chunks), stream.size, stream.mime_type


# ---------------------------------------------------------------------------------------------------------
# The emulator


async def test_a_stored_file_is_served_through_get_file_and_the_file_server(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    data = os.urandom(150_000)
    stored = await upload(http, bot, data)
    assert stored["file_size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()

    response = await get_file(http, bot, stored["file_id"])
    assert response.status_code == 200
    file = response.json()["result"]
    assert file == {
        "file_id": stored["file_id"],
        "file_unique_id": stored["file_unique_id"],
        "file_size": len(data),
        "file_path": "documents/file_0.pdf",
    }
    download = await http.get(f"/file/bot{bot.token}/{file['file_path']}")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-length"] == str(len(data))
    assert download.headers["content-type"] == "application/pdf"
    recorded = (await http.get("/_emulator/files/downloads")).json()["downloads"]
    assert [(d["file_id"], d["status"], d["file_size"]) for d in recorded] == [(stored["file_id"], 200, len(data))]


async def test_get_file_refuses_like_telegram(http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot) -> None:
    response = await get_file(http, bot, "BQACAgIAAxkBAAIunknown")
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}

    other = emulator.state.create_bot("other_files_bot", "Other")
    stored = await upload(http, other, b"%PDF-1.7 other bot")
    response = await get_file(http, bot, stored["file_id"])
    assert response.json()["description"] == "Bad Request: invalid file_id", "file_ids are per bot"


async def test_files_over_20_mb_are_too_big_for_the_cloud_but_not_for_a_local_server(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    stored = await upload(http, bot, b"\0" * (CLOUD_DOWNLOAD_LIMIT + 1), kind="video", mime_type="video/mp4")
    response = await get_file(http, bot, stored["file_id"])
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}

    mode = await http.put("/_emulator/files/mode", json={"local_api": True})
    assert mode.json() == {"local_api": True, "download_limit": None}
    file = (await get_file(http, bot, stored["file_id"])).json()["result"]
    # A local server answers with an absolute path in its working directory.
    assert file["file_path"] == f"/var/lib/telegram-bot-api/{bot.token}/videos/file_0.mp4"
    relative = await http.get(f"/file/bot{bot.token}/videos/file_0.mp4")
    absolute = await http.get(f"/file/bot{bot.token}/{file['file_path']}")
    assert relative.status_code == absolute.status_code == 200
    assert len(relative.content) == CLOUD_DOWNLOAD_LIMIT + 1


async def test_the_file_server_answers_401_for_a_wrong_token_and_404_for_an_unknown_path(
    http: httpx.AsyncClient, bot: Bot
) -> None:
    stored = await upload(http, bot, b"data")
    path = (await get_file(http, bot, stored["file_id"])).json()["result"]["file_path"]
    wrong = await http.get(f"/file/bot123:{'x' * 35}/{path}")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    missing = await http.get(f"/file/bot{bot.token}/documents/file_99.pdf")
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_the_upload_control_route_checks_its_input(http: httpx.AsyncClient, bot: Bot) -> None:
    empty = await http.post("/_emulator/files", params={"bot_id": bot.id}, content=b"")
    assert empty.status_code == 400
    kind = await http.post("/_emulator/files", params={"bot_id": bot.id, "kind": "hologram"}, content=b"x")
    assert kind.status_code == 400
    nobody = await http.post("/_emulator/files", params={"bot_id": 1}, content=b"x")
    assert nobody.status_code == 404


# ---------------------------------------------------------------------------------------------------------
# The adapter's download


def test_limits_follow_the_local_api_setting() -> None:
    assert telegram_media_limits(False).download_bytes == 20 * 2**20
    assert telegram_media_limits(False).upload_bytes == 50 * 2**20
    assert telegram_media_limits(True).download_bytes is None
    assert telegram_media_limits(True).upload_bytes == LOCAL_UPLOAD_LIMIT == 2000 * 2**20
    adapter = adapter_named("telegram")
    assert adapter.media_limits(load_settings(telegram_local_api=True)) == telegram_media_limits(True)


def test_a_local_servers_absolute_path_is_requested_relative_to_the_bots_directory() -> None:
    token = "123:abc"
    assert download_path("documents/file_1.pdf", token) == "documents/file_1.pdf"
    assert download_path(f"/var/lib/telegram-bot-api/{token}/documents/file_1.pdf", token) == "documents/file_1.pdf"


async def test_open_file_streams_the_bytes_with_size_and_type(http: httpx.AsyncClient, bot: Bot) -> None:
    data = os.urandom(300_000)
    stored = await upload(http, bot, data, kind="photo", mime_type="image/jpeg")
    body, size, mime_type = await read_all(http, bot, stored["file_id"])
    assert hashlib.sha256(body).hexdigest() == stored["sha256"]
    assert (size, mime_type) == (len(data), "image/jpeg")


async def test_open_file_in_local_mode_reads_past_20_mb(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    emulator.state.files.local_api = True
    data = os.urandom(CLOUD_DOWNLOAD_LIMIT + 1000)
    stored = await upload(http, bot, data, kind="video", mime_type="video/mp4")
    body, size, _ = await read_all(http, bot, stored["file_id"])
    assert size == len(data) and body == data


async def test_open_file_maps_telegrams_refusals(http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(NotFoundError, match="invalid file_id"):
        await read_all(http, bot, "BQACAgIAAxkBAAIunknown")
    big = await upload(http, bot, b"\0" * (CLOUD_DOWNLOAD_LIMIT + 1))
    with pytest.raises(TooLargeError, match="file is too big"):
        await read_all(http, bot, big["file_id"])

    small = await upload(http, bot, b"%PDF small")
    emulator.state.faults.add(Fault(path=r"^/file/", status=404))
    with pytest.raises(NotFoundError, match="no longer available"):
        await read_all(http, bot, small["file_id"])
    emulator.state.faults.add(Fault(path=r"^/file/", status=502))
    with pytest.raises(RetryableError):
        await read_all(http, bot, small["file_id"])
    emulator.state.faults.add(Fault(path=r"getFile$", status=401))
    with pytest.raises(CredentialRejectedError):
        await read_all(http, bot, small["file_id"])


async def test_a_download_timeout_is_timed_out_and_the_token_never_leaks(emulator: TelegramEmulator, bot: Bot) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app), base_url=BASE) as http:
        stored = await upload(http, bot, b"%PDF slow")

    def stall(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/file/"):
            raise httpx.ReadTimeout(f"timed out reading {request.url}", request=request)
        return httpx.Response(
            200, json={"ok": True, "result": {"file_id": "f", "file_size": 9, "file_path": "documents/file_0.pdf"}}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(stall)) as stalled:
        with pytest.raises(TimedOutError) as caught:
            await read_all(stalled, bot, stored["file_id"], base="https://api.telegram.test")
    rendered = "".join(traceback.format_exception(caught.value))
    assert bot.token not in rendered
    assert caught.value.__cause__ is None and caught.value.__context__ is None
