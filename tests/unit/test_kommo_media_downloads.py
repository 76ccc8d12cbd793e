"""The amojo emulator downloads the `media` of the messages it accepts, as Kommo does, and records what
it got; it refuses media messages amojo would refuse."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.emulator.media_downloads import disposition_file_name
from libs.kommo.payloads import MessageBody, NewMessage, Participant
from tests.support import wait_for

SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CHANNEL_ID = "344a5002-f8ca-454d-af3d-396180102ac7"
ACCOUNT_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_ID = f"{CHANNEL_ID}_{ACCOUNT_ID}"
BASE = "http://amojo.test"
FILE = os.urandom(200_000)


@dataclass
class World:
    state: AmojoState
    client: AmojoClient


def file_server() -> Starlette:
    async def serve(request: Request) -> Response:
        if request.path_params["name"] == "gone.pdf":
            return JSONResponse({"ok": False, "error": "gone"}, status_code=404)
        return Response(
            FILE,
            media_type="application/pdf",
            headers={
                "Content-Disposition": "attachment; filename=\"_.pdf\"; filename*=UTF-8''%D1%81%D1%87%D1%91%D1%82.pdf"
            },
        )

    return Starlette(routes=[Route("/media/{name}", serve)])


@pytest.fixture
async def world() -> AsyncIterator[World]:
    app, state = create_amojo_emulator(AmojoState())
    state.register_channel(CHANNEL_ID, SECRET, "http://bridge.test/:scope_id")
    state.media.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=file_server()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        client = AmojoClient(BASE, CHANNEL_ID, SECRET, http)
        await client.connect(ACCOUNT_ID, "Bridge")
        yield World(state, client)
    await state.aclose()
    await state.media.http.aclose()


def message(msgid: str, body: MessageBody) -> NewMessage:
    return NewMessage(
        msgid=msgid,
        conversation_id="conv-1",
        sender=Participant(id="client-1", name="Client"),
        message=body,
        timestamp_ms=1_700_000_000_000,
    )


async def test_kommo_downloads_an_accepted_files_media_and_records_what_it_got(world: World) -> None:
    body = MessageBody("file", media="http://files.test/media/x.pdf", file_name="счёт.pdf", file_size=len(FILE))
    await world.client.send_message(SCOPE_ID, message("m-1", body))
    await wait_for(lambda: all(d.done for d in world.state.media.downloads(msgid="m-1")), what="the download")
    [download] = world.state.media.downloads(msgid="m-1")
    assert (download.status, download.size, download.sha256) == (200, len(FILE), hashlib.sha256(FILE).hexdigest())
    assert (download.content_type, download.content_length, download.file_name) == (
        "application/pdf",
        len(FILE),
        "счёт.pdf",
    )

    # A repeated msgid is the same message: no second download.
    await world.client.send_message(SCOPE_ID, message("m-1", body))
    assert len(world.state.media.downloads(msgid="m-1")) == 1


async def test_a_failed_download_is_recorded_with_its_status(world: World) -> None:
    body = MessageBody("picture", media="http://files.test/media/gone.pdf", file_name="p.jpg", file_size=10)
    await world.client.send_message(SCOPE_ID, message("m-2", body))
    await wait_for(lambda: all(d.done for d in world.state.media.downloads(msgid="m-2")), what="the download")
    [download] = world.state.media.downloads(msgid="m-2")
    assert (download.status, download.size, download.sha256) == (404, 0, "")
    assert "gone" in download.error


async def test_media_must_be_a_url_kommo_can_download(world: World) -> None:
    body = MessageBody("file", media="BQACAgIAAxkBAAIfile-id", file_name="a.pdf", file_size=3)
    with pytest.raises(BadRequestError, match="media must be a public http"):
        await world.client.send_message(SCOPE_ID, message("m-3", body))
    assert world.state.media.downloads() == []


def test_the_file_name_comes_from_the_extended_parameter_first() -> None:
    assert disposition_file_name("attachment; filename=\"plain.pdf\"; filename*=UTF-8''%C3%A9t%C3%A9.pdf") == "été.pdf"
    assert disposition_file_name('attachment; filename="plain.pdf"') == "plain.pdf"
    assert disposition_file_name("") == ""
