"""Drives a running stack from both outer sides, through the emulators' control APIs: a Telegram
client writing to the bot, and a manager answering in Kommo."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import nats
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.bus.topology import Stream
from libs.devstack.stack import SANDBOX_DOMAIN, SandboxChannel, Stack
from libs.rpc import call, open_channel
from libs.secret_names import MESSENGER_WEBHOOK_SECRET


@dataclass
class Sandbox:
    stack: Stack
    channel: SandboxChannel
    http: httpx.AsyncClient

    @property
    def scope_id(self) -> str:
        return f"{self.stack.channel_id}_{self.channel.account_id}"

    def user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "first_name": "Client", "last_name": str(user_id), "username": f"client_{user_id}"}

    async def client_writes(self, user_id: int, text: str) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/clients/messages",
            json={"bot_id": self.channel.bot_id, "user": self.user(user_id), "text": text},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def client_sends(self, user: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        """A client with this Telegram profile sends this content (a contact, a photo, ...)."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/clients/messages",
            json={"bot_id": self.channel.bot_id, "user": user, "message": message},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def client_blocks_bot(self, user_id: int) -> None:
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/clients/block",
            json={"bot_id": self.channel.bot_id, "user_id": user_id},
        )
        response.raise_for_status()

    async def manager_writes(self, conversation_id: str, text: str, *, as_bot: bool = False) -> dict[str, Any]:
        """A manager (or, `as_bot`, the channel's Salesbot) writes in the chat."""
        body = {"scope_id": self.scope_id, "conversation_id": conversation_id, "text": text}
        if as_bot:
            body["manager_id"] = self.stack.channel_bot_id
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/manager_messages", json=body)
        response.raise_for_status()
        hook: dict[str, Any] = response.json()["hook"]
        return hook

    async def kommo_messages(self, direction: str = "incoming") -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.stack.kommo_url}/_emulator/messages")
        return [m for m in response.json()["messages"] if m["direction"] == direction]

    async def kommo_chats(self) -> list[dict[str, Any]]:
        chats: list[dict[str, Any]] = (await self.http.get(f"{self.stack.kommo_url}/_emulator/chats")).json()["chats"]
        return chats

    async def kommo_statuses(self) -> dict[str, list[dict[str, Any]]]:
        statuses: dict[str, list[dict[str, Any]]] = (
            await self.http.get(f"{self.stack.kommo_url}/_emulator/statuses")
        ).json()["statuses"]
        return statuses

    async def telegram_sent(self) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.stack.telegram_url}/_emulator/sent", params={"bot_id": self.channel.bot_id}
        )
        sent: list[dict[str, Any]] = response.json()["messages"]
        return sent

    async def conversation_of(self, user_id: int) -> str:
        """Our conversation id of a client, as Kommo knows it."""
        for chat in await self.kommo_chats():
            if chat["client"].get("client_id", "").endswith(f":{user_id}"):
                return str(chat["conversation_id"])
        raise AssertionError(f"no Kommo chat for client {user_id}")

    async def crm(self) -> dict[str, Any]:
        """The sandbox account's CRM at the emulator: pipelines, sources, contacts, leads, links."""
        response = await self.http.get(f"{self.stack.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}/crm")
        response.raise_for_status()
        crm: dict[str, Any] = response.json()
        return crm

    async def seed_contact(self, name: str, phone: str = "", email: str = "") -> int:
        """A contact that already exists in Kommo before the client ever writes."""
        response = await self.http.post(
            f"{self.stack.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}/contacts",
            json={"name": name, "phone": phone, "email": email},
        )
        response.raise_for_status()
        return int(response.json()["contact"]["id"])

    async def rest_calls(self) -> list[dict[str, Any]]:
        """Every REST v4 request the account emulator answered (OAuth excluded), in arrival order."""
        response = await self.http.get(
            f"{self.stack.kommo_accounts_url}/_emulator/requests", params={"path_contains": "/api/v4/"}
        )
        calls: list[dict[str, Any]] = response.json()["requests"]
        return calls

    async def connection(self) -> router_pb2.Connection:
        channel = open_channel(f"127.0.0.1:{self.stack.router_port}", self.stack.service_token)
        try:
            router = router_pb2_grpc.RouterServiceStub(channel)
            request = router_pb2.GetConnectionRequest(connection_id=self.channel.connection_id)
            return await call(router.GetConnection, request)
        finally:
            await channel.close(None)

    async def update_settings(self, **settings: Any) -> router_pb2.Connection:
        channel = open_channel(f"127.0.0.1:{self.stack.router_port}", self.stack.service_token)
        try:
            router = router_pb2_grpc.RouterServiceStub(channel)
            request = router_pb2.UpdateChannelSettingsRequest(
                connection_id=self.channel.connection_id, settings=router_pb2.ChannelSettings(**settings)
            )
            return await call(router.UpdateChannelSettings, request)
        finally:
            await channel.close(None)

    async def post_update(self, update: dict[str, Any], secret: str) -> int:
        """POST a Telegram update straight to the gateway's webhook, as Telegram does (concurrently, if
        the test gathers several); returns the gateway's status code."""
        response = await self.http.post(
            f"{self.stack.public_url}/webhooks/telegram/{self.channel.connection_id}",
            content=json.dumps(update),
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        return response.status_code

    async def webhook_secret(self) -> str:
        channel = open_channel(f"127.0.0.1:{self.stack.auth_port}", self.stack.service_token)
        try:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            request = auth_pb2.GetSecretRequest(owner=self.channel.connection_id, kind=MESSENGER_WEBHOOK_SECRET)
            return (await call(auth.GetSecret, request)).value
        finally:
            await channel.close(None)

    async def pipeline_idle(self) -> bool:
        """Every consumer of every stream has nothing pending and nothing unacknowledged: no message
        is on its way anywhere, so nothing more can arrive (and no duplicate can still show up)."""
        nc = await nats.connect(self.stack.nats_url)
        try:
            js = nc.jetstream()
            for stream in Stream:
                if stream is Stream.DEAD_LETTERS:
                    continue
                for consumer in await js.consumers_info(stream.stream_name):
                    if consumer.num_pending or consumer.num_ack_pending:
                        return False
            return True
        finally:
            await nc.close()

    async def stream_counts(self) -> dict[str, int]:
        nc = await nats.connect(self.stack.nats_url)
        try:
            js = nc.jetstream()
            return {s.name: (await js.stream_info(s.stream_name)).state.messages for s in Stream}
        finally:
            await nc.close()
