"""The gateway's WhatsApp webhook, with the real auth service, PostgreSQL and JetStream: Meta's GET
handshake answers the challenge only for the connection's verify token; a POST signed with the app secret
over its exact bytes publishes every event it carries (once, however often Meta sends it), and a forged,
re-serialised or unsigned one publishes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from kommo_bridge.auth.v1 import auth_pb2
from kommo_bridge.events.v1 import events_pb2
from kommo_bridge.router.v1 import router_pb2_grpc
from nats.js import JetStreamContext

from libs.bus import Publisher, Stream, connect, ensure_streams
from libs.config import load_settings
from libs.db import create_engine
from libs.media import MediaLinks
from libs.rpc import call, open_channel
from libs.secret_names import MESSENGER_APP_SECRET, MESSENGER_WEBHOOK_SECRET
from services.gateway.app import create_app
from services.gateway.credentials import GatewayCredentials
from services.gateway.file_sizes import FileSizes
from services.gateway.installs import Installs
from services.gateway.media import MediaDownloads
from services.gateway.settings_access import SettingsAccess
from services.gateway.settings_api import SettingsApi
from services.gateway.spool import HookSpool
from services.gateway.webhooks import Webhooks
from tests.integration.running_auth import running_auth

CONNECTION = "4c1d2f0e-9b7a-4e3c-8d21-5f6a7b8c9d0e"
VERIFY_TOKEN = "a-verify-token-the-bridge-chose"
APP_SECRET = "0123456789abcdef0123456789abcdef"
URL = f"/webhooks/whatsapp/{CONNECTION}"


@dataclass
class Gateway:
    http: httpx.AsyncClient
    js: JetStreamContext

    async def published(self) -> list[events_pb2.InboundMessage]:
        info = await self.js.stream_info(Stream.INBOUND.stream_name)
        events = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            message = await self.js.get_msg(Stream.INBOUND.stream_name, sequence)
            events.append(events_pb2.InboundMessage.FromString(message.data or b""))
        return events


@pytest.fixture
async def gateway(database_url: str, nats_url: str) -> AsyncIterator[Gateway]:
    async with running_auth(database_url) as auth:
        for kind, value in ((MESSENGER_WEBHOOK_SECRET, VERIFY_TOKEN), (MESSENGER_APP_SECRET, APP_SECRET)):
            await call(auth.PutSecret, auth_pb2.PutSecretRequest(owner=CONNECTION, kind=kind, value=value))
        settings = load_settings(database_url=database_url, nats_url=nats_url, service_token="t" * 32, partitions=4)
        nc = await connect(settings.nats_servers, "gateway-test")
        js = nc.jetstream()
        await ensure_streams(js)
        publisher = Publisher(js, settings.partitions)
        engine = create_engine(settings.database_url)
        spool = HookSpool(engine, publisher)
        credentials = GatewayCredentials(auth)
        access = SettingsAccess(auth, settings.public_url, settings.kommo_domains)
        router = router_pb2_grpc.RouterServiceStub(open_channel("127.0.0.1:9", "t"))
        async with httpx.AsyncClient() as media_http:
            app = create_app(
                Webhooks(credentials, publisher, spool, nc, FileSizes(credentials, media_http, settings)),
                Installs(auth),
                access,
                SettingsApi(access, auth, router),
                nc,
                spool,
                MediaDownloads(MediaLinks.from_settings(settings), credentials, media_http, settings),
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                yield Gateway(http, js)
        await nc.drain()
        await engine.dispose()


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


NOTIFICATION = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15551234567", "phone_number_id": "1122334455667"},
                        "contacts": [{"profile": {"name": "Ana Núñez"}, "wa_id": "5215512345678", "user_id": "US.1"}],
                        "messages": [
                            {
                                "from": "5215512345678",
                                "id": "wamid.A",
                                "timestamp": "1760000000",
                                "type": "text",
                                "text": {"body": "¿Hola?"},
                            },
                            {
                                "from": "5215512345678",
                                "id": "wamid.B",
                                "timestamp": "1760000001",
                                "type": "text",
                                "text": {"body": "👋"},
                            },
                        ],
                        "statuses": [
                            {
                                "id": "wamid.OUT",
                                "status": "read",
                                "timestamp": "1760000002",
                                "recipient_id": "5215512345678",
                            }
                        ],
                    },
                }
            ],
        }
    ],
}


async def test_the_handshake_answers_the_challenge_only_for_the_verify_token(gateway: Gateway) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    answer = await gateway.http.get(URL, params=query)
    assert (answer.status_code, answer.text, answer.headers["content-type"].split(";")[0]) == (
        200,
        "1158201444",
        "text/plain",
    )
    for wrong in ({**query, "hub.verify_token": "guess"}, {**query, "hub.mode": "unsubscribe"}, {"hub.challenge": "1"}):
        refused = await gateway.http.get(URL, params=wrong)
        assert refused.status_code == 403 and "1158201444" not in refused.text
    unknown = await gateway.http.get("/webhooks/whatsapp/00000000-0000-0000-0000-000000000000", params=query)
    assert unknown.status_code == 404
    telegram = await gateway.http.get(f"/webhooks/telegram/{CONNECTION}", params=query)
    assert telegram.status_code == 404


async def test_a_signed_batch_publishes_each_event_once(gateway: Gateway) -> None:
    body = json.dumps(NOTIFICATION, ensure_ascii=True).encode()
    for _ in range(2):  # Meta delivers again when unsure: still one event each
        answer = await gateway.http.post(URL, content=body, headers=signed(body))
        assert answer.status_code == 200, answer.text
    events = await gateway.published()
    assert [e.event_id for e in events] == [
        f"whatsapp:{CONNECTION}:wamid.A",
        f"whatsapp:{CONNECTION}:wamid.B",
        f"whatsapp:{CONNECTION}:wamid.OUT:read:1760000002",
    ]
    assert [e.content.text.body for e in events[:2]] == ["¿Hola?", "👋"]
    assert events[2].receipt.state == events_pb2.DELIVERY_STATE_READ


async def test_a_forged_reserialised_or_unsigned_body_publishes_nothing(gateway: Gateway) -> None:
    body = json.dumps(NOTIFICATION, ensure_ascii=True).encode()
    reserialised = json.dumps(NOTIFICATION, ensure_ascii=False).encode()
    forged = body.replace(b"wamid.A", b"wamid.Z")
    cases = [
        (reserialised, signed(body), 403),
        (forged, signed(body), 403),
        (body, {"Content-Type": "application/json"}, 401),
    ]
    for content, headers, status in cases:
        answer = await gateway.http.post(URL, content=content, headers=headers)
        assert answer.status_code == status, answer.text
    assert await gateway.published() == []


async def test_a_picture_whose_size_graph_cannot_tell_is_still_published(gateway: Gateway) -> None:
    """Webhooks carry no file size and the gateway asks Graph for it; when it cannot (here: no token for
    the connection), the message still goes, without a size, rather than being refused."""
    picture = {
        "from": "5215512345678",
        "id": "wamid.PIC",
        "timestamp": "1760000003",
        "type": "image",
        "image": {"id": "1234567890", "mime_type": "image/jpeg", "sha256": "x", "caption": "roto"},
    }
    value = {**NOTIFICATION["entry"][0]["changes"][0]["value"], "messages": [picture], "statuses": []}  # type: ignore[index]
    body = json.dumps({**NOTIFICATION, "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]})
    answer = await gateway.http.post(URL, content=body.encode(), headers=signed(body.encode()))
    assert answer.status_code == 200, answer.text
    [event] = await gateway.published()
    assert (event.content.media.file_ref, event.content.media.size) == ("1234567890", 0)
