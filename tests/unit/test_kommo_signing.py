"""amojo request signing against Kommo's official vectors (reference §1) and webhook signatures (§9)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from libs.errors import BadRequestError
from libs.kommo.client import AmojoClient
from libs.kommo.signing import (
    EMPTY_BODY_MD5,
    content_md5,
    format_date,
    hook_signature,
    parse_date,
    request_signature,
    signed_headers,
    verify_hook_signature,
)

SECRET = "f2d7f8704eff95087ed45b23ba99c0b5aac8278e"
CHANNEL_ID = "344a5002-f8ca-454d-af3d-396180102ac7"
ACCOUNT_ID = "52e591f7-c98f-4255-8495-827210138c81"
SCOPE_PATH = f"/v2/origin/custom/{CHANNEL_ID}_{ACCOUNT_ID}"

# Vector 4's body as the RU step-by-step page (biradrags/amo-docs, chats/chat-step-by-step.md) builds it:
# PHP json_encode of the example array, so `/` is escaped as `\/` and Cyrillic as lowercase `\uXXXX`,
# with the timestamps shown in that page's request body.
VECTOR_4_BODY = (
    b'{"event_type":"new_message","payload":{"timestamp":1639660529,"msec_timestamp":1639660529379,'
    b'"msgid":"my_int-5f2836a8ca481","conversation_id":"my_int-d5a421f7f218","sender":{'
    b'"id":"my_int-1376265f-86df-4c49-a0c3-a4816df41af8","avatar":"https:\\/\\/images.pexels.com\\/photos'
    b'\\/10050979\\/pexels-photo-10050979.jpeg?auto=compress&cs=tinysrgb&dpr=2&w=500","profile":{'
    b'"phone":"+79151112233","email":"example.client@example.com"},"profile_link":"https:\\/\\/example.com'
    b'\\/profile\\/example.client","name":"\\u0412\\u0430\\u0441\\u044f \\u043a\\u043b\\u0438\\u0435\\u043d'
    b'\\u0442"},"message":{"type":"text","text":"\\u0421\\u043e\\u043e\\u0431\\u0449\\u0435\\u043d\\u0438'
    b'\\u0435 \\u043e\\u0442 \\u043a\\u043b\\u0438\\u0435\\u043d\\u0442\\u0430"},"silent":false}}'
)

VECTORS = [
    pytest.param(
        "POST",
        f"/v2/origin/custom/{CHANNEL_ID}/connect",
        "Wed, 15 Dec 2021 23:12:55 +0000",
        b'{"account_id":"52e591f7-c98f-4255-8495-827210138c81","title":"ChatsIntegration","hook_api_version":"v2"}',
        "2fbcb3c652b61e24e004daddfc73d0ce",
        "81211856ce0c5095f3e1a90c0a38dc9d736cfd55",
        id="1-connect",
    ),
    pytest.param(
        "DELETE",
        f"/v2/origin/custom/{CHANNEL_ID}/disconnect",
        "Wed, 15 Dec 2021 23:59:28 +0000",
        b'{"account_id":"52e591f7-c98f-4255-8495-827210138c81"}',
        "271fa2e4fb0ff84a3ef9689027bd1f38",
        "e1678e3b6aa674b5127f4feb448e6200ce0bfc72",
        id="2-disconnect",
    ),
    pytest.param(
        "POST",
        f"{SCOPE_PATH}/079e44fb-fc22-476b-9e8a-421b688ec53b/delivery_status",
        "Thu, 16 Dec 2021 12:58:40 +0000",
        b'{"msgid":"079e44fb-fc22-476b-9e8a-421b688ec53b","delivery_status":2,"error_code":905,"error":"Error text"}',
        "a0bbbac729c6341f0a521e2db7a8a236",
        "ca51f810785031385a801f41103244713c1a2352",
        id="3-delivery-status",
    ),
    pytest.param(
        "POST",
        SCOPE_PATH,
        "Thu, 16 Dec 2021 13:15:29 +0000",
        VECTOR_4_BODY,
        "223ef85def871bc7cb58aa6f02f0a26e",
        "29b49e9eaf03f13a66ecaff315f2855b31b25eee",
        id="4-new-message",
    ),
]


@pytest.mark.parametrize(("method", "path", "date", "body", "md5", "signature"), VECTORS)
def test_official_vectors(method: str, path: str, date: str, body: bytes, md5: str, signature: str) -> None:
    assert content_md5(body) == md5
    assert request_signature(SECRET, method, md5, "application/json", date, path) == signature


@pytest.mark.parametrize(("method", "path", "date", "body", "md5", "signature"), VECTORS)
def test_signed_headers_reproduce_vectors(
    method: str, path: str, date: str, body: bytes, md5: str, signature: str
) -> None:
    headers = signed_headers(SECRET, method, path, body, now=parse_date(date))
    assert headers == {
        "Date": date,
        "Content-Type": "application/json",
        "Content-MD5": md5,
        "X-Signature": signature,
    }


def test_method_is_upper_cased_and_path_matters() -> None:
    args = ("2fbcb3c652b61e24e004daddfc73d0ce", "application/json", "Wed, 15 Dec 2021 23:12:55 +0000")
    path = f"/v2/origin/custom/{CHANNEL_ID}/connect"
    assert request_signature(SECRET, "post", *args, path) == "81211856ce0c5095f3e1a90c0a38dc9d736cfd55"
    assert request_signature(SECRET, "POST", *args, path + "?x=1") != "81211856ce0c5095f3e1a90c0a38dc9d736cfd55"


def test_md5_is_lowercase_hex_of_exact_bytes() -> None:
    assert content_md5(b"") == EMPTY_BODY_MD5 == "d41d8cd98f00b204e9800998ecf8427e"
    assert content_md5(b"{}") != content_md5(b"{}\n")
    assert content_md5(b"{}") == content_md5(b"{}").lower()


def test_format_date_is_rfc2822_with_numeric_utc_offset() -> None:
    assert format_date(datetime(2021, 12, 16, 13, 15, 29, 999_000, tzinfo=UTC)) == "Thu, 16 Dec 2021 13:15:29 +0000"
    # Aware non-UTC times are converted; naive ones are taken as UTC.
    plus_three = timezone(timedelta(hours=3))
    assert format_date(datetime(2021, 12, 16, 16, 15, 29, tzinfo=plus_three)) == "Thu, 16 Dec 2021 13:15:29 +0000"
    assert format_date(datetime(2021, 12, 16, 13, 15, 29)) == "Thu, 16 Dec 2021 13:15:29 +0000"


@pytest.mark.parametrize(
    "value",
    ["Thu, 16 Dec 2021 13:15:29 +0000", "Thu, 16 Dec 2021 13:15:29 GMT", "Thu, 16 Dec 2021 16:15:29 +0300"],
)
def test_parse_date_accepts_rfc2822_and_rfc1123(value: str) -> None:
    assert parse_date(value) == datetime(2021, 12, 16, 13, 15, 29, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "yesterday", "2021-12-16T13:15:29Z"])
def test_parse_date_rejects_garbage(value: str) -> None:
    with pytest.raises(BadRequestError):
        parse_date(value)


def test_format_and_parse_round_trip() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_date(format_date(moment)) == moment


# -- the client signs exactly what it sends


def _fixed(date: str) -> datetime:
    return parse_date(date)


async def test_client_connect_sends_official_vector_1_byte_for_byte() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"account_id": ACCOUNT_ID, "scope_id": f"{CHANNEL_ID}_{ACCOUNT_ID}"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = AmojoClient(
            "https://amojo.kommo.com", CHANNEL_ID, SECRET, http, clock=lambda: _fixed("Wed, 15 Dec 2021 23:12:55 +0000")
        )
        result = await client.connect(ACCOUNT_ID, "ChatsIntegration")

    assert result.scope_id == f"{CHANNEL_ID}_{ACCOUNT_ID}"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"https://amojo.kommo.com/v2/origin/custom/{CHANNEL_ID}/connect"
    assert request.content == (
        b'{"account_id":"52e591f7-c98f-4255-8495-827210138c81","title":"ChatsIntegration","hook_api_version":"v2"}'
    )
    assert request.headers["Date"] == "Wed, 15 Dec 2021 23:12:55 +0000"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Content-MD5"] == "2fbcb3c652b61e24e004daddfc73d0ce"
    assert request.headers["X-Signature"] == "81211856ce0c5095f3e1a90c0a38dc9d736cfd55"


async def test_client_disconnect_sends_official_vector_2_byte_for_byte() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = AmojoClient(
            "https://amojo.kommo.com/",
            CHANNEL_ID,
            SECRET,
            http,
            clock=lambda: _fixed("Wed, 15 Dec 2021 23:59:28 +0000"),
        )
        await client.disconnect(ACCOUNT_ID)

    (request,) = seen
    assert request.method == "DELETE"
    assert request.url.path == f"/v2/origin/custom/{CHANNEL_ID}/disconnect"
    assert request.content == b'{"account_id":"52e591f7-c98f-4255-8495-827210138c81"}'
    assert request.headers["Content-MD5"] == "271fa2e4fb0ff84a3ef9689027bd1f38"
    assert request.headers["X-Signature"] == "e1678e3b6aa674b5127f4feb448e6200ce0bfc72"


async def test_client_signs_base_path_prefix_and_excludes_query() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    date = "Thu, 16 Dec 2021 13:15:29 +0000"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = AmojoClient("http://proxy.test/amojo/", CHANNEL_ID, SECRET, http, clock=lambda: _fixed(date))
        assert await client.history(f"{CHANNEL_ID}_{ACCOUNT_ID}", "chat-1", offset=5, limit=10) == []

    (request,) = seen
    path = f"/amojo/v2/origin/custom/{CHANNEL_ID}_{ACCOUNT_ID}/chats/chat-1/history"
    assert request.method == "GET"
    assert request.url.path == path
    assert request.url.params["offset"] == "5" and request.url.params["limit"] == "10"
    assert request.content == b""
    assert request.headers["Content-MD5"] == EMPTY_BODY_MD5
    assert request.headers["X-Signature"] == request_signature(
        SECRET, "GET", EMPTY_BODY_MD5, "application/json", date, path
    )


# -- webhook signatures (§9)

HOOK_BODY = b'{"account_id":"52e591f7-c98f-4255-8495-827210138c81","time":1639572261}'


def test_hook_signature_is_hmac_sha1_of_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), HOOK_BODY, hashlib.sha1).hexdigest()
    assert hook_signature(SECRET, HOOK_BODY) == expected
    assert len(expected) == 40 and expected == expected.lower()


def test_verify_hook_signature() -> None:
    good = hook_signature(SECRET, HOOK_BODY)
    assert verify_hook_signature(SECRET, HOOK_BODY, good)
    assert verify_hook_signature(SECRET, HOOK_BODY, good.upper())  # hex case is not significant
    assert not verify_hook_signature(SECRET, HOOK_BODY + b"\n", good)  # the exact bytes are signed
    assert not verify_hook_signature("0" * 40, HOOK_BODY, good)
    assert not verify_hook_signature(SECRET, HOOK_BODY, "")
    assert not verify_hook_signature("", HOOK_BODY, good)
    assert not verify_hook_signature(SECRET, HOOK_BODY, "not hex at all ✓")
