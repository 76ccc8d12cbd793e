"""Drives a running stack from both outer sides, through the emulators' control APIs: a Telegram
client writing to the bot, and a manager answering in Kommo."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import httpx
import nats
from google.protobuf.message import Message as ProtoMessage
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.bus.publisher import Publisher
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

    async def telegram_file(self, data: bytes | AsyncIterable[bytes], kind: str, mime_type: str = "") -> dict[str, Any]:
        """Store the bytes of a file a client is about to send to the bot (`kind`: photo, document, video,
        voice, audio, sticker, video_note, animation); returns its file_id, file_unique_id, file_size and
        sha256, to put in the message given to `client_sends`."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/files",
            params={"bot_id": self.channel.bot_id, "kind": kind, "mime_type": mime_type},
            content=data,
        )
        response.raise_for_status()
        stored: dict[str, Any] = response.json()
        return stored

    async def telegram_local_api(self, enabled: bool) -> None:
        """Make the Telegram emulator play a local Bot API server (no download limit), or the cloud one."""
        response = await self.http.put(f"{self.stack.telegram_url}/_emulator/files/mode", json={"local_api": enabled})
        response.raise_for_status()

    async def kommo_media_downloads(self, msgid: str = "") -> list[dict[str, Any]]:
        """The downloads Kommo made of messages' `media` (status, size, sha256, Content-Type, file name)."""
        response = await self.http.get(
            f"{self.stack.kommo_url}/_emulator/media_downloads", params={"msgid": msgid} if msgid else {}
        )
        downloads: list[dict[str, Any]] = response.json()["downloads"]
        return downloads

    async def client_blocks_bot(self, user_id: int) -> None:
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/clients/block",
            json={"bot_id": self.channel.bot_id, "user_id": user_id},
        )
        response.raise_for_status()

    async def telegram_refuses_next(self, method: str, status: int, description: str) -> None:
        """Telegram answers the next call of `method` (any bot) with this error, as the real one would."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/faults",
            json={"path": f"/{method}$", "status": status, "description": description, "times": 1},
        )
        response.raise_for_status()

    async def admin_opens_settings(self, language: str, user_id: int = 1) -> str:
        """A Kommo user whose interface is in `language` opens the bridge's settings from the widget
        (which sends Kommo's one-time token and that language); returns the window's address."""
        token = await self.http.post(
            f"{self.stack.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}/widget_tokens",
            json={"user_id": user_id},
        )
        token.raise_for_status()
        response = await self.http.post(
            f"{self.stack.public_url}/settings/api/session",
            headers={"X-Auth-Token": token.json()["token"], "Origin": f"https://{SANDBOX_DOMAIN}"},
            json={"lang": language},
        )
        response.raise_for_status()
        return str(response.json()["url"])

    async def manager_writes(self, conversation_id: str, text: str, *, as_bot: bool = False) -> dict[str, Any]:
        """A manager (or, `as_bot`, the channel's Salesbot) writes in the chat."""
        body = {"scope_id": self.scope_id, "conversation_id": conversation_id, "text": text}
        if as_bot:
            body["manager_id"] = self.stack.channel_bot_id
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/manager_messages", json=body)
        response.raise_for_status()
        hook: dict[str, Any] = response.json()["hook"]
        return hook

    async def manager_sends(self, conversation_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """A manager sends `message` (hook fields: type, text, media, file_name, file_size, sticker_id,
        location, contact) in the chat; returns the hook as sent."""
        body = {"scope_id": self.scope_id, "conversation_id": conversation_id, **message}
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/manager_messages", json=body)
        response.raise_for_status()
        hook: dict[str, Any] = response.json()["hook"]
        return hook

    async def manager_writes_first(
        self, phone: str, message: dict[str, Any], *, source_external_id: str = ""
    ) -> dict[str, Any]:
        """A manager writes first to a phone number from Kommo (`message`: hook fields, or a `template`
        {id, external_id, content, params}), through the channel's source `source_external_id` if given:
        Kommo opens a chat and posts a hook without `conversation.client_id` (§9); returns it as sent."""
        body = {"scope_id": self.scope_id, "phone": phone, "source_external_id": source_external_id, **message}
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/manager_messages", json=body)
        response.raise_for_status()
        hook: dict[str, Any] = response.json()["hook"]
        return hook

    async def manager_sends_album(self, conversation_id: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A manager sends several attachments at once: Kommo posts one hook per attachment, in order, all
        with the same media_group_id; returns the hooks as sent."""
        album = str(uuid.uuid4())
        return [await self.manager_sends(conversation_id, {**message, "media_group_id": album}) for message in messages]

    async def kommo_attachment(
        self, name: str, data: bytes | AsyncIterable[bytes], mime_type: str = ""
    ) -> dict[str, Any]:
        """A file a manager attaches in Kommo: its url (on amojo's host), file_name, file_size, mime_type
        and sha256, to put in the message given to `manager_sends`."""
        params = {"name": name, **({"mime": mime_type} if mime_type else {})}
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/attachments", params=params, content=data)
        response.raise_for_status()
        attachment: dict[str, Any] = response.json()
        return attachment

    async def kommo_attachment_fails(self, attachment: dict[str, Any], status: int, times: int = 1) -> None:
        """Kommo answers the next `times` downloads of the attachment with `status`."""
        fault = {"path": f"/attachments/{attachment['id']}/", "status": status, "times": times}
        response = await self.http.post(f"{self.stack.kommo_url}/_emulator/faults", json=fault)
        response.raise_for_status()

    async def telegram_uploads(self, user_id: int | None = None) -> list[dict[str, Any]]:
        """The files the bot sent (to one client): method, via (url/upload/file_id), caption, file name,
        size, MIME type and sha256 of the bytes Telegram got."""
        params: dict[str, Any] = {"bot_id": self.channel.bot_id}
        if user_id is not None:
            params["chat_id"] = user_id
        response = await self.http.get(f"{self.stack.telegram_url}/_emulator/uploads", params=params)
        uploads: list[dict[str, Any]] = response.json()["uploads"]
        return uploads

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

    async def new_bot(self, username: str) -> dict[str, Any]:
        """A further bot, made in BotFather (the emulator): its id, token and username."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/bots", json={"username": username, "first_name": username.title()}
        )
        response.raise_for_status()
        bot: dict[str, Any] = response.json()
        return bot

    async def client_writes_to(self, bot_id: int, user_id: int, text: str) -> dict[str, Any]:
        """A client writes to another bot than the sandbox one; returns the first webhook attempt's outcome."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/clients/messages",
            json={"bot_id": bot_id, "user": self.user(user_id), "text": text},
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def botfather_revokes(self, bot_id: int) -> str:
        """The bot's owner revokes its token in BotFather: the old one stops working; returns the new one."""
        response = await self.http.post(f"{self.stack.telegram_url}/_emulator/bots/{bot_id}/revoke")
        response.raise_for_status()
        return str(response.json()["token"])

    async def telegram_webhook_failed(self, bot_id: int, message: str) -> None:
        """Telegram reports a failed delivery to the bot's webhook (getWebhookInfo's last error)."""
        response = await self.http.post(
            f"{self.stack.telegram_url}/_emulator/bots/{bot_id}/webhook_error", json={"message": message}
        )
        response.raise_for_status()

    async def secret_of(self, connection_id: str, kind: str = MESSENGER_WEBHOOK_SECRET) -> str:
        """A connection's secret as the auth service keeps it (for asserting that it changed)."""
        channel = open_channel(f"127.0.0.1:{self.stack.auth_port}", self.stack.service_token)
        try:
            request = auth_pb2.GetSecretRequest(owner=connection_id, kind=kind)
            return (await call(auth_pb2_grpc.AuthServiceStub(channel).GetSecret, request)).value
        finally:
            await channel.close(None)

    # -- live chat: replies, edits, reactions and typing on both sides

    async def _control(self, base_url: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"{base_url}/_emulator/{route}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def client_edits(self, user_id: int, message_id: int, *, text: str = "", caption: str = "") -> dict[str, Any]:
        """The client changes one of their messages (its text, or a media message's caption)."""
        body: dict[str, Any] = {"bot_id": self.channel.bot_id, "user_id": user_id, "message_id": message_id}
        body.update({"text": text} if text else {"caption": caption})
        return await self._control(self.stack.telegram_url, "clients/edits", body)

    async def client_reacts(self, user_id: int, message_id: int, emoji: list[str]) -> dict[str, Any]:
        """The client sets their reactions on a message (an empty list takes them back)."""
        body = {"bot_id": self.channel.bot_id, "user_id": user_id, "message_id": message_id, "emoji": emoji}
        return await self._control(self.stack.telegram_url, "clients/reactions", body)

    async def manager_replies(self, conversation_id: str, text: str, quoting: str) -> dict[str, Any]:
        """A manager answers quoting a message (`quoting`: its Kommo id)."""
        body = {"scope_id": self.scope_id, "conversation_id": conversation_id, "text": text, "reply_to": quoting}
        hook: dict[str, Any] = (await self._control(self.stack.kommo_url, "manager_messages", body))["hook"]
        return hook

    async def manager_edits(self, kommo_msgid: str, text: str) -> dict[str, Any]:
        hook: dict[str, Any] = (
            await self._control(self.stack.kommo_url, "manager_edits", {"kommo_msgid": kommo_msgid, "text": text})
        )["hook"]
        return hook

    async def manager_reacts(self, kommo_msgid: str, emoji: str, *, removed: bool = False) -> dict[str, Any]:
        body = {"kommo_msgid": kommo_msgid, "emoji": emoji, "removed": removed}
        hook: dict[str, Any] = (await self._control(self.stack.kommo_url, "manager_reactions", body))["hook"]
        return hook

    async def manager_types(self, conversation_id: str, *, late_by_s: int = 0) -> dict[str, Any]:
        body = {"scope_id": self.scope_id, "conversation_id": conversation_id, "late_by_s": late_by_s}
        hook: dict[str, Any] = (await self._control(self.stack.kommo_url, "manager_typing", body))["hook"]
        return hook

    async def _emulator_list(self, base_url: str, route: str, key: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get(f"{base_url}/_emulator/{route}", params=params)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()[key]
        return found

    async def telegram_edits(self, chat_id: int) -> list[dict[str, Any]]:
        """What the bot changed in its messages to this client (editMessageText / editMessageCaption)."""
        return await self._emulator_list(self.stack.telegram_url, "edits", "edits", chat_id=chat_id)

    async def telegram_reactions(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's setMessageReaction calls in this client's chat."""
        return await self._emulator_list(self.stack.telegram_url, "reactions", "reactions", chat_id=chat_id)

    async def telegram_chat_actions(self, chat_id: int) -> list[dict[str, Any]]:
        return await self._emulator_list(self.stack.telegram_url, "chat_actions", "actions", chat_id=chat_id)

    async def kommo_reactions(self, conversation_id: str) -> list[dict[str, Any]]:
        reactions = await self._emulator_list(self.stack.kommo_url, "reactions", "reactions")
        return [r for r in reactions if r["conversation_id"] == conversation_id]

    async def kommo_typing(self, conversation_id: str) -> list[dict[str, Any]]:
        typing = await self._emulator_list(self.stack.kommo_url, "typing", "typing")
        return [t for t in typing if t["conversation_id"] == conversation_id]

    async def publish(self, stream: Stream, key: str, message: ProtoMessage, msg_id: str) -> None:
        """Put an event on the bus as a service would (for events no emulator can make happen)."""
        nc = await nats.connect(self.stack.nats_url)
        try:
            await Publisher(nc.jetstream(), self.stack.partitions).publish(stream, key, message, msg_id)
        finally:
            await nc.close()
