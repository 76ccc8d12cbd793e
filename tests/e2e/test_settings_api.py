"""The settings window's API: an admin sees and changes their own account's channels, and nothing else."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.rpc import call, open_channel
from tests.e2e.sandbox import Sandbox
from tests.e2e.test_settings_access import open_session, widget_token
from tests.support import wait_for


async def settings_client(sandbox: Sandbox) -> httpx.AsyncClient:
    """A browser tab of the settings window, entered with a fresh Kommo token."""
    opened = await open_session(sandbox, await widget_token(sandbox))
    ticket = urlsplit(opened.json()["url"]).fragment.removeprefix("ticket=")
    page = httpx.AsyncClient(base_url=sandbox.stack.public_url, timeout=30)
    entered = await page.post("/settings/api/enter", json={"ticket": ticket})
    assert entered.status_code == 200, entered.text
    return page


async def new_bot(sandbox: Sandbox, username: str) -> dict[str, Any]:
    response = await sandbox.http.post(
        f"{sandbox.stack.telegram_url}/_emulator/bots", json={"username": username, "first_name": username.title()}
    )
    response.raise_for_status()
    bot: dict[str, Any] = response.json()
    return bot


async def test_an_admin_manages_their_channels_from_the_window(sandbox: Sandbox) -> None:
    assert (await sandbox.http.get(f"{sandbox.stack.public_url}/settings/api/overview")).status_code == 401
    page = await settings_client(sandbox)
    overview = (await page.get("/settings/api/overview")).json()
    assert overview["account"]["state"] == "active" and overview["account"]["domain"] == "sandbox.kommo.com"
    assert overview["account"]["token"]["kind"] == "long_lived"
    assert [c["id"] for c in overview["channels"]] == [sandbox.channel.connection_id]
    assert {p["is_main"] for p in overview["pipelines"]} == {True, False} and overview["pipelines_error"] == ""

    wrong = await page.post("/settings/api/channels", json={"platform": "telegram", "token": "123:not-a-real-token"})
    assert wrong.status_code == 400 and "did not accept this token" in wrong.json()["error"]
    bot = await new_bot(sandbox, "second_shop_bot")
    added = await page.post("/settings/api/channels", json={"platform": "telegram", "token": bot["token"]})
    assert added.status_code == 201, added.text
    channel = added.json()["channel"]
    assert channel["state"] == "active" and channel["platform"] == "telegram" and channel["webhook_url"]

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
    bad = await page.patch(f"/settings/api/channels/{channel['id']}", json={"contact_rule": "merge"})
    assert bad.status_code == 400 and "contact_rule" in bad.json()["error"]
    removed = await page.delete(f"/settings/api/channels/{channel['id']}")
    assert removed.status_code == 200 and removed.json()["channel"]["state"] == "disconnected"
    await page.aclose()


async def test_another_accounts_channel_is_invisible_and_untouchable(sandbox: Sandbox) -> None:
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
    for method in ("PATCH", "DELETE"):
        response = await page.request(
            method, f"/settings/api/channels/{foreign.connection_id}", json={"robot_label": "x"}
        )
        assert response.status_code == 404, (method, response.text)
    await page.aclose()
