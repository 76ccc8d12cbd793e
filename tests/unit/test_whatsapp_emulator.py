"""The WhatsApp Cloud API emulator holds to what Meta does (reference/messenger-apis.md §2, §5): Graph's
error envelope under any version, 80 messages/s per number and the pair rate, streamed media upload,
templates with paging and review, interactive limits, and webhooks retried until the bridge takes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.errors import PermanentError, RateLimitedError
from libs.messengers.whatsapp import cloud_api
from libs.messengers.whatsapp.cloud_api import CloudCredentials, GraphClient
from libs.messengers.whatsapp.throughput import SendControl, SendLimits
from tests.support import wait_for
from tests.unit.whatsapp_support import ANN_WA_ID, World, whatsapp_world

MB = 2**20


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with whatsapp_world() as world:
        yield world


def graph(world: World) -> GraphClient:
    return GraphClient(world.graph_url, CloudCredentials.parse(world.credential), world.http)


def token(world: World) -> str:
    return world.credential.split(":", 2)[2]


def text_to(wa_id: str, body: str = "hi") -> dict[str, Any]:
    return {"to": wa_id, "type": "text", "text": {"body": body}}


# ---------------------------------------------------------------------------------------------------------
# Graph's surface


async def test_any_version_prefix_and_graphs_error_envelope(world: World) -> None:
    headers = {"Authorization": f"Bearer {token(world)}"}
    base = world.wa_url
    for version in ("v19.0", "v23.0", "v26.0"):
        number = (await world.http.get(f"{base}/{version}/{world.phone_number_id}", headers=headers)).json()
        assert number["id"] == world.phone_number_id and number["platform_type"] == "CLOUD_API"
    unknown = await world.http.get(f"{base}/v23.0/123456789", headers=headers)
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")
    assert error["fbtrace_id"]
    missing = await world.http.get(f"{base}/v23.0/{world.phone_number_id}")
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, 104)
    wrong = await world.http.get(f"{base}/v23.0/{world.phone_number_id}", headers={"Authorization": "Bearer EAAnope"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, 190)
    no_product = await world.http.post(
        f"{base}/v23.0/{world.phone_number_id}/messages", headers=headers, json=text_to(ANN_WA_ID)
    )
    assert no_product.json()["error"]["message"] == "(#100) Invalid parameter"
    answer = await world.http.post(
        f"{base}/v23.0/{world.phone_number_id}/messages",
        headers=headers,
        json={"messaging_product": "whatsapp", **text_to(ANN_WA_ID)},
    )
    assert answer.json()["contacts"] == [{"input": ANN_WA_ID, "wa_id": ANN_WA_ID}]
    assert answer.json()["messages"][0]["message_status"] == "accepted"


# ---------------------------------------------------------------------------------------------------------
# Sending limits


def test_a_number_sends_80_messages_a_second_and_a_user_gets_a_burst_then_one_per_6_s() -> None:
    now = [1000.0]
    control = SendControl(SendLimits(), clock=lambda: now[0])
    admitted = [control.admit("number", f"user{i}") for i in range(81)]
    assert admitted[:80] == [None] * 80 and admitted[80] == "throughput"
    now[0] += 0.5
    assert [control.admit("number", f"later{i}") for i in range(41)].count(None) == 40
    now[0] += 10
    pair = [control.admit("number", "ann") for _ in range(46)]
    assert pair[:45] == [None] * 45 and pair[45] == "pair_rate"
    now[0] += 6
    assert control.admit("number", "ann") is None
    assert control.admit("number", "ann") == "pair_rate"
    assert control.refusals() == {"number": {"throughput": 2, "pair_rate": 2}}  # every refusal counted


async def test_over_the_throughput_is_refused_with_130429_and_paced_retries_lose_nothing(world: World) -> None:
    # The exact 80/s is shown above on a clock the test moves; over a socket, a lower rate shows the same
    # whatever the speed of the machine.
    await world.control("PUT", "limits", json={"per_number_per_s": 20, "pair_burst": 1000})
    client = graph(world)
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(client.send(text_to(ANN_WA_ID, f"m{i}")) for i in range(60)), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    refused = [o for o in outcomes if isinstance(o, Exception)]
    accepted = [o for o in outcomes if isinstance(o, str)]
    assert all(isinstance(r, RateLimitedError) and r.retry_after == 1.0 and "130429" in str(r) for r in refused)
    assert refused, "60 sends at once must meet the limit"
    assert len(accepted) <= 20 + 20 * elapsed + 1
    # Waiting out what Graph says, every refused message goes.
    pending = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    pause = max(r.retry_after or 0.0 for r in refused if isinstance(r, RateLimitedError))
    while pending:
        await asyncio.sleep(pause)
        again = await asyncio.gather(
            *(client.send(text_to(ANN_WA_ID, f"m{i}")) for i in pending), return_exceptions=True
        )
        pending = [i for i, o in zip(pending, again, strict=True) if isinstance(o, Exception)]
    assert sorted(m.body["text"]["body"] for m in world.wa.sent) == sorted(f"m{i}" for i in range(60))


async def test_the_pair_rate_limit_is_131056(world: World) -> None:
    await world.control("PUT", "limits", json={"pair_burst": 3})
    client = graph(world)
    for _ in range(3):
        await client.send(text_to(ANN_WA_ID))
    with pytest.raises(RateLimitedError) as limited:
        await client.send(text_to(ANN_WA_ID))
    assert "131056" in str(limited.value) and limited.value.retry_after == 6.0
    refused = (await world.control("GET", "limits"))["refused"]
    assert refused == {world.phone_number_id: {"throughput": 0, "pair_rate": 1}}


# ---------------------------------------------------------------------------------------------------------
# Media


async def _chunks(size: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        chunk = bytes((sent // piece) % 256 for _ in range(min(piece, size - sent)))
        sent += len(chunk)
        yield chunk


async def test_an_upload_streams_with_or_without_a_length(world: World) -> None:
    client = graph(world)
    for announced in (True, False):
        size = 3 * MB + 17
        media_id = await client.upload("big.bin", "application/pdf", size if announced else None, _chunks(size))
        stored = world.wa.media.get(media_id)
        assert stored is not None and (stored.size, stored.mime_type, stored.file_name) == (
            size,
            "application/pdf",
            "big.bin",
        )
    upload = world.wa.log.entries("/media")[-1]
    assert upload.body == b""  # streamed through, never held whole by the recorder


async def test_an_upload_needs_its_fields_and_a_message_checks_sizes_per_type(world: World) -> None:
    headers = {"Authorization": f"Bearer {token(world)}"}
    refused = await world.http.post(
        f"{world.graph_url}/{world.phone_number_id}/media",
        headers=headers,
        files={"file": ("a.jpg", b"\xff\xd8", "image/jpeg")},
        data={"type": "image/jpeg"},
    )
    assert refused.json()["error"]["code"] == 100
    client = graph(world)
    big = await client.upload("big.jpg", "image/jpeg", 6 * MB, _chunks(6 * MB))
    with pytest.raises(PermanentError, match="131009"):  # an image message carries at most 5 MB
        await client.send({"to": ANN_WA_ID, "type": "image", "image": {"id": big}})
    assert await client.send({"to": ANN_WA_ID, "type": "document", "document": {"id": big, "filename": "big.jpg"}})
    with pytest.raises(PermanentError, match="131009"):
        await client.send({"to": ANN_WA_ID, "type": "sticker", "sticker": {"id": big}})
    with pytest.raises(PermanentError, match="caption"):
        await client.send(
            {"to": ANN_WA_ID, "type": "audio", "audio": {"link": "https://x.example/a.mp3", "caption": "no"}}
        )


# ---------------------------------------------------------------------------------------------------------
# Templates


COMPONENTS = [
    {"type": "HEADER", "format": "IMAGE"},
    {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready."},
    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Thanks"}]},
]


async def test_templates_are_created_pending_listed_in_pages_and_reviewed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = graph(world)
    created = [
        await client.create_template(
            {"name": f"order_ready_{i}", "language": "en_US", "category": "UTILITY", "components": COMPONENTS}
        )
        for i in range(3)
    ]
    assert all(t["status"] == "PENDING" and t["category"] == "UTILITY" for t in created)
    with pytest.raises(PermanentError, match="already exists"):
        await client.create_template(
            {"name": "order_ready_0", "language": "en_US", "category": "UTILITY", "components": COMPONENTS}
        )
    headers = {"Authorization": f"Bearer {token(world)}"}
    page = (
        await world.http.get(
            f"{world.graph_url}/{world.waba_id}/message_templates", params={"limit": "2"}, headers=headers
        )
    ).json()
    assert len(page["data"]) == 2 and page["paging"]["next"] and page["paging"]["cursors"]["after"]
    monkeypatch.setattr(cloud_api, "TEMPLATE_PAGE_SIZE", 2)
    listed = await client.templates()
    assert [t["name"] for t in listed] == ["order_ready_0", "order_ready_1", "order_ready_2"]
    assert set(listed[0]) == {"id", "name", "status", "category", "language", "components", "parameter_format"}
    # Template reviews go to the app's own callback URL, signed like every webhook.
    await world.control("PUT", "app", json={"callback_url": world.receiver_url})
    review = await world.control("POST", f"templates/{created[0]['id']}/review", json={"event": "APPROVED"})
    assert review["delivery"]["status"] == 200 and world.receiver.refusals == []
    change = review["delivery"]["payload"]["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "APPROVED" and change["value"]["message_template_name"] == "order_ready_0"
    assert await client.templates(status="APPROVED") == [
        t for t in await client.templates() if t["name"] == "order_ready_0"
    ]


async def test_a_template_goes_outside_the_window_with_its_parameters_checked(world: World) -> None:
    client = graph(world)
    created = await client.create_template(
        {"name": "order_ready", "language": "es", "category": "UTILITY", "components": COMPONENTS}
    )
    await world.control(
        "PUT", "window", json={"phone_number_id": world.phone_number_id, "user": ANN_WA_ID, "open": False}
    )
    template: dict[str, Any] = {
        "name": "order_ready",
        "language": {"code": "es"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": f"{world.kommo_url}/x.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]},
        ],
    }
    with pytest.raises(PermanentError) as pending:
        await client.send({"to": ANN_WA_ID, "type": "template", "template": template})
    assert pending.value.reason == status_texts.TEMPLATE_REFUSED  # 132001: not approved yet
    await world.control("POST", f"templates/{created['id']}/review", json={"event": "APPROVED"})
    wamid = await client.send({"to": ANN_WA_ID, "type": "template", "template": template})
    await world.receiver.receipt(wamid, events_pb2.DELIVERY_STATE_DELIVERED)
    short = {
        **template,
        "components": [template["components"][0], {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}],
    }
    with pytest.raises(PermanentError, match="132000"):
        await client.send({"to": ANN_WA_ID, "type": "template", "template": short})
    with pytest.raises(PermanentError, match="132012"):
        await client.send(
            {"to": ANN_WA_ID, "type": "template", "template": {**template, "components": template["components"][1:]}}
        )
    await world.control("POST", f"templates/{created['id']}/review", json={"event": "PAUSED", "reason": "LOW_QUALITY"})
    with pytest.raises(PermanentError, match="132015"):
        await client.send({"to": ANN_WA_ID, "type": "template", "template": template})


# ---------------------------------------------------------------------------------------------------------
# Interactive messages and the choice coming back


async def test_buttons_and_lists_within_their_limits_and_the_choice_comes_back(world: World) -> None:
    client = graph(world)
    four = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}} for i in range(4)]
    with pytest.raises(PermanentError, match="131009"):
        await client.send(
            {
                "to": ANN_WA_ID,
                "type": "interactive",
                "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": four}},
            }
        )
    listed = {
        "type": "list",
        "header": {"type": "text", "text": "Delivery"},
        "body": {"text": "When should we come?"},
        "action": {
            "button": "Choose a day",
            "sections": [
                {"title": "This week", "rows": [{"id": "tue", "title": "Tuesday", "description": "after 5 pm"}]}
            ],
        },
    }
    wamid = await client.send({"to": ANN_WA_ID, "type": "interactive", "interactive": listed})
    choice = {
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": "tue", "title": "Tuesday"}},
        "reply_to": wamid,
    }
    await world.client_says(ANN_WA_ID, choice)
    event = next(e for e in reversed(world.receiver.events) if e.WhichOneof("event") == "content")
    assert (event.content.text.body, event.content.text.callback_data, event.reply_to_platform_message_id) == (
        "Tuesday",
        "tue",
        wamid,
    )


# ---------------------------------------------------------------------------------------------------------
# Webhooks


async def test_a_webhook_the_bridge_refuses_is_retried_until_taken(world: World) -> None:
    world.receiver.fail_next = 2
    body = {
        "phone_number_id": world.phone_number_id,
        "user": ANN_WA_ID,
        "message": {"type": "text", "text": {"body": "Olá 👋"}},
    }
    first = await world.control("POST", "users/messages", json=body)
    assert first["delivery"]["status"] == 503
    await wait_for(
        lambda: world.receiver.events[-1].content.text.body == "Olá 👋", timeout=10, what="the retried webhook"
    )
    assert world.receiver.refusals == []


async def test_a_user_with_a_hidden_number_is_notified_by_bsuid_only(world: World) -> None:
    zoe = await world.control(
        "POST", "users", json={"name": "Zoe", "wa_id": "34611222333", "username": "zoe", "hide_phone": True}
    )
    result = await world.control(
        "POST",
        "users/messages",
        json={
            "phone_number_id": world.phone_number_id,
            "user": zoe["user_id"],
            "message": {"type": "text", "text": {"body": "hi"}},
        },
    )
    value = result["delivery"]["payload"]["entry"][0]["changes"][0]["value"]
    assert "from" not in value["messages"][0] and value["messages"][0]["from_user_id"] == zoe["user_id"]
    assert value["contacts"] == [{"profile": {"name": "Zoe", "username": "zoe"}, "user_id": zoe["user_id"]}]


async def test_the_emulator_refuses_a_callback_that_fails_the_handshake(world: World) -> None:
    result = await world.control("POST", "verify", json={"url": world.receiver_url, "verify_token": "wrong"})
    assert result == {
        "ok": False,
        "error": "(#2200) Callback verification failed with the following errors: "
        "HTTP Status Code = 403; HTTP Message = Forbidden",
    }
    assert await world.control(
        "POST", "verify", json={"url": world.receiver_url, "verify_token": world.receiver.verify_token}
    ) == {"ok": True}
    async with httpx.AsyncClient() as http:
        closed = await http.post(
            f"{world.wa_url}/_emulator/verify", json={"url": "http://127.0.0.1:9/hook", "verify_token": "x"}
        )
    assert closed.json()["ok"] is False
