"""Drives the WhatsApp side of a running stack through the WhatsApp Cloud emulator's control API: a business
number connected to the sandbox Kommo account, its clients writing, reading and going quiet for a day."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from libs.devstack.stack import SANDBOX_DOMAIN
from libs.messengers.whatsapp.adapter import signature
from tests.e2e.sandbox import Sandbox


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The settings API refused with this status and stable code; returns its sentence."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["code"] == code, body
    return str(body["error"])


@dataclass
class WhatsAppBusiness:
    """A business account made at the emulator, with one number, before it is connected."""

    waba_id: str
    phone_number_id: str
    access_token: str
    app_secret: str


async def new_business(sandbox: Sandbox, name: str, phone: str) -> WhatsAppBusiness:
    graph = sandbox.stack.whatsapp_url
    created = await sandbox.http.post(
        f"{graph}/_emulator/businesses",
        json={"name": name, "numbers": [{"display_phone_number": phone, "verified_name": name}]},
    )
    created.raise_for_status()
    business = created.json()
    app = (await sandbox.http.get(f"{graph}/_emulator/app")).json()
    return WhatsAppBusiness(
        business["waba_id"], business["phone_numbers"][0]["id"], business["access_token"], app["secret"]
    )


@dataclass
class WhatsAppNumber:
    sandbox: Sandbox
    business: WhatsAppBusiness
    connection_id: str

    @property
    def _graph(self) -> str:
        return self.sandbox.stack.whatsapp_url

    async def _control(self, method: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.sandbox.http.request(method, f"{self._graph}/_emulator/{route}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def _user(self, wa_id: str) -> dict[str, str]:
        return {"name": f"Client {wa_id[-4:]}", "wa_id": wa_id}

    async def client_sends(self, wa_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """The client sends one message (as WhatsApp notifies it, plus an optional `file`); returns it as
        the emulator stored it, once the webhook was answered."""
        body = {"phone_number_id": self.business.phone_number_id, "user": self._user(wa_id), "message": message}
        result = await self._control("POST", "users/messages", body)
        assert result["delivery"]["status"] == 200, result["delivery"]
        stored: dict[str, Any] = result["messages"][0]
        return stored

    async def client_writes(self, wa_id: str, text_: str) -> dict[str, Any]:
        return await self.client_sends(wa_id, {"type": "text", "text": {"body": text_}})

    async def client_sends_picture(self, wa_id: str, data: bytes, caption: str) -> dict[str, Any]:
        file = {"data_base64": base64.b64encode(data).decode(), "mime_type": "image/jpeg"}
        return await self.client_sends(wa_id, {"type": "image", "image": {"caption": caption}, "file": file})

    async def client_reads(self, wa_id: str) -> list[str]:
        body = {"phone_number_id": self.business.phone_number_id, "user": wa_id}
        read: list[str] = (await self._control("POST", "users/read", body))["read"]
        return read

    async def client_taps(self, wa_id: str, wamid: str, choice: str) -> dict[str, Any]:
        """The client chooses the reply button or list row `choice` (its id) of the business's interactive
        message `wamid`; returns their reply as the emulator stored it, once the webhook was answered."""
        body = {"phone_number_id": self.business.phone_number_id, "user": wa_id, "message_id": wamid, "choice": choice}
        result = await self._control("POST", "users/tap", body)
        assert result["delivery"]["status"] == 200, result["delivery"]
        stored: dict[str, Any] = result["messages"][0]
        return stored

    async def client_online(self, wa_id: str, online: bool) -> None:
        await self._control("PATCH", f"users/{wa_id}", {"online": online})

    async def sent_to(self, wa_id: str) -> list[dict[str, Any]]:
        """What the business sent this client, in order, with each message's statuses."""
        params = {"phone_number_id": self.business.phone_number_id, "to": wa_id}
        response = await self.sandbox.http.get(f"{self._graph}/_emulator/sent", params=params)
        sent: list[dict[str, Any]] = response.json()["messages"]
        return sent

    async def typing_shown(self, wa_id: str) -> bool:
        params = {"phone_number_id": self.business.phone_number_id, "user": wa_id}
        response = await self.sandbox.http.get(f"{self._graph}/_emulator/typing", params=params)
        return bool(response.json()["shown"])

    async def whatsapp_window_age(self, wa_id: str, age: timedelta) -> None:
        """WhatsApp's own clock: the client last wrote `age` ago (the bridge is not told)."""
        body = {"phone_number_id": self.business.phone_number_id, "user": wa_id, "age_s": age.total_seconds()}
        await self._control("PUT", "window", body)

    async def bridge_window_age(self, conversation_id: str, age: timedelta) -> None:
        """The bridge's record: the client's last message in this conversation was `age` ago."""

        def update() -> None:
            engine = create_engine(self.sandbox.stack.database_url)
            try:
                with engine.begin() as conn:
                    conn.execute(
                        text("UPDATE conversations SET client_message_at = :at WHERE id = :id"),
                        {"at": datetime.now(UTC) - age, "id": conversation_id},
                    )
            finally:
                engine.dispose()

        await asyncio.to_thread(update)

    async def meta_posts_statuses(self, wa_id: str, statuses: list[tuple[str, str]]) -> int:
        """Meta notifies statuses `(wamid, status)` in this order, in one signed webhook, straight to the
        gateway (the emulator only ever sends them in order); returns the gateway's HTTP status."""
        now = int(datetime.now(UTC).timestamp())
        entries = [
            {"id": wamid, "status": status, "timestamp": str(now), "recipient_id": wa_id} for wamid, status in statuses
        ]
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": self.business.phone_number_id},
            "statuses": entries,
        }
        return await self.meta_posts(value, "messages")

    async def meta_posts(self, value: dict[str, Any], field: str) -> int:
        """Meta posts one change of `field` for the business account, signed, straight to the gateway;
        returns the gateway's HTTP status."""
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.business.waba_id, "changes": [{"value": value, "field": field}]}],
        }
        body = json.dumps(payload).encode()
        response = await self.sandbox.http.post(
            f"{self.sandbox.stack.public_url}/webhooks/whatsapp/{self.connection_id}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature(self.business.app_secret, body),
            },
        )
        return response.status_code

    async def conversation_of(self, wa_id: str) -> str:
        """Our conversation id of the client, as Kommo knows it."""
        for chat in await self.sandbox.kommo_chats():
            if chat["client"].get("client_id", "") == f"{self.connection_id}:{wa_id}":
                return str(chat["conversation_id"])
        raise AssertionError(f"no Kommo chat for WhatsApp client {wa_id}")

    async def incoming_from(self, wa_id: str) -> list[dict[str, Any]]:
        """What Kommo received from the client, oldest first."""
        client_id = f"{self.connection_id}:{wa_id}"
        return [m for m in await self.sandbox.kommo_messages() if m["sender"].get("client_id", "") == client_id]

    async def business_has_template(self, name: str, body: str) -> dict[str, Any]:
        """A message template of the business account at Meta, as the business created it (pending)."""
        response = await self.sandbox.http.post(
            f"{self._graph}/_emulator/templates",
            json={
                "waba_id": self.business.waba_id,
                "name": name,
                "language": "en_US",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": body}],
            },
        )
        response.raise_for_status()
        template: dict[str, Any] = response.json()
        return template

    async def meta_reviews(self, template: dict[str, Any], event: str) -> int:
        """Meta decides on a template (APPROVED, REJECTED, PAUSED, …) and notifies the bridge's webhook."""
        reviewed = await self.sandbox.http.post(
            f"{self._graph}/_emulator/templates/{template['id']}/review", json={"event": event}
        )
        reviewed.raise_for_status()
        value = {
            "event": event,
            "message_template_id": int(template["id"]),
            "message_template_name": template["name"],
            "message_template_language": template["language"],
            "reason": "NONE",
        }
        return await self.meta_posts(value, "message_template_status_update")

    async def whatsapp_user(self, wa_id: str) -> None:
        """Someone with WhatsApp on this number who never wrote to the business."""
        response = await self.sandbox.http.post(f"{self._graph}/_emulator/users", json=self._user(wa_id))
        response.raise_for_status()

    async def kommo_chat_templates(self) -> list[dict[str, Any]]:
        """The chat templates of the sandbox account at Kommo, with their review status."""
        response = await self.sandbox.http.get(
            f"{self.sandbox.stack.kommo_accounts_url}/_emulator/accounts/{SANDBOX_DOMAIN}/chat_templates"
        )
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["chat_templates"]
        return found


async def connect_number(sandbox: Sandbox, name: str, phone: str) -> WhatsAppNumber:
    """A new business number connected to the sandbox account from the settings window, as an admin does
    (one per test module: each module's tests then use clients of their own)."""
    from tests.e2e.test_settings_api import settings_client  # a test module's helper: imported when used

    business = await new_business(sandbox, name, phone)
    page = await settings_client(sandbox)
    try:
        added = await page.post(
            "/settings/api/channels",
            json={
                "platform": "whatsapp",
                "phone_number_id": business.phone_number_id,
                "waba_id": business.waba_id,
                "token": business.access_token,
                "app_secret": business.app_secret,
            },
        )
    finally:
        await page.aclose()
    assert added.status_code == 201, added.text
    return WhatsAppNumber(sandbox, business, added.json()["channel"]["id"])
