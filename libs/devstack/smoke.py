"""The `helm test` of a deployed bridge (deploy/kommo-bridge/templates/tests/smoke-test.yaml).

Always: every HTTP readiness endpoint answers 200 and every gRPC server reports SERVING. In sandbox mode
also: a sandbox bot and account are connected, a client's message reaches the Kommo chat, and a
manager's answer reaches the client, all through the in-cluster emulators. Exits non-zero, naming the
step, on the first failure.

    python3 -m libs.devstack.smoke --http-ready http://gw/readyz --grpc-health auth:50051 \
        [--sandbox --kommo-url http://emulators:9001 --telegram-url http://emulators:9002]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import content_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.config import load_settings
from libs.errors import BridgeError
from libs.rpc import call, open_channel

T = TypeVar("T")


POLL_INTERVAL_S = 1.0
"""How often a step looks again; a pod under load answers later, never differently."""


class SmokeFailure(Exception):
    """A step of the smoke test failed; the message says which and why."""


async def wait_for(what: str, probe: Callable[[], Awaitable[T | None]], deadline: float) -> T:
    """Call `probe` until it returns something other than None, or fail naming `what`."""
    last_error = ""
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except (httpx.HTTPError, grpc.aio.AioRpcError) as exc:
            last_error = f" (last error: {type(exc).__name__}: {exc})"
            result = None
        if result is not None:
            return result
        await asyncio.sleep(POLL_INTERVAL_S)
    raise SmokeFailure(f"timed out waiting for {what}{last_error}")


async def check_http_ready(http: httpx.AsyncClient, url: str, deadline: float) -> None:
    async def probe() -> bool | None:
        return True if (await http.get(url)).status_code == 200 else None

    await wait_for(f"{url} to answer 200", probe, deadline)
    print(f"ok  ready  {url}")


async def check_grpc_health(address: str, deadline: float) -> None:
    """grpc.health.v1 Check of the whole server (health answers without the service credential)."""
    channel = grpc.aio.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)

    async def probe() -> bool | None:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        return True if response.status == health_pb2.HealthCheckResponse.SERVING else None

    try:
        await wait_for(f"gRPC health of {address} to be SERVING", probe, deadline)
    finally:
        await channel.close(None)
    print(f"ok  health {address}")


async def sandbox_round_trip(http: httpx.AsyncClient, kommo_url: str, telegram_url: str, deadline: float) -> None:
    """A message each way through the emulators, with a fresh bot and account (safe to run again)."""
    settings = load_settings()
    token = settings.service_token.get_secret_value()
    if not token:
        raise SmokeFailure("BRIDGE_SERVICE_TOKEN is not set")
    nonce = secrets.token_hex(4)
    bot_token = f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(26)}"
    response = await http.post(
        f"{telegram_url}/_emulator/bots",
        json={"username": f"smoke_{nonce}_bot", "first_name": "Helm Test", "token": bot_token},
    )
    response.raise_for_status()
    bot_id = int(response.json()["id"])

    auth_channel = open_channel(settings.auth_grpc_addr, token)
    router_channel = open_channel(settings.router_grpc_addr, token)
    connection_id = ""
    try:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        router = router_pb2_grpc.RouterServiceStub(router_channel)
        installation = await call(
            auth.ConnectAccount,
            auth_pb2.ConnectAccountRequest(account_id=str(uuid.uuid4()), title=f"helm test {nonce}"),
            deadline_s=15,
        )
        connection = await call(
            router.ConnectChannel,
            router_pb2.ConnectChannelRequest(
                account_id=installation.account_id, platform=content_pb2.PLATFORM_TELEGRAM, token=bot_token
            ),
            deadline_s=30,
        )
        connection_id = connection.connection_id
        print(f"ok  connected sandbox bot @smoke_{nonce}_bot to account {installation.account_id}")

        user_id = 770_000_000 + secrets.randbelow(10_000_000)
        question = f"helm test {nonce}: is my order ready?"
        client = {"id": user_id, "first_name": "Helm", "username": "helm"}
        response = await http.post(
            f"{telegram_url}/_emulator/clients/messages", json={"bot_id": bot_id, "user": client, "text": question}
        )
        response.raise_for_status()
        if response.json().get("status") != 200:
            raise SmokeFailure(f"the gateway answered the Telegram webhook with {response.json().get('status')}")

        async def kommo_chat() -> str | None:
            scope = {"scope_id": installation.scope_id}
            messages = (await http.get(f"{kommo_url}/_emulator/messages", params=scope)).json()["messages"]
            if not any(m["message"].get("text") == question for m in messages):
                return None
            for chat in (await http.get(f"{kommo_url}/_emulator/chats", params=scope)).json()["chats"]:
                if chat["client"].get("client_id", "").endswith(f":{user_id}"):
                    return str(chat["conversation_id"])
            return None

        conversation_id = await wait_for("the client's message in the Kommo chat", kommo_chat, deadline)
        print("ok  client → Kommo")

        answer = f"helm test {nonce}: yes, it ships today"
        response = await http.post(
            f"{kommo_url}/_emulator/manager_messages",
            json={"scope_id": installation.scope_id, "conversation_id": conversation_id, "text": answer},
        )
        response.raise_for_status()

        async def delivered() -> bool | None:
            sent = (await http.get(f"{telegram_url}/_emulator/sent", params={"bot_id": bot_id})).json()["messages"]
            found = any(s["chat_id"] == user_id and s["message"].get("text") == answer for s in sent)
            return True if found else None

        await wait_for("the manager's answer at the Telegram client", delivered, deadline)
        print("ok  Kommo → client")
    finally:
        if connection_id:
            router = router_pb2_grpc.RouterServiceStub(router_channel)
            await call(router.DisconnectChannel, router_pb2.DisconnectChannelRequest(connection_id=connection_id))
        await auth_channel.close(None)
        await router_channel.close(None)


async def run(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    async with httpx.AsyncClient(timeout=5) as http:
        await asyncio.gather(
            *(check_http_ready(http, url, deadline) for url in args.http_ready),
            *(check_grpc_health(address, deadline) for address in args.grpc_health),
        )
        if args.sandbox:
            if not (args.kommo_url and args.telegram_url):
                raise SmokeFailure("--sandbox needs --kommo-url and --telegram-url")
            await sandbox_round_trip(http, args.kommo_url.rstrip("/"), args.telegram_url.rstrip("/"), deadline)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Smoke-test a deployed Kommo Bridge.")
    parser.add_argument("--http-ready", action="append", default=[], help="URL that must answer 200 (repeatable)")
    parser.add_argument("--grpc-health", action="append", default=[], help="host:port that must be SERVING")
    parser.add_argument("--sandbox", action="store_true", help="also carry a message each way via the emulators")
    parser.add_argument("--kommo-url", default="", help="the Kommo (amojo) emulator's base URL")
    parser.add_argument("--telegram-url", default="", help="the Telegram emulator's base URL")
    parser.add_argument("--timeout", type=float, default=180, help="seconds for the whole test")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    except (SmokeFailure, BridgeError, httpx.HTTPError) as exc:
        raise SystemExit(f"FAIL {type(exc).__name__}: {exc}") from None
    print("smoke test passed")


if __name__ == "__main__":
    main()
