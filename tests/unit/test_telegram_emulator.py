"""The Telegram emulator rejects what Telegram rejects, in Telegram's shapes, and delivers client updates
to a real webhook receiver (a uvicorn server on an ephemeral port) the way Telegram does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from libs.messengers.telegram.adapter import TelegramBotClient, parse_update
from libs.messengers.telegram.emulator import TelegramEmulator, TelegramState, create_telegram_emulator
from libs.messengers.telegram.emulator_state import Bot
from tests.support import wait_for
from tests.unit.telegram_support import api, assert_error

BASE = "http://telegram.test"
ANA: dict[str, Any] = {
    "id": 700001,
    "first_name": "Ana",
    "last_name": "Silva",
    "username": "ana_s",
    "language_code": "pt",
}
BEN: dict[str, Any] = {"id": 700002, "first_name": "Ben"}
CAT: dict[str, Any] = {"id": 700003, "first_name": "Cat"}


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = create_telegram_emulator(TelegramState(retry_initial_s=0.05, retry_max_s=0.2))
    yield emu
    await emu.state.aclose()


@pytest.fixture
def bot(emulator: TelegramEmulator) -> Bot:
    return emulator.state.create_bot("acme_support_bot", "Acme Support")


# ---------------------------------------------------------------------------------------------------------
# Transport and envelope


async def test_unknown_token_is_401_and_unknown_method_404(http: httpx.AsyncClient, bot: Bot) -> None:
    assert_error(await http.post(f"/bot{bot.id}:{'x' * 35}/getMe"), 401, "Unauthorized")
    assert_error(await http.post(f"/bot{bot.token}/sendTelepathy"), 404, "Not Found")
    assert_error(await http.get("/nothing/here"), 404, "Not Found")


async def test_method_names_are_case_insensitive_and_params_come_in_any_encoding(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    response = await http.get(f"/bot{bot.token}/GETME")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["result"]["is_bot"] is True
    assert response.json()["result"]["username"] == "acme_support_bot"

    await emulator.state.client_message(bot.id, ANA, text="hi")
    form = await http.post(f"/bot{bot.token}/sendmessage", data={"chat_id": str(ANA["id"]), "text": "via form"})
    query = await http.get(f"/bot{bot.token}/SendMessage", params={"chat_id": ANA["id"], "text": "via query"})
    as_json = await api(http, bot, "sendMessage", chat_id=ANA["id"], text="via json")
    assert [r.json()["result"]["text"] for r in (form, query, as_json)] == ["via form", "via query", "via json"]
    assert [r.json()["result"]["message_id"] for r in (form, query, as_json)] == [2, 3, 4]


async def test_fault_responses_use_telegrams_envelope(http: httpx.AsyncClient, bot: Bot) -> None:
    faults = [{"path": "getMe$", "status": 429, "retry_after": 9}, {"path": "getMe$", "status": 500}]
    for fault in faults:
        assert (await http.post("/_emulator/faults", json=fault)).status_code == 201
    first = await http.post(f"/bot{bot.token}/getMe")
    assert first.status_code == 429
    assert first.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 9",
        "parameters": {"retry_after": 9},
    }
    assert_error(await http.post(f"/bot{bot.token}/getMe"), 500, "Internal Server Error")
    assert (await http.post(f"/bot{bot.token}/getMe")).status_code == 200
    recorded = (await http.get("/_emulator/requests", params={"path_contains": "getMe"})).json()["requests"]
    assert [r["status"] for r in recorded] == [429, 500, 200]


# ---------------------------------------------------------------------------------------------------------
# Methods


async def test_send_message_validates_like_telegram(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="hi")
    chat_id = ANA["id"]
    assert_error(await api(http, bot, "sendMessage", text="x"), 400, "Bad Request: chat_id is empty")
    assert_error(await api(http, bot, "sendMessage", chat_id=1, text="x"), 400, "Bad Request: chat not found")
    assert_error(await api(http, bot, "sendMessage", chat_id="@ana", text="x"), 400, "Bad Request: chat not found")
    assert_error(await api(http, bot, "sendMessage", chat_id=chat_id), 400, "Bad Request: message text is empty")
    assert_error(
        await api(http, bot, "sendMessage", chat_id=chat_id, text="  \n"), 400, "Bad Request: message text is empty"
    )
    assert_error(
        await api(http, bot, "sendMessage", chat_id=chat_id, text="x" * 4097), 400, "Bad Request: message is too long"
    )
    longest = await api(http, bot, "sendMessage", chat_id=chat_id, text="x" * 4096)
    assert longest.status_code == 200
    assert emulator.state.sent_messages(bot.id, chat_id)[0].message["text"] == "x" * 4096


async def test_send_message_returns_the_full_message_and_supports_replies(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="where is my order?")
    before = int(time.time())
    response = await api(
        http, bot, "sendMessage", chat_id=ANA["id"], text="On its way", reply_parameters={"message_id": 1}
    )
    message = response.json()["result"]
    assert message["message_id"] == 2
    assert message["from"] == {
        "id": bot.id,
        "is_bot": True,
        "first_name": "Acme Support",
        "username": "acme_support_bot",
    }
    assert message["chat"]["id"] == ANA["id"] and message["chat"]["type"] == "private"
    assert before <= message["date"] <= int(time.time())
    assert message["text"] == "On its way"
    assert message["reply_to_message"]["text"] == "where is my order?"
    assert message["reply_to_message"]["from"]["id"] == ANA["id"]

    missing = await api(http, bot, "sendMessage", chat_id=ANA["id"], text="x", reply_parameters={"message_id": 99})
    assert_error(missing, 400, "Bad Request: message to be replied not found")
    tolerant = await api(
        http,
        bot,
        "sendMessage",
        chat_id=ANA["id"],
        text="x",
        reply_parameters={"message_id": 99, "allow_sending_without_reply": True},
    )
    assert tolerant.status_code == 200
    assert "reply_to_message" not in tolerant.json()["result"]


async def test_send_location_contact_and_chat_action(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="hi")
    location = await api(http, bot, "sendLocation", chat_id=ANA["id"], latitude=38.7, longitude=-9.1)
    assert location.json()["result"]["location"] == {"latitude": 38.7, "longitude": -9.1}
    bad = await api(http, bot, "sendLocation", chat_id=ANA["id"], latitude=91, longitude=0)
    assert bad.status_code == 400
    contact = await api(http, bot, "sendContact", chat_id=ANA["id"], phone_number="+100", first_name="Desk")
    assert contact.json()["result"]["contact"] == {"phone_number": "+100", "first_name": "Desk"}
    no_name = await api(http, bot, "sendContact", chat_id=ANA["id"], phone_number="+100")
    assert no_name.status_code == 400

    typing = await api(http, bot, "sendChatAction", chat_id=ANA["id"], action="typing")
    assert typing.json() == {"ok": True, "result": True}
    assert_error(
        await api(http, bot, "sendChatAction", chat_id=ANA["id"], action="dancing"),
        400,
        "Bad Request: wrong parameter action in request",
    )
    actions = (await http.get("/_emulator/chat_actions", params={"bot_id": bot.id})).json()["actions"]
    assert [(a["chat_id"], a["action"]) for a in actions] == [(ANA["id"], "typing")]


async def test_set_webhook_validation_and_info(http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot) -> None:
    url = "https://bridge.example/webhooks/telegram/c1"
    for secret in ("has space", "ünïcode", "x" * 257):
        assert_error(
            await api(http, bot, "setWebhook", url=url, secret_token=secret),
            400,
            "Bad Request: secret token contains unallowed characters",
        )
    ok = await api(http, bot, "setWebhook", url=url, secret_token="A-z_0" * 51 + "9", max_connections=5)
    assert ok.json() == {"ok": True, "result": True, "description": "Webhook was set"}
    info = (await api(http, bot, "getWebhookInfo")).json()["result"]
    assert info == {"url": url, "has_custom_certificate": False, "pending_update_count": 0, "max_connections": 5}
    assert (await api(http, bot, "setWebhook", url="not a url")).status_code == 400

    removed = await api(http, bot, "setWebhook", url="")
    assert removed.json()["description"] == "Webhook was deleted"
    assert bot.webhook_url == ""


async def test_strict_mode_requires_https_on_telegrams_ports() -> None:
    emu = create_telegram_emulator(TelegramState(require_https=True))
    bot = emu.state.create_bot("strict_bot")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app), base_url=BASE) as http:
        plain = await api(http, bot, "setWebhook", url="http://bridge.example/hook")
        assert_error(plain, 400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        port = await api(http, bot, "setWebhook", url="https://bridge.example:9000/hook")
        assert port.status_code == 400
        assert (await api(http, bot, "setWebhook", url="https://bridge.example:8443/hook")).status_code == 200
    await emu.state.aclose()


async def test_blocked_user_gets_403_and_a_my_chat_member_update(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await emulator.state.client_message(bot.id, ANA, text="hi")
    blocked = await http.post("/_emulator/clients/block", json={"bot_id": bot.id, "user_id": ANA["id"]})
    assert blocked.status_code == 200
    member = blocked.json()["update"]["my_chat_member"]
    assert member["new_chat_member"]["status"] == "kicked"
    assert member["old_chat_member"]["status"] == "member"
    assert member["new_chat_member"]["user"]["id"] == bot.id
    assert member["chat"]["id"] == ANA["id"]
    assert_error(
        await api(http, bot, "sendMessage", chat_id=ANA["id"], text="x"), 403, "Forbidden: bot was blocked by the user"
    )
    again = await http.post("/_emulator/clients/block", json={"bot_id": bot.id, "user_id": ANA["id"]})
    assert again.status_code == 400

    unblocked = await http.post("/_emulator/clients/unblock", json={"bot_id": bot.id, "user_id": ANA["id"]})
    assert unblocked.json()["update"]["my_chat_member"]["new_chat_member"]["status"] == "member"
    assert (await api(http, bot, "sendMessage", chat_id=ANA["id"], text="welcome back")).status_code == 200
    unknown = await http.post("/_emulator/clients/block", json={"bot_id": bot.id, "user_id": 1})
    assert unknown.status_code == 404


async def test_get_updates_serves_pending_updates_and_conflicts_with_a_webhook(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    first = await emulator.state.client_message(bot.id, ANA, text="one")
    second = await emulator.state.client_message(bot.id, BEN, text="two")
    assert first.status is None and first.attempts == 0
    assert second.update["update_id"] == first.update["update_id"] + 1
    assert (await api(http, bot, "getWebhookInfo")).json()["result"]["pending_update_count"] == 2
    updates = (await api(http, bot, "getUpdates")).json()["result"]
    assert [u["message"]["text"] for u in updates] == ["one", "two"]
    after = (await api(http, bot, "getUpdates", offset=second.update["update_id"])).json()["result"]
    assert [u["message"]["text"] for u in after] == ["two"]
    assert (await api(http, bot, "getWebhookInfo")).json()["result"]["pending_update_count"] == 1

    await api(http, bot, "setWebhook", url="http://127.0.0.1:9/hook", drop_pending_updates=True)
    conflict = await api(http, bot, "getUpdates")
    assert conflict.status_code == 409
    assert conflict.json()["description"].startswith("Conflict: can't use getUpdates method while webhook is active")
    assert (await api(http, bot, "getWebhookInfo")).json()["result"]["pending_update_count"] == 0


# ---------------------------------------------------------------------------------------------------------
# Flood limits


async def test_per_chat_flood_limit_answers_429_with_retry_after(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    await http.put("/_emulator/limits", json={"per_chat_per_s": 1, "per_chat_burst": 3})
    await emulator.state.client_message(bot.id, ANA, text="hi")
    statuses = [(await api(http, bot, "sendMessage", chat_id=ANA["id"], text=str(i))).status_code for i in range(3)]
    assert statuses == [200, 200, 200]
    flooded = await api(http, bot, "sendMessage", chat_id=ANA["id"], text="too many")
    assert flooded.status_code == 429
    assert flooded.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert len(emulator.state.sent_messages(bot.id)) == 3


async def test_per_bot_flood_limit_spans_chats_and_limits_can_be_disabled(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot
) -> None:
    limits = (await http.put("/_emulator/limits", json={"per_bot_per_s": 2})).json()
    assert limits == {"per_bot_per_s": 2.0, "per_chat_per_s": 1.0, "per_chat_burst": 20, "enabled": True}
    for user in (ANA, BEN, CAT):
        await emulator.state.client_message(bot.id, user, text="hi")
    statuses = [(await api(http, bot, "sendMessage", chat_id=u["id"], text="x")).status_code for u in (ANA, BEN, CAT)]
    assert statuses == [200, 200, 429]

    await http.put("/_emulator/limits", json={"enabled": False})
    burst = [(await api(http, bot, "sendMessage", chat_id=ANA["id"], text="x")).status_code for _ in range(40)]
    assert set(burst) == {200}
    assert (await http.put("/_emulator/limits", json={"per_chat_burst": 0})).status_code == 400
    assert (await http.put("/_emulator/limits", json={"speed": 1})).status_code == 400


# ---------------------------------------------------------------------------------------------------------
# Control routes


async def test_bots_control_route(http: httpx.AsyncClient) -> None:
    created = await http.post("/_emulator/bots", json={"username": "shop_helper_bot", "first_name": "Shop"})
    assert created.status_code == 201
    body = created.json()
    assert re.fullmatch(r"\d+:[A-Za-z0-9_-]{35}", body["token"])
    assert body["token"].startswith(f"{body['id']}:")
    assert body["username"] == "shop_helper_bot"
    me = (await http.get(f"/bot{body['token']}/getMe")).json()["result"]
    assert (me["id"], me["first_name"]) == (body["id"], "Shop")

    token = "123456:" + "Ab_-" * 8 + "xyz"
    given = await http.post("/_emulator/bots", json={"username": "given_token_bot", "token": token})
    assert given.json()["id"] == 123456 and given.json()["token"] == token
    assert (await http.post("/_emulator/bots", json={"username": "shop_helper_bot"})).status_code == 400
    assert (await http.post("/_emulator/bots", json={"username": "no_suffix"})).status_code == 400
    assert (await http.post("/_emulator/bots", json={"username": "x_bot", "token": "1:short"})).status_code == 400
    listed = (await http.get("/_emulator/bots")).json()["bots"]
    assert {b["username"] for b in listed} == {"shop_helper_bot", "given_token_bot"}


async def test_sent_is_inspectable_in_send_order(http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot) -> None:
    for user in (ANA, BEN):
        await emulator.state.client_message(bot.id, user, text="hi")
    for chat_id, text in ((ANA["id"], "a1"), (BEN["id"], "b1"), (ANA["id"], "a2")):
        await api(http, bot, "sendMessage", chat_id=chat_id, text=text)
    everything = (await http.get("/_emulator/sent", params={"bot_id": bot.id})).json()["messages"]
    assert [m["message"]["text"] for m in everything] == ["a1", "b1", "a2"]
    ana = (await http.get("/_emulator/sent", params={"bot_id": bot.id, "chat_id": ANA["id"]})).json()["messages"]
    assert [(m["chat_id"], m["method"], m["message"]["text"]) for m in ana] == [
        (ANA["id"], "sendMessage", "a1"),
        (ANA["id"], "sendMessage", "a2"),
    ]
    assert (await http.delete("/_emulator/sent")).json() == {"cleared": True}
    assert (await http.get("/_emulator/sent")).json() == {"messages": []}


async def test_client_message_control_route_builds_the_update(http: httpx.AsyncClient, bot: Bot) -> None:
    response = await http.post("/_emulator/clients/messages", json={"bot_id": bot.id, "user": ANA, "text": "oi"})
    assert response.status_code == 200
    result = response.json()
    assert (result["status"], result["attempts"]) == (None, 0)  # no webhook yet: the update is pending
    message = result["update"]["message"]
    assert message["message_id"] == 1
    assert message["from"] == {**ANA, "is_bot": False}
    assert message["chat"] == {
        "id": ANA["id"],
        "first_name": "Ana",
        "last_name": "Silva",
        "username": "ana_s",
        "type": "private",
    }
    assert message["text"] == "oi"

    photo = {"photo": [{"file_id": "ph", "file_unique_id": "u", "width": 10, "height": 10}], "caption": "look"}
    second = await http.post("/_emulator/clients/messages", json={"bot_id": bot.id, "user": ANA, "message": photo})
    update = second.json()["update"]
    assert update["update_id"] == result["update"]["update_id"] + 1
    assert update["message"]["message_id"] == 2
    assert update["message"]["caption"] == "look"

    bad = [
        {"bot_id": 1, "user": ANA, "text": "x"},
        {"bot_id": bot.id, "user": {"id": 5}, "text": "x"},
        {"bot_id": bot.id, "user": ANA},
    ]
    assert [(await http.post("/_emulator/clients/messages", json=b)).status_code for b in bad] == [404, 400, 400]


# ---------------------------------------------------------------------------------------------------------
# Webhook delivery to a real receiver


@dataclass
class Receiver:
    """A webhook endpoint on a real socket; answers with `statuses` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], dict[str, Any], int]] = field(default_factory=list)
    url: str = ""

    async def hook(self, request: Request) -> Response:
        status = self.statuses.pop(0) if self.statuses else 200
        self.received.append((dict(request.headers), json.loads(await request.body()), status))
        return JSONResponse({"ok": status < 300}, status_code=status)

    def delivered(self) -> list[dict[str, Any]]:
        return [body for _, body, status in self.received if status < 300]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    yield receiver
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_client_message_is_delivered_with_the_secret_header(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, receiver: Receiver
) -> None:
    await TelegramBotClient(BASE, bot.token, http).set_webhook(receiver.url, "hook_Secret-1")
    result = await emulator.state.client_message(bot.id, ANA, text="Quero comprar")
    assert (result.status, result.attempts, result.error) == (200, 1, None)

    [(headers, body, _)] = receiver.received
    assert headers["x-telegram-bot-api-secret-token"] == "hook_Secret-1"
    assert headers["content-type"] == "application/json"
    assert body == result.update
    assert set(body) == {"update_id", "message"}
    message = body["message"]
    assert message["from"]["is_bot"] is False and message["from"]["id"] == ANA["id"]
    assert message["chat"]["type"] == "private"
    assert abs(message["date"] - time.time()) < 5

    # What the emulator sends is what the adapter parses.
    event = parse_update(json.dumps(body).encode(), "conn-7")
    assert event is not None
    assert event.event_id == f"telegram:conn-7:{body['update_id']}"
    assert event.chat_id == str(ANA["id"])
    assert event.sender.name == "Ana Silva"
    assert event.content.text.body == "Quero comprar"


async def test_no_secret_means_no_secret_header(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, receiver: Receiver
) -> None:
    await api(http, bot, "setWebhook", url=receiver.url)
    await emulator.state.client_message(bot.id, ANA, text="hi")
    [(headers, _, _)] = receiver.received
    assert "x-telegram-bot-api-secret-token" not in headers


async def test_failed_delivery_is_retried_in_order(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, receiver: Receiver
) -> None:
    await api(http, bot, "setWebhook", url=receiver.url, secret_token="s")
    receiver.statuses = [503, 503]
    first = await emulator.state.client_message(bot.id, ANA, text="first")
    assert (first.status, first.attempts) == (503, 1)
    second = (
        await http.post("/_emulator/clients/messages", json={"bot_id": bot.id, "user": BEN, "text": "second"})
    ).json()
    assert (second["status"], second["attempts"]) == (None, 0)  # never overtakes the undelivered first
    assert "queued behind" in second["error"]

    await wait_for(lambda: len(receiver.delivered()) == 2)
    assert [(body["message"]["text"], status) for _, body, status in receiver.received] == [
        ("first", 503),
        ("first", 503),
        ("first", 200),
        ("second", 200),
    ]
    assert receiver.delivered()[1]["update_id"] == first.update["update_id"] + 1
    info = (await api(http, bot, "getWebhookInfo")).json()["result"]
    assert info["pending_update_count"] == 0
    assert info["last_error_message"] == "Wrong response from the webhook: 503 Service Unavailable"
    assert abs(info["last_error_date"] - time.time()) < 5


async def test_delivery_gives_up_after_its_bound(receiver: Receiver) -> None:
    state = TelegramState(retry_initial_s=0.02, retry_max_s=0.05, give_up_after_s=0.3)
    gave_up_bot = state.create_bot("patient_bot")
    state.set_webhook(gave_up_bot, receiver.url)
    receiver.statuses = [500] * 1000
    try:
        result = await state.client_message(gave_up_bot.id, ANA, text="lost")
        assert result.status == 500
        await wait_for(lambda: not gave_up_bot.queue, timeout=3)
        # The bot's delivery worker has ended: nothing is left that could try again.
        await wait_for(lambda: gave_up_bot.worker is None or gave_up_bot.worker.done(), timeout=3)
        attempts = len(receiver.received)
        assert attempts >= 3
        assert not gave_up_bot.queue and len(receiver.received) == attempts
        assert state.webhook_info(gave_up_bot)["last_error_message"].endswith("500 Internal Server Error")
    finally:
        await state.aclose()


async def test_unreachable_webhook_is_recorded_and_retried_after_it_is_fixed(
    http: httpx.AsyncClient, emulator: TelegramEmulator, bot: Bot, receiver: Receiver
) -> None:
    await api(http, bot, "setWebhook", url="http://127.0.0.1:9/nowhere")
    result = await emulator.state.client_message(bot.id, ANA, text="hello?")
    assert result.status is None and result.attempts == 1
    assert result.error == "Connection refused"
    assert (await api(http, bot, "getWebhookInfo")).json()["result"]["pending_update_count"] == 1

    await api(http, bot, "setWebhook", url=receiver.url)
    await wait_for(lambda: len(receiver.delivered()) == 1)
    assert receiver.delivered()[0]["message"]["text"] == "hello?"


async def test_revoking_a_token_keeps_the_bot_and_refuses_the_old_token(http: httpx.AsyncClient, bot: Bot) -> None:
    old = bot.token
    revoked = await http.post(f"/_emulator/bots/{bot.id}/revoke")
    assert revoked.status_code == 200
    new = revoked.json()["token"]
    assert new != old and new.startswith(f"{bot.id}:") and re.fullmatch(r"\d+:[A-Za-z0-9_-]{35}", new)
    refused = await http.post(f"/bot{old}/getMe")
    assert refused.status_code == 401 and refused.json() == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    assert (await http.post(f"/bot{new}/getMe")).json()["result"]["id"] == bot.id
    assert (await http.post("/_emulator/bots/42/revoke")).status_code == 404


async def test_an_injected_webhook_error_shows_in_get_webhook_info(http: httpx.AsyncClient, bot: Bot) -> None:
    assert "last_error_date" not in (await api(http, bot, "getWebhookInfo")).json()["result"]
    before = int(time.time())
    injected = await http.post(
        f"/_emulator/bots/{bot.id}/webhook_error", json={"message": "Wrong response from the webhook: 502 Bad Gateway"}
    )
    assert injected.status_code == 200
    info = (await api(http, bot, "getWebhookInfo")).json()["result"]
    assert info["last_error_message"] == "Wrong response from the webhook: 502 Bad Gateway"
    assert info["last_error_date"] >= before
    assert (await http.post(f"/_emulator/bots/{bot.id}/webhook_error", json={})).status_code == 400
    # Registering the webhook again clears it, as Telegram does.
    await api(http, bot, "setWebhook", url="https://bridge.test/webhooks/telegram/c1", secret_token="s")
    assert "last_error_message" not in (await api(http, bot, "getWebhookInfo")).json()["result"]
