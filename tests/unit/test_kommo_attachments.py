"""The amojo emulator's manager attachments: stored streamed to disk, served from amojo's host with their
type and length, faults injectable on downloads, and manager hooks that carry media, stickers, locations
and contacts the way Kommo's chat hooks do (§9)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import content_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.hooks import parse_chat_hook
from libs.kommo.payloads import MessageBody, NewMessage, Participant

SECRET = "0123456789abcdef0123456789abcdef01234567"
CHANNEL_ID = "6e1a5bd4-9d0e-4a47-9f55-0f7f0e6e7a11"
ACCOUNT_ID = "7b0c2d9e-3f4a-4b5c-8d6e-9f0a1b2c3d4e"
SCOPE_ID = f"{CHANNEL_ID}_{ACCOUNT_ID}"
BASE = "http://amojo.test"


@dataclass
class Amojo:
    state: AmojoState
    http: httpx.AsyncClient
    hooks: list[dict[str, Any]] = field(default_factory=list)

    async def attach(self, name: str, data: bytes, mime: str = "") -> dict[str, Any]:
        params = {"name": name, **({"mime": mime} if mime else {})}
        response = await self.http.post("/_emulator/attachments", params=params, content=data)
        assert response.status_code == 201, response.text
        attachment: dict[str, Any] = response.json()
        return attachment

    async def manager_sends(self, **message: Any) -> dict[str, Any]:
        body = {"scope_id": SCOPE_ID, "conversation_id": "conv-1", **message}
        response = await self.http.post("/_emulator/manager_messages", json=body)
        assert response.status_code == 200, response.text
        return self.hooks[-1]


@pytest.fixture
async def amojo() -> AsyncIterator[Amojo]:
    hooks: list[dict[str, Any]] = []

    async def receive_hook(request: Request) -> Response:
        hooks.append(json.loads(await request.body()))
        return Response(status_code=200)

    receiver = Starlette(routes=[Route("/hooks/kommo/{scope_id}", receive_hook, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hook_http:
        app, state = create_amojo_emulator(AmojoState(hook_http=hook_http))
        state.register_channel(CHANNEL_ID, SECRET, "http://bridge.test/hooks/kommo/:scope_id")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            client = AmojoClient(BASE, CHANNEL_ID, SECRET, http)
            await client.connect(ACCOUNT_ID, "Bridge")
            await client.send_message(
                SCOPE_ID,
                NewMessage(
                    msgid="m-1",
                    conversation_id="conv-1",
                    sender=Participant(id="client-1", name="Client"),
                    message=MessageBody(type="text", text="hi"),
                    timestamp_ms=1_700_000_000_000,
                ),
            )
            yield Amojo(state, http, hooks)
        await state.aclose()


async def test_an_attachment_is_served_from_amojos_host_with_type_and_length(amojo: Amojo) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB

    attachment = await amojo.attach("price list.pdf", data)

    assert attachment["url"] == f"{BASE}/attachments/{attachment['id']}/price%20list.pdf"
    assert attachment | {"id": "", "url": ""} == {
        "id": "",
        "url": "",
        "file_name": "price list.pdf",
        "file_size": len(data),
        "mime_type": "application/pdf",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    response = await amojo.http.get(attachment["url"])
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(data))
    head = await amojo.http.head(attachment["url"])
    assert head.headers["content-length"] == str(len(data))
    # The name is part of the address; a download is a recorded platform request.
    assert (await amojo.http.get(attachment["url"].replace("price%20list", "other"))).status_code == 404
    logged = (await amojo.http.get("/_emulator/requests", params={"path_contains": "/attachments/"})).json()
    assert [r["status"] for r in logged["requests"]] == [200, 200, 404]


async def test_a_deleted_attachment_answers_404_in_kommos_shape(amojo: Amojo) -> None:
    attachment = await amojo.attach("voice.ogg", b"OggS" * 10, "audio/ogg")

    assert (await amojo.http.delete(f"/_emulator/attachments/{attachment['id']}")).json() == {"deleted": True}

    response = await amojo.http.get(attachment["url"])
    assert response.status_code == 404
    assert response.json() == {
        "status": 0,
        "error_code": 404,
        "error_type": "NOT_FOUND",
        "error_description": "NOT_FOUND",
    }
    assert (await amojo.http.delete(f"/_emulator/attachments/{attachment['id']}")).status_code == 404


async def test_faults_can_be_injected_on_downloads(amojo: Amojo) -> None:
    attachment = await amojo.attach("photo.jpg", b"\xff\xd8" * 100)
    path = f"/attachments/{attachment['id']}/"
    await amojo.http.post("/_emulator/faults", json={"path": path, "status": 500, "times": 1})
    await amojo.http.post("/_emulator/faults", json={"path": path, "kind": "timeout", "delay_s": 0.3, "times": 1})

    failed = await amojo.http.get(attachment["url"])
    started = time.monotonic()
    slow = await amojo.http.get(attachment["url"])

    assert failed.status_code == 500 and failed.json()["error_type"] == "INTERNAL_ERROR"
    assert slow.status_code == 200 and time.monotonic() - started >= 0.3
    assert (await amojo.http.get(attachment["url"])).status_code == 200


async def test_a_manager_sends_a_file_with_a_caption(amojo: Amojo) -> None:
    attachment = await amojo.attach("cat.jpg", b"\xff\xd8cat" * 10)

    hook = await amojo.manager_sends(
        type="picture",
        text="Our cat",
        media=attachment["url"],
        file_name="cat.jpg",
        file_size=attachment["file_size"],
    )

    message = hook["message"]["message"]
    assert message | {"id": ""} == {
        "id": "",
        "type": "picture",
        "text": "Our cat",
        "media": attachment["url"],
        "file_name": "cat.jpg",
        "file_size": 50,
    }
    parsed = parse_chat_hook(json.dumps(hook).encode(), SCOPE_ID)
    assert parsed is not None
    assert parsed.content.media == content_pb2.Media(
        kind=content_pb2.MEDIA_KIND_PICTURE, file_ref=attachment["url"], file_name="cat.jpg", size=50, caption="Our cat"
    )


async def test_a_manager_sends_stickers_locations_and_contacts(amojo: Amojo) -> None:
    sticker = (await amojo.manager_sends(type="sticker", sticker_id="kommo-sticker-17"))["message"]["message"]
    assert sticker["sticker_id"] == "kommo-sticker-17" and "media" not in sticker
    location = await amojo.manager_sends(type="location", location={"lat": 52.52, "lon": 13.405})
    assert location["message"]["message"]["location"] == {"lat": 52.52, "lon": 13.405}
    contact = await amojo.manager_sends(type="contact", contact={"name": "Shop", "phone": "+4930123456"})
    parsed = parse_chat_hook(json.dumps(contact).encode(), SCOPE_ID)
    assert parsed is not None and parsed.content.contact == content_pb2.Contact(name="Shop", phone="+4930123456")

    missing = await amojo.http.post(
        "/_emulator/manager_messages", json={"scope_id": SCOPE_ID, "conversation_id": "conv-1", "type": "picture"}
    )
    assert missing.status_code == 400 and "media URL" in missing.json()["error"]
