"""The settings window's API: an admin sees and changes their own account's channels, and nothing else;
pauses and resumes a channel without losing or reordering a message; sees what Telegram says about each
bot and mends it (a new token, the webhook registered again). Every error has a stable code.

The tests share one stack: each uses clients (Telegram user ids) and bots of its own."""

from __future__ import annotations

import argparse
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.cli import main as cli
from libs.cli.main import Target
from libs.rpc import call, open_channel
from libs.secret_names import MESSENGER_TOKEN
from tests.e2e.sandbox import Sandbox
from tests.e2e.test_settings_access import open_session, widget_token
from tests.support import wait_for


async def settings_client(sandbox: Sandbox) -> httpx.AsyncClient:
    """A browser tab of the settings window, entered with a fresh Kommo token."""
    opened = await open_session(sandbox, await widget_token(sandbox))
    ticket = urlsplit(opened.json()["url"]).fragment.removeprefix("ticket=").split("&")[0]
    page = httpx.AsyncClient(base_url=sandbox.stack.public_url, timeout=30)
    entered = await page.post("/settings/api/enter", json={"ticket": ticket})
    assert entered.status_code == 200, entered.text
    return page


async def new_bot(sandbox: Sandbox, username: str) -> dict[str, Any]:
    return await sandbox.new_bot(username)


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The response is the API's refusal with this status and stable code; returns its English sentence."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def test_an_admin_manages_their_channels_from_the_window(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    refused(await sandbox.http.get(f"{sandbox.stack.public_url}/settings/api/overview"), 401, "session_missing")
    page = await settings_client(sandbox)
    overview = (await page.get("/settings/api/overview")).json()
    assert overview["account"]["state"] == "active" and overview["account"]["domain"] == "sandbox.kommo.com"
    assert overview["account"]["token"]["kind"] == "long_lived"
    assert sandbox.channel.connection_id in [c["id"] for c in overview["channels"]]
    assert {p["is_main"] for p in overview["pipelines"]} == {True, False} and overview["pipelines_error"] == ""

    wrong = await page.post("/settings/api/channels", json={"platform": "telegram", "token": "123:not-a-real-token"})
    assert "did not accept this token" in refused(wrong, 400, "telegram_token_rejected")
    refused(await page.post("/settings/api/channels", json={"platform": "telegram"}), 400, "token_missing")
    refused(await page.post("/settings/api/channels", json={"platform": "icq", "token": "x"}), 400, "unknown_messenger")
    bot = await new_bot(sandbox, "second_shop_bot")
    added = await page.post("/settings/api/channels", json={"platform": "telegram", "token": bot["token"]})
    assert added.status_code == 201, added.text
    channel = added.json()["channel"]
    assert channel["state"] == "active" and channel["platform"] == "telegram" and channel["webhook_url"]
    assert channel["held_messages"] == 0 and channel["paused_at_ms"] == 0

    second = next(p for p in overview["pipelines"] if not p["is_main"])
    changed = await page.patch(
        f"/settings/api/channels/{channel['id']}",
        json={"source_name": "Shop, second bot", "pipeline_id": second["id"], "contact_rule": "link_existing"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["channel"]["settings"] == {
        "source_name": "Shop, second bot",
        "pipeline_id": second["id"],
        "contact_rule": "link_existing",
        "update_profiles": True,
        "robot_label": "🤖",
    }

    async def source_renamed() -> bool:
        names = {s["external_id"]: s["name"] for s in (await sandbox.crm())["sources"]}
        return names.get(channel["source_external_id"]) == "Shop, second bot"

    await wait_for(source_renamed, timeout=30, what="the source renamed in Kommo")
    path = f"/settings/api/channels/{channel['id']}"
    assert "contact_rule" in refused(
        await page.patch(path, json={"contact_rule": "merge"}), 400, "invalid_contact_rule"
    )
    refused(await page.patch(path, json={"pipeline_id": -1}), 400, "invalid_pipeline")
    refused(await page.patch(path, json={"robot_label": "x" * 65}), 400, "invalid_robot_label")
    refused(await page.patch(path, json={"colour": "blue"}), 400, "unknown_setting")
    refused(await page.patch(path, content=b"not json"), 400, "invalid_json")
    removed = await page.delete(path)
    assert removed.status_code == 200 and removed.json()["channel"]["state"] == "disconnected"
    # A removed channel can be neither paused nor given a token: precisely a conflict, not "not found".
    refused(await page.post(f"{path}/pause"), 409, "channel_removed")
    refused(await page.post(f"{path}/token", json={"token": bot["token"]}), 409, "channel_removed")
    await page.aclose()


async def test_another_accounts_channel_is_invisible_and_untouchable(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    other_account = str(uuid.uuid4())
    bot = await new_bot(sandbox, "other_account_bot")
    auth_channel = open_channel(f"127.0.0.1:{sandbox.stack.auth_port}", sandbox.stack.service_token)
    router_channel = open_channel(f"127.0.0.1:{sandbox.stack.router_port}", sandbox.stack.service_token)
    await call(
        auth_pb2_grpc.AuthServiceStub(auth_channel).ConnectAccount,
        auth_pb2.ConnectAccountRequest(account_id=other_account, title="Other"),
    )
    foreign = await call(
        router_pb2_grpc.RouterServiceStub(router_channel).ConnectChannel,
        router_pb2.ConnectChannelRequest(
            account_id=other_account, platform=content_pb2.PLATFORM_TELEGRAM, token=bot["token"]
        ),
        deadline_s=20,
    )
    await auth_channel.close(None)
    await router_channel.close(None)

    page = await settings_client(sandbox)
    listed = [c["id"] for c in (await page.get("/settings/api/overview")).json()["channels"]]
    assert foreign.connection_id not in listed
    health = (await page.get("/settings/api/health")).json()["channels"]
    assert foreign.connection_id not in [h["id"] for h in health]
    path = f"/settings/api/channels/{foreign.connection_id}"
    for method in ("PATCH", "DELETE"):
        response = await page.request(method, path, json={"robot_label": "x"})
        refused(response, 404, "channel_not_found")
    for action in ("pause", "resume", "webhook"):
        refused(await page.post(f"{path}/{action}"), 404, "channel_not_found")
    refused(await page.post(f"{path}/token", json={"token": bot["token"]}), 404, "channel_not_found")
    await page.aclose()


async def test_a_paused_channel_holds_client_messages_and_releases_them_in_order(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    page = await settings_client(sandbox)
    path = f"/settings/api/channels/{sandbox.channel.connection_id}"
    ann, bob = 6101, 6102
    await sandbox.client_writes(ann, "pause-ann-0")
    await wait_for(lambda: _arrived(sandbox, ["pause-ann-0"]), timeout=30, what="the first message in Kommo")
    conversation = await sandbox.conversation_of(ann)

    paused = await page.post(f"{path}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["channel"]["state"] == "paused" and paused.json()["channel"]["paused_at_ms"] > 0
    assert (await page.post(f"{path}/pause")).json()["channel"]["state"] == "paused"  # pausing twice is harmless

    # Clients keep writing: Telegram is answered 200 each time (nothing waits at Telegram), the router holds them.
    held = [f"pause-{name}-{n}" for n in (1, 2, 3) for name in ("ann", "bob")]
    for text in held:
        result = await sandbox.client_writes(ann if "-ann-" in text else bob, text)
        assert result["status"] == 200, result

    async def held_count() -> int:
        channels = (await page.get("/settings/api/overview")).json()["channels"]
        return int(next(c for c in channels if c["id"] == sandbox.channel.connection_id)["held_messages"])

    await wait_for(lambda: _equals(held_count(), len(held)), timeout=30, what="every message held")
    # A manager's reply is refused at once, in words the manager understands.
    reply = await sandbox.manager_writes(conversation, "pause-reply: are you there?")
    status = await _failure_of(sandbox, reply["kommo_msgid"])
    assert (status["status"], status["error_code"]) == (-1, 902)
    assert "paused" in status["error"]
    await wait_for(sandbox.pipeline_idle, timeout=30, what="the pipeline idle")
    texts = [m["message"]["text"] for m in await sandbox.kommo_messages()]
    assert not set(held) & set(texts), "a message of the paused channel reached Kommo"
    sent = [m["message"].get("text", "") for m in await sandbox.telegram_sent()]
    assert not any("pause-reply" in text for text in sent), "a reply went out through the paused channel"

    resumed = await page.post(f"{path}/resume")
    assert resumed.status_code == 200 and resumed.json()["channel"]["state"] == "active", resumed.text
    # Messages written while the held ones are being released queue behind them.
    late = ["pause-ann-4", "pause-bob-4"]
    for text in late:
        assert (await sandbox.client_writes(ann if "-ann-" in text else bob, text))["status"] == 200
    await wait_for(lambda: _arrived(sandbox, held + late), timeout=60, what="every held message in Kommo")
    await wait_for(lambda: _equals(held_count(), 0), timeout=30, what="the lot emptied")
    await wait_for(sandbox.pipeline_idle, timeout=30, what="the pipeline idle")
    texts = [m["message"]["text"] for m in await sandbox.kommo_messages() if m["message"]["text"].startswith("pause-")]
    for name in ("ann", "bob"):
        theirs = [text for text in texts if text.startswith(f"pause-{name}-")]
        expected = [f"pause-{name}-{n}" for n in range(0 if name == "ann" else 1, 5)]
        assert theirs == expected, f"{name}'s messages out of order, lost or doubled: {theirs}"
    await page.aclose()


async def test_health_shows_telegrams_view_and_a_revoked_token_is_mended(shared_sandbox: Sandbox) -> None:
    sandbox = shared_sandbox
    page = await settings_client(sandbox)
    bot = await new_bot(sandbox, "health_check_bot")
    added = await page.post("/settings/api/channels", json={"platform": "telegram", "token": bot["token"]})
    assert added.status_code == 201, added.text
    channel_id = added.json()["channel"]["id"]
    path = f"/settings/api/channels/{channel_id}"

    healthy = await _health(page, channel_id, fresh=True)
    assert (healthy["webhook"], healthy["token_rejected"], healthy["last_error"]) == ("registered", False, "")
    assert (await sandbox.client_writes_to(bot["id"], 6201, "health-before"))["status"] == 200

    # Telegram failed to deliver a while ago: the window says when and what Telegram said.
    await sandbox.telegram_webhook_failed(bot["id"], "Wrong response from the webhook: 502 Bad Gateway")
    cached = await _health(page, channel_id)
    assert cached["checked_at_ms"] == healthy["checked_at_ms"] and cached["last_error"] == ""  # asked moments ago
    failing = await _health(page, channel_id, fresh=True)
    assert failing["last_error"] == "Wrong response from the webhook: 502 Bad Gateway"
    assert failing["last_error_at_ms"] > 0 and failing["webhook"] == "registered"

    # The owner revokes the token in BotFather: the bridge's copy is refused.
    new_token = await sandbox.botfather_revokes(bot["id"])
    rejected = await _health(page, channel_id, fresh=True)
    assert rejected["token_rejected"] is True and rejected["webhook"] == "unknown"

    # Fix bot token: another bot's token is refused, precisely; so is a token Telegram does not know.
    other = await new_bot(sandbox, "not_this_one_bot")
    wrong = await page.post(f"{path}/token", json={"token": other["token"]})
    assert "Not_This_One_Bot" in refused(wrong, 400, "telegram_token_other_bot")
    refused(await page.post(f"{path}/token", json={"token": f"{bot['id']}:{'A' * 35}"}), 400, "telegram_token_rejected")
    refused(await page.post(f"{path}/token", json={}), 400, "token_missing")
    refused(await page.post(f"{path}/token", content=b"{"), 400, "invalid_json")
    await sandbox.telegram_refuses_next("getMe", 502, "Bad Gateway")
    unreachable = await page.post(f"{path}/token", json={"token": new_token})
    assert "Telegram could not be reached" in refused(unreachable, 503, "telegram_unreachable")

    secret_before = await sandbox.secret_of(channel_id)
    fixed = await page.post(f"{path}/token", json={"token": new_token})
    assert fixed.status_code == 200, fixed.text
    assert await sandbox.secret_of(channel_id) != secret_before, "the webhook secret was not renewed"
    assert await sandbox.secret_of(channel_id, MESSENGER_TOKEN) == new_token
    mended = await _health(page, channel_id)  # the router forgot what it knew of this channel
    assert (mended["token_rejected"], mended["webhook"], mended["last_error"]) == (False, "registered", "")
    # Telegram now sends the new secret; the gateway, which knew the old one, takes it at the first try.
    first_try = await sandbox.client_writes_to(bot["id"], 6201, "health-after-fix")
    assert first_try["status"] == 200, first_try
    await wait_for(lambda: _arrived(sandbox, ["health-before", "health-after-fix"]), timeout=30, what="both in Kommo")

    # Someone deletes the bot's webhook: "not registered", and Re-register mends it.
    async with httpx.AsyncClient() as telegram:
        gone = await telegram.post(f"{sandbox.stack.telegram_url}/bot{new_token}/deleteWebhook")
        assert gone.json()["ok"] is True
    assert (await _health(page, channel_id, fresh=True))["webhook"] == "not_set"
    again = await page.post(f"{path}/webhook")
    assert again.status_code == 200, again.text
    assert (await _health(page, channel_id))["webhook"] == "registered"
    await page.aclose()


async def _health(page: httpx.AsyncClient, channel_id: str, *, fresh: bool = False) -> dict[str, Any]:
    response = await page.get("/settings/api/health", params={"fresh": "1"} if fresh else {})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(h for h in response.json()["channels"] if h["id"] == channel_id)
    return found


async def _arrived(sandbox: Sandbox, texts: list[str]) -> bool:
    seen = {m["message"].get("text") for m in await sandbox.kommo_messages()}
    return set(texts) <= seen


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _failure_of(sandbox: Sandbox, kommo_msgid: str) -> dict[str, Any]:
    async def failed() -> bool:
        return any(s["status"] == -1 for s in (await sandbox.kommo_statuses()).get(kommo_msgid, []))

    await wait_for(failed, timeout=30, what="the reply's failed status in Kommo")
    status: dict[str, Any] = next(s for s in (await sandbox.kommo_statuses())[kommo_msgid] if s["status"] == -1)
    return status


async def test_bridgectl_pauses_resumes_and_reports_health(
    shared_sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = shared_sandbox
    stack = sandbox.stack
    target = Target(f"127.0.0.1:{stack.auth_port}", f"127.0.0.1:{stack.router_port}", stack.service_token, {})
    connection_id = sandbox.channel.connection_id
    await cli.connections_pause(target, argparse.Namespace(command="pause", connection_id=connection_id))
    assert "paused Sandbox Shop" in capsys.readouterr().out
    await cli.connections_list(target, argparse.Namespace(account=sandbox.channel.account_id))
    listed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(connection_id))
    assert " paused " in listed
    await cli.connections_pause(target, argparse.Namespace(command="resume", connection_id=connection_id))
    assert "resumed Sandbox Shop" in capsys.readouterr().out
    await cli.connections_health(target, argparse.Namespace(account=sandbox.channel.account_id))
    report = capsys.readouterr().out
    row = next(line for line in report.splitlines() if line.startswith(connection_id))
    assert " active " in row and " registered " in row, report
