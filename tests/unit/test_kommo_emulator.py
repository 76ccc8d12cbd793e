"""The real AmojoClient against the amojo emulator: signatures, strict validation, faults, state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.emulation import Fault
from libs.errors import (
    AuthError,
    BadRequestError,
    NotFoundError,
    RateLimitedError,
    RetryableError,
)
from libs.kommo.client import AmojoClient
from libs.kommo.emulator import AmojoState, create_amojo_emulator
from libs.kommo.payloads import MessageBody, NewMessage, Participant, encode_body
from libs.kommo.signing import content_md5, format_date, request_signature, signed_headers

SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CHANNEL_ID = "344a5002-f8ca-454d-af3d-396180102ac7"
ACCOUNT_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_ID = f"{CHANNEL_ID}_{ACCOUNT_ID}"
BASE = "http://amojo.test"
PREFIX = "/v2/origin/custom"
HOOK_URL = "http://bridge.test/hooks/kommo/:scope_id"


@dataclass
class Amojo:
    state: AmojoState
    http: httpx.AsyncClient
    client: AmojoClient
    hooks_received: list[httpx.Request] = field(default_factory=list)

    async def signed(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        secret: str = SECRET,
        now: datetime | None = None,
        override: dict[str, str] | None = None,
        send_body: bytes | None = None,
    ) -> httpx.Response:
        """A hand-made amojo request: sign `body` for `path`, optionally tamper, send."""
        headers = signed_headers(secret, method, path, body, now=now)
        headers.update(override or {})
        content = body if send_body is None else send_body
        return await self.http.request(method, BASE + path, content=content, headers=headers)


@pytest.fixture
async def amojo() -> AsyncIterator[Amojo]:
    received: list[httpx.Request] = []

    async def hook_receiver(request: Request) -> Response:
        received.append(httpx.Request(request.method, str(request.url), content=await request.body()))
        return Response(status_code=200)

    receiver = Starlette(routes=[Route("/hooks/kommo/{scope_id}", hook_receiver, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as hook_http:
        app, state = create_amojo_emulator(AmojoState(hook_http=hook_http))
        state.register_channel(CHANNEL_ID, SECRET, HOOK_URL, code="amo.ext.bridge")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
            yield Amojo(state, http, AmojoClient(BASE, CHANNEL_ID, SECRET, http), received)


@pytest.fixture
async def connected(amojo: Amojo) -> Amojo:
    result = await amojo.client.connect(ACCOUNT_ID, "Kommo Bridge")
    assert result.scope_id == SCOPE_ID
    return amojo


def client_message(
    msgid: str = "msg-1", conversation_id: str = "conv-1", *, at_ms: int = 1_700_000_000_123
) -> NewMessage:
    return NewMessage(
        msgid=msgid,
        conversation_id=conversation_id,
        sender=Participant(
            id="tg-42",
            name="Вася клиент",
            avatar="https://cdn.test/a.png",
            profile_link="https://t.me/vasya",
            phone="+79151112233",
            email="vasya@example.com",
        ),
        message=MessageBody(type="text", text="Привет / hello"),
        timestamp_ms=at_ms,
        source_external_id="tg-bot-1",
    )


def error_body(response: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = response.json()
    assert set(data) == {"status", "error_code", "error_type", "error_description"}
    assert data["status"] == 0 and data["error_code"] == response.status_code
    return data


# -- connect / disconnect


async def test_connect_returns_scope_and_always_asks_for_hook_v2(amojo: Amojo) -> None:
    result = await amojo.client.connect(ACCOUNT_ID, "Kommo Bridge")

    assert (result.account_id, result.scope_id, result.title) == (ACCOUNT_ID, SCOPE_ID, "Kommo Bridge")
    (request,) = amojo.state.log.entries("/connect")
    assert request.json() == {"account_id": ACCOUNT_ID, "title": "Kommo Bridge", "hook_api_version": "v2"}
    assert request.status == 200
    connection = amojo.state.connection(SCOPE_ID)
    assert connection is not None and connection.account_id == ACCOUNT_ID


async def test_connect_requires_hook_api_version_v2(amojo: Amojo) -> None:
    path = f"{PREFIX}/{CHANNEL_ID}/connect"
    missing = await amojo.signed("POST", path, encode_body({"account_id": ACCOUNT_ID}))
    v1 = await amojo.signed("POST", path, encode_body({"account_id": ACCOUNT_ID, "hook_api_version": "v1"}))

    assert missing.status_code == 400 and "hook_api_version" in error_body(missing)["error_description"]
    assert v1.status_code == 400 and "v2" in error_body(v1)["error_description"]
    assert amojo.state.connection(SCOPE_ID) is None


async def test_unknown_channel_is_origin_not_registered(amojo: Amojo) -> None:
    other = AmojoClient(BASE, "00000000-0000-0000-0000-000000000000", SECRET, amojo.http)
    with pytest.raises(NotFoundError, match="ORIGIN_NOT_REGISTERED"):
        await other.connect(ACCOUNT_ID)

    response = await amojo.signed("POST", f"{PREFIX}/nope/connect", b"{}")
    assert response.status_code == 404
    assert error_body(response) == {
        "status": 0,
        "error_code": 404,
        "error_type": "ORIGIN_NOT_REGISTERED",
        "error_description": "NOT_FOUND",
    }


async def test_scope_calls_need_a_connected_scope(amojo: Amojo) -> None:
    with pytest.raises(NotFoundError):
        await amojo.client.send_message(SCOPE_ID, client_message())

    await amojo.client.connect(ACCOUNT_ID)
    await amojo.client.send_message(SCOPE_ID, client_message())
    await amojo.client.disconnect(ACCOUNT_ID)

    with pytest.raises(NotFoundError):
        await amojo.client.send_message(SCOPE_ID, client_message("msg-2"))
    with pytest.raises(NotFoundError):
        await amojo.client.disconnect(ACCOUNT_ID)
    assert len(amojo.state.messages()) == 1


# -- new_message


async def test_new_message_creates_chat_and_message_with_exact_fields(connected: Amojo) -> None:
    message = client_message()
    sent = await connected.client.send_message(SCOPE_ID, message)

    (chat,) = connected.state.chats(SCOPE_ID)
    (stored,) = connected.state.messages(conversation_id="conv-1")
    # §4 inversion: the response's msgid is Kommo's id, ref_id is ours.
    assert sent.kommo_msgid == stored.kommo_msgid != "msg-1"
    assert sent.conversation_id == chat.kommo_chat_id
    assert stored.response["new_message"]["ref_id"] == "msg-1"
    assert stored.response["new_message"]["receiver_id"] is None
    assert stored.response["new_message"]["sender_id"] == chat.client.id
    assert stored.msgid == "msg-1" and stored.direction == "incoming"
    assert stored.payload == {
        "timestamp": 1_700_000_000,
        "msec_timestamp": 1_700_000_000_123,
        "msgid": "msg-1",
        "conversation_id": "conv-1",
        "sender": {
            "id": "tg-42",
            "name": "Вася клиент",
            "avatar": "https://cdn.test/a.png",
            "profile": {"phone": "+79151112233", "email": "vasya@example.com"},
            "profile_link": "https://t.me/vasya",
        },
        "source": {"external_id": "tg-bot-1"},
        "message": {"type": "text", "text": "Привет / hello"},
        "silent": False,
    }
    assert chat.conversation_id == "conv-1" and chat.source_external_id == "tg-bot-1"
    assert (chat.client.client_id, chat.client.phone, chat.client.email) == (
        "tg-42",
        "+79151112233",
        "vasya@example.com",
    )
    # What went over the wire: the exact compact bytes that were hashed.
    (request,) = connected.state.log.entries(f"{PREFIX}/{SCOPE_ID}")
    assert request.body == encode_body(message.to_json())
    assert b'", "' not in request.body and b'": ' not in request.body  # compact separators
    assert "Привет".encode() in request.body  # UTF-8, not \u escapes


async def test_duplicate_msgid_does_not_double(connected: Amojo) -> None:
    first = await connected.client.send_message(SCOPE_ID, client_message())
    second = await connected.client.send_message(SCOPE_ID, client_message())

    assert first == second
    assert len(connected.state.messages()) == 1
    assert len(connected.state.chats()) == 1
    assert [r.status for r in connected.state.log.entries(f"{PREFIX}/{SCOPE_ID}")] == [200, 200]


async def test_one_chat_per_conversation(connected: Amojo) -> None:
    a1 = await connected.client.send_message(SCOPE_ID, client_message("m1", "conv-a"))
    a2 = await connected.client.send_message(SCOPE_ID, client_message("m2", "conv-a"))
    b1 = await connected.client.send_message(SCOPE_ID, client_message("m3", "conv-b"))

    assert a1.conversation_id == a2.conversation_id != b1.conversation_id
    assert a1.kommo_msgid != a2.kommo_msgid
    assert [m.msgid for m in connected.state.messages(conversation_id="conv-a")] == ["m1", "m2"]
    assert len(connected.state.chats(SCOPE_ID)) == 2


async def test_outgoing_import_with_receiver(connected: Amojo) -> None:
    message = NewMessage(
        msgid="out-1",
        conversation_id="conv-1",
        sender=Participant(id="bot", name="Bot", ref_id="f1910c7f-b1e0-4184-bd09-c7def2a9109a"),
        receiver=Participant(id="tg-42", name="Вася"),
        message=MessageBody(type="text", text="hello from the bot"),
        timestamp_ms=1_700_000_000_000,
        silent=True,
    )
    await connected.client.send_message(SCOPE_ID, message)

    (stored,) = connected.state.messages()
    assert stored.direction == "outgoing"
    assert stored.response["new_message"]["sender_id"] == "f1910c7f-b1e0-4184-bd09-c7def2a9109a"
    assert stored.response["new_message"]["receiver_id"] == connected.state.chats()[0].client.id
    assert stored.payload["silent"] is True


BAD_PAYLOADS = [
    pytest.param({"timestamp": "1700000000"}, "payload.timestamp must be an integer", id="timestamp-string"),
    pytest.param({"msec_timestamp": 1.7e12}, "payload.msec_timestamp must be an integer", id="msec-float"),
    pytest.param({"silent": "false"}, "payload.silent must be a boolean", id="silent-string"),
    pytest.param({"msgid": 17}, "payload.msgid must be a string", id="msgid-int"),
    pytest.param({"conversation_id": ""}, "payload.conversation_id must not be empty", id="conversation-empty"),
    pytest.param({"sender": {"id": "x"}}, "payload.sender.name is required", id="sender-without-name"),
    pytest.param({"receiver": {"id": "x"}}, "payload.receiver.name is required", id="receiver-without-name"),
    pytest.param({"message": {"type": "gif", "text": "x"}}, "payload.message.type must be one of", id="bad-type"),
    pytest.param({"message": {"type": "text"}}, "payload.message.text is required", id="text-without-text"),
    pytest.param(
        {"message": {"type": "file", "media": "https://f.test/a.pdf", "file_size": 3}},
        "payload.message.file_name is required",
        id="file-without-name",
    ),
    pytest.param(
        {"message": {"type": "picture", "media": "https://f.test/a.jpg", "file_name": "a.jpg", "file_size": "3"}},
        "payload.message.file_size must be an integer",
        id="picture-size-string",
    ),
    pytest.param({"message": {"type": "voice"}}, "payload.message.media is required", id="voice-without-media"),
    pytest.param({"message": {"type": "location"}}, "payload.message.location is required", id="no-location"),
    pytest.param(
        {"message": {"type": "location", "location": {"lon": "1", "lat": 2}}},
        "payload.message.location.lon must be a number",
        id="location-string",
    ),
    pytest.param(
        {"message": {"type": "contact", "contact": {"name": "A"}}},
        "payload.message.contact.phone is required",
        id="contact-without-phone",
    ),
    pytest.param({"source": {"external_id": "x" * 41}}, "source.external_id", id="source-too-long"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_PAYLOADS)
async def test_new_message_validation(connected: Amojo, change: dict[str, Any], expected: str) -> None:
    body = client_message().to_json()
    body["payload"].update(change)
    response = await connected.signed("POST", f"{PREFIX}/{SCOPE_ID}", encode_body(body))

    assert response.status_code == 400
    assert expected in error_body(response)["error_description"]
    assert connected.state.messages() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"event_type":"delete_message","payload":{}}', "event_type must be"),
        (b'{"event_type":"new_message"}', "payload is required"),
    ],
)
async def test_malformed_event_bodies(connected: Amojo, body: bytes, expected: str) -> None:
    response = await connected.signed("POST", f"{PREFIX}/{SCOPE_ID}", body)
    assert response.status_code == 400
    assert expected in error_body(response)["error_description"]


async def test_validation_errors_surface_as_bad_request(connected: Amojo) -> None:
    nameless = NewMessage(
        "m1", "conv-1", Participant(id="tg-1"), MessageBody(type="text", text="hi"), 1_700_000_000_000
    )
    with pytest.raises(BadRequestError, match=r"HTTP 400 .*payload\.sender\.name is required"):
        await connected.client.send_message(SCOPE_ID, nameless)

    non_ascii_source = dataclasses.replace(client_message(), source_external_id="канал")
    with pytest.raises(BadRequestError, match="external_id"):
        await connected.client.send_message(SCOPE_ID, non_ascii_source)
    assert connected.state.messages() == []


async def test_edit_message_is_recorded(connected: Amojo) -> None:
    sent = await connected.client.send_message(SCOPE_ID, client_message())

    def edit(msgid: str) -> bytes:
        payload = {
            "timestamp": 1_700_000_001,
            "msec_timestamp": 1_700_000_001_000,
            "msgid": msgid,
            "conversation_id": "conv-1",
            "message": {"type": "text", "text": "edited"},
        }
        return encode_body({"event_type": "edit_message", "payload": payload})

    response = await connected.signed("POST", f"{PREFIX}/{SCOPE_ID}", edit("msg-1"))

    assert response.status_code == 200
    stored = connected.state.message(sent.kommo_msgid)
    assert stored is not None and stored.message["text"] == "edited" and len(stored.edits) == 1
    assert response.json() == {"edit_message": {"msgid": sent.kommo_msgid, "ref_id": "msg-1"}}
    unknown = await connected.signed("POST", f"{PREFIX}/{SCOPE_ID}", edit("never-sent"))
    assert unknown.status_code == 400 and "does not exist" in error_body(unknown)["error_description"]


# -- signatures (§1): everything amojo checks


async def test_wrong_secret_is_rejected(connected: Amojo) -> None:
    impostor = AmojoClient(BASE, CHANNEL_ID, "0" * 40, connected.http)
    with pytest.raises(AuthError, match="ORIGIN_INVALID_SIGNATURE") as caught:
        await impostor.send_message(SCOPE_ID, client_message())

    assert "0" * 40 not in str(caught.value) and SECRET not in str(caught.value)
    assert connected.state.messages() == []
    (request,) = connected.state.log.entries(f"{PREFIX}/{SCOPE_ID}")
    assert request.status == 403


async def test_stale_date_is_rejected(connected: Amojo) -> None:
    stale = AmojoClient(
        BASE, CHANNEL_ID, SECRET, connected.http, clock=lambda: datetime.now(UTC) - timedelta(minutes=16)
    )
    with pytest.raises(AuthError, match="15 minutes"):
        await stale.send_message(SCOPE_ID, client_message())

    recent = AmojoClient(
        BASE, CHANNEL_ID, SECRET, connected.http, clock=lambda: datetime.now(UTC) - timedelta(minutes=14)
    )
    await recent.send_message(SCOPE_ID, client_message())
    assert len(connected.state.messages()) == 1


async def test_body_changed_after_signing_is_rejected(connected: Amojo) -> None:
    body = encode_body(client_message().to_json())
    tampered = body.replace(b"hello", b"HELLO")
    response = await connected.signed("POST", f"{PREFIX}/{SCOPE_ID}", body, send_body=tampered)

    assert response.status_code == 403
    data = error_body(response)
    assert data["error_type"] == "ORIGIN_INVALID_SIGNATURE" and "Content-MD5" in data["error_description"]
    assert connected.state.messages() == []


async def test_body_and_md5_changed_but_not_signature_is_rejected(connected: Amojo) -> None:
    body = encode_body(client_message().to_json())
    tampered = body.replace(b"hello", b"HELLO")
    response = await connected.signed(
        "POST", f"{PREFIX}/{SCOPE_ID}", body, send_body=tampered, override={"Content-MD5": content_md5(tampered)}
    )
    assert response.status_code == 403
    assert "X-Signature" in error_body(response)["error_description"]


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"Content-Type": "application/json; charset=utf-8"}, "Content-Type"),
        ({"Content-Type": "text/plain"}, "Content-Type"),
        ({"Content-MD5": "2FBCB3C652B61E24E004DADDFC73D0CE"}, "Content-MD5"),
        ({"Date": "yesterday"}, "Date"),
        ({"Date": ""}, "Date"),
        ({"X-Signature": ""}, "X-Signature"),
        ({"X-Signature": "81211856ce0c5095f3e1a90c0a38dc9d736cfd55"}, "X-Signature"),
    ],
)
async def test_each_signed_header_is_checked(amojo: Amojo, override: dict[str, str], reason: str) -> None:
    body = encode_body({"account_id": ACCOUNT_ID, "hook_api_version": "v2"})
    response = await amojo.signed("POST", f"{PREFIX}/{CHANNEL_ID}/connect", body, override=override)

    assert response.status_code == 403
    data = error_body(response)
    assert data["error_type"] == "ORIGIN_INVALID_SIGNATURE" and reason in data["error_description"]
    assert amojo.state.connection(SCOPE_ID) is None


async def test_signature_covers_the_path(amojo: Amojo) -> None:
    body = encode_body({"account_id": ACCOUNT_ID, "hook_api_version": "v2"})
    headers = signed_headers(SECRET, "POST", f"{PREFIX}/{CHANNEL_ID}/disconnect", body)
    response = await amojo.http.post(f"{PREFIX}/{CHANNEL_ID}/connect", content=body, headers=headers)
    assert response.status_code == 403


async def test_gmt_date_form_is_accepted_and_far_future_is_not(amojo: Amojo) -> None:
    path = f"{PREFIX}/{CHANNEL_ID}/connect"
    body = encode_body({"account_id": ACCOUNT_ID, "hook_api_version": "v2"})
    now = datetime.now(UTC).replace(microsecond=0)
    gmt = format_datetime(now, usegmt=True)
    assert gmt.endswith("GMT")
    headers = {
        "Date": gmt,
        "Content-Type": "application/json",
        "Content-MD5": content_md5(body),
        "X-Signature": request_signature(SECRET, "POST", content_md5(body), "application/json", gmt, path),
    }
    assert (await amojo.http.post(path, content=body, headers=headers)).status_code == 200

    future = await amojo.signed("POST", path, body, now=now + timedelta(minutes=16))
    assert future.status_code == 403
    assert format_date(now) != gmt


# -- faults


async def test_injected_429_surfaces_retry_after(connected: Amojo) -> None:
    connected.state.faults.add(Fault(path=f"{PREFIX}/{SCOPE_ID}$", status=429, retry_after=7))
    with pytest.raises(RateLimitedError) as caught:
        await connected.client.send_message(SCOPE_ID, client_message())
    assert caught.value.retry_after == 7.0

    (limited,) = connected.state.log.entries(f"{PREFIX}/{SCOPE_ID}")
    assert limited.status == 429
    await connected.client.send_message(SCOPE_ID, client_message())  # the fault was used up
    assert len(connected.state.messages()) == 1


async def test_injected_500_via_control_route_is_retryable(connected: Amojo) -> None:
    created = await connected.http.post("/_emulator/faults", json={"path": "/delivery_status$|/typing$", "status": 500})
    assert created.status_code == 201

    with pytest.raises(RetryableError) as caught:
        await connected.client.typing(SCOPE_ID, "conv-1", "tg-42")
    assert not isinstance(caught.value, RateLimitedError)
    assert "HTTP 500" in str(caught.value)
    await connected.client.typing(SCOPE_ID, "conv-1", "tg-42")
    assert len(connected.state.typing_events()) == 1


async def test_fault_error_body_is_kommo_shaped(connected: Amojo) -> None:
    connected.state.faults.add(Fault(path="/connect$", status=429, retry_after=3))
    response = await connected.signed(
        "POST", f"{PREFIX}/{CHANNEL_ID}/connect", encode_body({"account_id": ACCOUNT_ID, "hook_api_version": "v2"})
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert error_body(response)["error_code"] == 429


# -- chats, statuses, typing, history


async def test_create_chat_is_idempotent(connected: Amojo) -> None:
    user = Participant(id="tg-7", name="Client", phone="79151112233", email="c@example.com")
    first = await connected.client.create_chat(SCOPE_ID, "conv-7", user, source_external_id="tg-bot-1")
    again = await connected.client.create_chat(SCOPE_ID, "conv-7", user)

    assert first == again
    assert (first.phone, first.email) == ("79151112233", "c@example.com")
    (chat,) = connected.state.chats(SCOPE_ID)
    assert chat.kommo_chat_id == first.chat_id and chat.client.id == first.user_id
    sent = await connected.client.send_message(SCOPE_ID, client_message("m-7", "conv-7"))
    assert sent.conversation_id == first.chat_id


async def test_create_chat_requires_user_name(connected: Amojo) -> None:
    response = await connected.signed(
        "POST", f"{PREFIX}/{SCOPE_ID}/chats", encode_body({"conversation_id": "c", "user": {"id": "u"}})
    )
    assert response.status_code == 400 and "user.name" in error_body(response)["error_description"]


async def test_delivery_statuses_are_recorded_in_order(connected: Amojo) -> None:
    await connected.client.send_message(SCOPE_ID, client_message())
    hook = await connected.state.send_manager_message(SCOPE_ID, "conv-1", "Hello from the manager")
    assert hook.ok

    await connected.client.delivery_status(SCOPE_ID, hook.kommo_msgid, 1)
    await connected.client.delivery_status(SCOPE_ID, hook.kommo_msgid, 2)
    await connected.client.delivery_status(SCOPE_ID, hook.kommo_msgid, -1, error_code=905, error="blocked")

    statuses = connected.state.statuses(hook.kommo_msgid)
    assert [(s.status, s.error_code, s.error) for s in statuses] == [(1, 0, ""), (2, 0, ""), (-1, 905, "blocked")]
    assert statuses[0].body == {"msgid": hook.kommo_msgid, "delivery_status": 1}
    assert statuses[2].body == {"msgid": hook.kommo_msgid, "delivery_status": -1, "error_code": 905, "error": "blocked"}
    assert {s.key for s in statuses} == {"delivery_status"}


async def test_delivery_status_accepts_status_code_key(connected: Amojo) -> None:
    await connected.client.send_message(SCOPE_ID, client_message())
    hook = await connected.state.send_manager_message(SCOPE_ID, "conv-1", "hi")
    path = f"{PREFIX}/{SCOPE_ID}/{hook.kommo_msgid}/delivery_status"
    response = await connected.signed("POST", path, encode_body({"status_code": -1, "error_code": 901, "error": ""}))

    assert response.status_code == 200
    (status,) = connected.state.statuses(hook.kommo_msgid)
    assert (status.status, status.error_code, status.key) == (-1, 901, "status_code")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"delivery_status": 3}, "delivery status must be"),
        ({"delivery_status": "1"}, "must be an integer"),
        ({"delivery_status": True}, "must be an integer"),
        ({}, "status_code is required"),
        ({"delivery_status": -1}, "error_code 901-905 is required"),
        ({"delivery_status": -1, "error_code": 905}, "error text is required"),
        ({"msgid": "another", "delivery_status": 1}, "differs"),
    ],
)
async def test_delivery_status_validation(connected: Amojo, body: dict[str, Any], expected: str) -> None:
    await connected.client.send_message(SCOPE_ID, client_message())
    hook = await connected.state.send_manager_message(SCOPE_ID, "conv-1", "hi")
    response = await connected.signed(
        "POST", f"{PREFIX}/{SCOPE_ID}/{hook.kommo_msgid}/delivery_status", encode_body(body)
    )
    assert response.status_code == 400
    assert expected in error_body(response)["error_description"]
    assert connected.state.statuses(hook.kommo_msgid) == []


async def test_delivery_status_for_unknown_message_is_not_found(connected: Amojo) -> None:
    with pytest.raises(NotFoundError, match="message not found"):
        await connected.client.delivery_status(SCOPE_ID, "079e44fb-fc22-476b-9e8a-421b688ec53b", 1)


async def test_typing_answers_204_and_is_recorded(connected: Amojo) -> None:
    await connected.client.typing(SCOPE_ID, "conv-1", "tg-42", duration_ms=3000)
    (typing,) = connected.state.typing_events()
    assert (typing.conversation_id, typing.sender_id, typing.duration_ms) == ("conv-1", "tg-42", 3000)
    assert connected.state.log.entries("/typing")[0].status == 204


async def test_history_is_newest_first_and_paged(connected: Amojo) -> None:
    for i in range(3):
        await connected.client.send_message(SCOPE_ID, client_message(f"m{i}", at_ms=1_700_000_000_000 + i * 1000))
    chat_id = connected.state.chats(SCOPE_ID)[0].kommo_chat_id

    page = await connected.client.history(SCOPE_ID, chat_id, limit=2)
    assert [m["message"]["client_id"] for m in page] == ["m2", "m1"]
    assert page[0]["msec_timestamp"] == 1_700_000_002_000 and page[0]["timestamp"] == 1_700_000_002
    assert page[0]["sender"]["client_id"] == "tg-42"
    rest = await connected.client.history(SCOPE_ID, chat_id, offset=2, limit=2)
    assert [m["message"]["client_id"] for m in rest] == ["m0"]
    assert await connected.client.history(SCOPE_ID, "no-such-chat") == []
    assert connected.state.log.entries("/history")[-1].status == 204

    default_limit = await connected.signed("GET", f"{PREFIX}/{SCOPE_ID}/chats/{chat_id}/history", b"")
    assert default_limit.status_code == 200 and len(default_limit.json()["messages"]) == 3
    over = await connected.http.get(
        f"{PREFIX}/{SCOPE_ID}/chats/{chat_id}/history?limit=51",
        headers=signed_headers(SECRET, "GET", f"{PREFIX}/{SCOPE_ID}/chats/{chat_id}/history", b""),
    )
    assert over.status_code == 400


# -- control routes


async def test_control_routes_expose_state(connected: Amojo) -> None:
    sent = await connected.client.send_message(SCOPE_ID, client_message())
    hook = await connected.state.send_manager_message(SCOPE_ID, "conv-1", "reply")
    await connected.client.delivery_status(SCOPE_ID, hook.kommo_msgid, 2)

    chats = (await connected.http.get("/_emulator/chats")).json()["chats"]
    assert [c["conversation_id"] for c in chats] == ["conv-1"]
    messages = (await connected.http.get("/_emulator/messages", params={"conversation_id": "conv-1"})).json()
    assert [m["kommo_msgid"] for m in messages["messages"]] == [sent.kommo_msgid, hook.kommo_msgid]
    assert messages["messages"][0]["payload"]["message"] == {"type": "text", "text": "Привет / hello"}
    assert messages["messages"][1]["direction"] == "manager"
    statuses = (await connected.http.get("/_emulator/statuses", params={"msgid": hook.kommo_msgid})).json()
    assert [s["status"] for s in statuses["statuses"]] == [2]
    hooks = (await connected.http.get("/_emulator/hooks")).json()["hooks"]
    assert hooks[0]["status_code"] == 200 and hooks[0]["body"]["message"]["message"]["text"] == "reply"
    recorded = (await connected.http.get("/_emulator/requests", params={"path_contains": "/delivery_status"})).json()
    assert recorded["requests"][0]["body"] == {"msgid": hook.kommo_msgid, "delivery_status": 2}


async def test_channels_can_be_registered_over_http(amojo: Amojo) -> None:
    other_id, other_secret = "9f1c0e4e-2222-4a4a-8b8b-000000000001", "a" * 40
    created = await amojo.http.post(
        "/_emulator/channels",
        json={"channel_id": other_id, "secret": other_secret, "hook_url": "http://x.test/:scope_id", "code": "c"},
    )
    assert created.status_code == 201
    listed = (await amojo.http.get("/_emulator/channels")).json()["channels"]
    assert {c["channel_id"] for c in listed} == {CHANNEL_ID, other_id}
    assert other_secret not in json.dumps(listed) and SECRET not in json.dumps(listed)

    client = AmojoClient(BASE, other_id, other_secret, amojo.http)
    assert (await client.connect(ACCOUNT_ID)).scope_id == f"{other_id}_{ACCOUNT_ID}"
    bad = await amojo.http.post("/_emulator/channels", json={"channel_id": "x_y", "secret": "s"})
    assert bad.status_code == 400


async def test_manager_messages_control_route(connected: Amojo) -> None:
    await connected.client.send_message(SCOPE_ID, client_message())
    response = await connected.http.post(
        "/_emulator/manager_messages", json={"scope_id": SCOPE_ID, "conversation_id": "conv-1", "text": "hi there"}
    )
    assert response.status_code == 200
    hook = response.json()["hook"]
    assert hook["ok"] is True and hook["url"] == f"http://bridge.test/hooks/kommo/{SCOPE_ID}"
    (received,) = connected.hooks_received
    assert json.loads(received.content)["message"]["message"]["id"] == hook["kommo_msgid"]

    unknown = await connected.http.post(
        "/_emulator/manager_messages", json={"scope_id": SCOPE_ID, "conversation_id": "nope", "text": "x"}
    )
    assert unknown.status_code == 404
