"""A WhatsApp world for tests: the Cloud API emulator and Kommo's emulator on real sockets, and a receiver
that plays the gateway's part (the GET handshake, the signature check, parsing) with the adapter, so a
test sees the events the bridge would publish."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from kommo_bridge.events.v1 import events_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from libs.errors import AuthError
from libs.kommo.emulator import create_amojo_emulator
from libs.messengers.whatsapp.adapter import WhatsAppAdapter
from libs.messengers.whatsapp.emulator import WhatsAppState, create_whatsapp_emulator
from tests.support import wait_for

CONNECTION = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
ANN_WA_ID = "34600111222"


@contextlib.asynccontextmanager
async def serving(*apps: ASGIApp) -> AsyncIterator[list[str]]:
    """Each app on a real socket of its own; all stopped together (each stop takes a loop tick or two)."""
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        for app in apps
    ]
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    await wait_for(lambda: all(server.started for server in servers), timeout=10, what="the servers to listen")
    try:
        yield [f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}" for server in servers]
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Receiver:
    """The bridge's webhook endpoint as the gateway runs it, through the adapter."""

    verify_token: str
    app_secret: str
    events: list[events_pb2.InboundMessage] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    fail_next: int = 0  # answer 503 this many times (Meta must retry)

    def app(self) -> Starlette:
        adapter = WhatsAppAdapter()

        async def check(request: Request) -> Response:
            try:
                return PlainTextResponse(adapter.verify_handshake(request.query_params, self.verify_token))
            except AuthError as exc:
                self.refusals.append(str(exc))
                return PlainTextResponse("Forbidden", status_code=403)

        async def receive(request: Request) -> Response:
            body = await request.body()
            try:
                adapter.verify_webhook(request.headers, body, self.app_secret)
            except AuthError as exc:
                self.refusals.append(str(exc))
                return JSONResponse({"ok": False}, status_code=403)
            if self.fail_next:
                self.fail_next -= 1
                return JSONResponse({"ok": False}, status_code=503)
            self.events.extend(adapter.parse_webhook(body, CONNECTION))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", check, methods=["GET"]), Route("/hook", receive, methods=["POST"])])

    def receipts(self, wamid: str) -> list[events_pb2.PlatformReceipt]:
        return [e.receipt for e in self.events if e.WhichOneof("event") == "receipt" and e.platform_message_id == wamid]

    async def receipt(self, wamid: str, state: events_pb2.DeliveryState.ValueType) -> events_pb2.PlatformReceipt:
        await wait_for(lambda: any(r.state == state for r in self.receipts(wamid)), timeout=10, what=f"{wamid} {state}")
        return next(r for r in self.receipts(wamid) if r.state == state)


@dataclass
class World:
    wa: WhatsAppState
    wa_url: str
    graph_url: str
    kommo_url: str
    receiver: Receiver
    receiver_url: str
    http: httpx.AsyncClient
    credential: str
    phone_number_id: str
    waba_id: str
    adapter: WhatsAppAdapter = field(default_factory=WhatsAppAdapter)

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.wa_url}/_emulator/{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    async def client_says(self, user: str | dict[str, Any], *messages: dict[str, Any]) -> list[dict[str, Any]]:
        """A WhatsApp user writes to the business; returns the stored messages."""
        body = {"phone_number_id": self.phone_number_id, "user": user, "messages": list(messages)}
        result = await self.control("POST", "users/messages", json=body)
        assert result["delivery"]["status"] == 200, result["delivery"]
        stored: list[dict[str, Any]] = result["messages"]
        return stored

    async def attach(self, name: str, data: bytes, mime: str = "") -> dict[str, Any]:
        params = {"name": name, **({"mime": mime} if mime else {})}
        response = await self.http.post(f"{self.kommo_url}/_emulator/attachments", params=params, content=data)
        response.raise_for_status()
        attachment: dict[str, Any] = response.json()
        return attachment

    def sent(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.wa.sent]


def file_message(kind: str, data: bytes, mime_type: str, **content: Any) -> dict[str, Any]:
    return {
        "type": kind,
        kind: content,
        "file": {"data_base64": base64.b64encode(data).decode(), "mime_type": mime_type},
    }


@contextlib.asynccontextmanager
async def whatsapp_world(*, subscribe: bool = True) -> AsyncIterator[World]:
    """The emulators and the receiver; a business with one number whose webhooks go to the receiver (the
    adapter registered them, so Meta's handshake ran), and a user, Ann, who has written (window open)."""
    wa_app, wa = create_whatsapp_emulator()
    amojo_app, amojo = create_amojo_emulator()
    business, numbers, token = wa.create_business("Casa Luz", [("+34 900 123 456", "Casa Luz")])
    receiver = Receiver(verify_token=secrets.token_urlsafe(24), app_secret=wa.app.secret)
    async with (
        serving(wa_app, amojo_app, receiver.app()) as (wa_url, kommo_url, receiver_base),
        httpx.AsyncClient(timeout=30) as http,
    ):
        world = World(
            wa=wa,
            wa_url=wa_url,
            graph_url=f"{wa_url}/v23.0",
            kommo_url=kommo_url,
            receiver=receiver,
            receiver_url=f"{receiver_base}/hook",
            http=http,
            credential=f"{numbers[0].id}:{business.id}:{token}",
            phone_number_id=numbers[0].id,
            waba_id=business.id,
        )
        wa.add_client("Ann", wa_id=ANN_WA_ID)
        if subscribe:
            await world.adapter.register_webhook(
                http, world.graph_url, world.credential, world.receiver_url, receiver.verify_token
            )
            await world.client_says(ANN_WA_ID, {"type": "text", "text": {"body": "hola"}})
        try:
            yield world
        finally:
            await wa.aclose()
            await amojo.aclose()
