"""AmojoClient request shapes and its one failure mapping, with transports that fail on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from libs.kommo.client import AmojoClient
from libs.kommo.payloads import MessageBody, NewMessage, Participant

SECRET = "5a44c5dff55f3c15a4cce8d7c4cc27e207c7e189"
CHANNEL_ID = "f90ba33d-c9d9-44da-b76c-c349b0ecbe41"
SCOPE_ID = f"{CHANNEL_ID}_af9945ff-1490-4cad-807d-945c15d88bec"

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler) -> tuple[AmojoClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return AmojoClient("https://amojo.kommo.com", CHANNEL_ID, SECRET, http), seen


def message() -> NewMessage:
    return NewMessage("ours-1", "conv-1", Participant("u-1", "Client"), MessageBody("text", "hi"), 1_700_000_000_000)


def raiser(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


# -- failure mapping


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("peer closed"),
    ],
)
async def test_transport_failures_are_retryable(exc: Exception) -> None:
    client, _ = make_client(raiser(exc))
    with pytest.raises(RetryableError) as caught:
        await client.send_message(SCOPE_ID, message())
    assert not isinstance(caught.value, RateLimitedError)
    assert caught.value.__cause__ is None or caught.value.__cause__ is exc
    assert "send_message" in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "12"}, {"status": 0}, 12.0),
        ({}, {"title": "Too Many Requests", "status": 429, "retry_after": 300}, 300.0),
        ({}, None, 1.0),
        ({"Retry-After": "soon"}, None, 1.0),
    ],
)
async def test_429_is_rate_limited_with_retry_after(
    headers: dict[str, str], body: dict[str, Any] | None, expected: float
) -> None:
    client, _ = make_client(answer(429, body, headers))
    with pytest.raises(RateLimitedError) as caught:
        await client.typing(SCOPE_ID, "conv-1", "u-1")
    assert caught.value.retry_after == expected


async def test_429_retry_after_as_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    client, _ = make_client(answer(429, None, {"Retry-After": later}))
    with pytest.raises(RateLimitedError) as caught:
        await client.typing(SCOPE_ID, "conv-1", "u-1")
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (500, None, RetryableError, "HTTP 500"),
        (502, {"status": 0}, RetryableError, "HTTP 502"),
        (503, None, RetryableError, "HTTP 503"),
        (
            403,
            {"status": 0, "error_code": 403, "error_type": "ORIGIN_INVALID_SIGNATURE", "error_description": "invalid"},
            AuthError,
            "ORIGIN_INVALID_SIGNATURE",
        ),
        (
            404,
            {"status": 0, "error_code": 404, "error_type": "ORIGIN_NOT_REGISTERED", "error_description": "NOT_FOUND"},
            NotFoundError,
            "ORIGIN_NOT_REGISTERED NOT_FOUND",
        ),
        (
            400,
            {"status": 0, "error_code": 400, "error_type": "x", "error_description": "payload.msgid is required"},
            BadRequestError,
            "payload.msgid is required",
        ),
        (422, {"detail": "nope"}, PermanentError, "nope"),
    ],
)
async def test_status_mapping(status: int, body: Any, error: type[BridgeError], text: str) -> None:
    client, _ = make_client(answer(status, body))
    with pytest.raises(error) as caught:
        await client.send_message(SCOPE_ID, message())
    assert text in str(caught.value)
    if status >= 500:
        assert not isinstance(caught.value, RateLimitedError)


async def test_secret_never_appears_in_errors_or_repr() -> None:
    echo_secret = {"error_description": "nothing to see"}
    for handler in (
        raiser(httpx.ConnectError("down")),
        answer(403, echo_secret),
        answer(500),
        answer(400, echo_secret),
    ):
        client, _ = make_client(handler)
        with pytest.raises(BridgeError) as caught:
            await client.connect("acc")
        assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert SECRET not in repr(client)


async def test_non_json_success_is_retryable() -> None:
    client, _ = make_client(lambda request: httpx.Response(200, content=b"<html>proxy</html>"))
    with pytest.raises(RetryableError, match="non-JSON"):
        await client.send_message(SCOPE_ID, message())


# -- request and response shapes


async def test_send_message_reads_kommo_id_from_msgid_not_ref_id() -> None:
    client, seen = make_client(answer(200, {"new_message": {"msgid": "kommo-1", "ref_id": "ours-1"}}))
    sent = await client.send_message(SCOPE_ID, message())

    assert (sent.kommo_msgid, sent.conversation_id) == ("kommo-1", "")
    (request,) = seen
    assert request.url.path == f"/v2/origin/custom/{SCOPE_ID}"
    assert json.loads(request.content)["payload"]["msgid"] == "ours-1"


async def test_send_message_without_kommo_id_is_retryable() -> None:
    client, _ = make_client(answer(200, {"new_message": {"ref_id": "ours-1"}}))
    with pytest.raises(RetryableError, match="without msgid"):
        await client.send_message(SCOPE_ID, message())


@pytest.mark.parametrize(
    "user",
    [
        {"id": "k-user", "client_id": "u-1", "name": "C", "phone": "79151112233", "email": "c@x.test"},
        {"id": "k-user", "client_id": "u-1", "name": "C", "profile": {"phone": "79151112233", "email": "c@x.test"}},
    ],
    ids=["flat", "nested-profile"],
)
async def test_create_chat_tolerates_flat_and_nested_profile(user: dict[str, Any]) -> None:
    client, seen = make_client(answer(200, {"id": "k-chat", "user": user}))
    chat = await client.create_chat(
        SCOPE_ID, "conv-1", Participant("u-1", "C", phone="79151112233", email="c@x.test"), "src-1"
    )

    assert (chat.chat_id, chat.user_id, chat.phone, chat.email) == ("k-chat", "k-user", "79151112233", "c@x.test")
    assert json.loads(seen[0].content) == {
        "conversation_id": "conv-1",
        "source": {"external_id": "src-1"},
        "user": {"id": "u-1", "name": "C", "profile": {"phone": "79151112233", "email": "c@x.test"}},
    }


async def test_delivery_status_bodies() -> None:
    client, seen = make_client(answer(200))
    await client.delivery_status(SCOPE_ID, "k-msg", 1)
    await client.delivery_status(SCOPE_ID, "k-msg", 2)
    await client.delivery_status(SCOPE_ID, "k-msg", -1, error_code=905, error="Bot was blocked")
    await client.delivery_status(SCOPE_ID, "k-msg", -1, error_code=901)

    assert [r.url.path for r in seen] == [f"/v2/origin/custom/{SCOPE_ID}/k-msg/delivery_status"] * 4
    assert [r.content for r in seen] == [
        b'{"msgid":"k-msg","delivery_status":1}',
        b'{"msgid":"k-msg","delivery_status":2}',
        b'{"msgid":"k-msg","delivery_status":-1,"error_code":905,"error":"Bot was blocked"}',
        b'{"msgid":"k-msg","delivery_status":-1,"error_code":901,"error":""}',
    ]


@pytest.mark.parametrize(
    ("status", "code", "text"),
    [(0, 0, ""), (3, 0, ""), (-1, 0, ""), (-1, 999, "x"), (-1, 905, "")],
)
async def test_invalid_delivery_status_is_refused_before_sending(status: int, code: int, text: str) -> None:
    client, seen = make_client(answer(200))
    with pytest.raises(BadRequestError):
        await client.delivery_status(SCOPE_ID, "k-msg", status, error_code=code, error=text)
    assert seen == []


async def test_typing_body() -> None:
    client, seen = make_client(answer(204))
    await client.typing(SCOPE_ID, "conv-1", "u-1")
    await client.typing(SCOPE_ID, "conv-1", "u-1", duration_ms=2500)
    assert [json.loads(r.content) for r in seen] == [
        {"conversation_id": "conv-1", "sender": {"id": "u-1"}},
        {"conversation_id": "conv-1", "sender": {"id": "u-1"}, "duration_ms": 2500},
    ]


async def test_path_segments_are_escaped_and_signed_as_sent() -> None:
    client, seen = make_client(answer(200))
    await client.delivery_status(SCOPE_ID, "id/with?odd#chars", 1)
    (request,) = seen
    assert request.url.raw_path.decode() == f"/v2/origin/custom/{SCOPE_ID}/id%2Fwith%3Fodd%23chars/delivery_status"


def test_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        AmojoClient(
            "amojo.kommo.com", CHANNEL_ID, SECRET, httpx.AsyncClient(transport=httpx.MockTransport(answer(200)))
        )
