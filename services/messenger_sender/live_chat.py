"""A manager's edits, reactions and typing, out to the messengers.

A platform's refusal (the message is gone, the emoji is not one the platform allows) is logged and the
command is done; only a failure that may pass (a rate limit, an outage, a token being replaced) is
retried. An edit refused for a reason a manager can act on (WhatsApp lets no business edit) is also
reported, so Kommo shows on the message that the change never reached the client. Edits and reactions
are idempotent at the platform (the same edit is "not modified", the same reaction is set again), so a
redelivery may repeat them.
Typing is sent at most once per few seconds per chat, never once expired, and never retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import httpx
from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import Delivery, Publisher, Stream
from libs.config import Settings
from libs.errors import BridgeError, CredentialRejectedError, PermanentError
from libs.messengers.registry import MessengerAdapter, adapter_for
from libs.runtime import TtlCache

log = logging.getLogger(__name__)

TYPING_INTERVAL_S: Final = 4.0
"""A chat action shows for about five seconds: one per four seconds keeps "typing…" on without flooding."""
_TYPING_MEMORY: Final = 10_000


class MessengerLive:
    def __init__(
        self,
        settings: Settings,
        tokens: TtlCache[str, str],
        http: httpx.AsyncClient,
        publisher: Publisher,
        adapters: Callable[[int], MessengerAdapter] = adapter_for,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._http = http
        self._publisher = publisher
        self._adapters = adapters  # the sender's: paced where a reaction counts as a message (WhatsApp)
        self._typing_sent: dict[tuple[str, str], float] = {}

    async def _platform(self, platform: int, connection_id: str) -> tuple[MessengerAdapter, str, str]:
        adapter = self._adapters(platform)
        return adapter, adapter.api_base_url(self._settings), await self._tokens.get(connection_id)

    async def edit(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.EditInMessenger)
        context = {"conversation_id": command.conversation_id, "kommo_message_id": command.kommo_message_id}
        adapter, base_url, token = await self._platform(command.platform, command.connection_id)
        try:
            await adapter.edit(
                self._http, base_url, token, command.chat_id, command.platform_message_id, command.content
            )
        except CredentialRejectedError:
            self._tokens.invalidate(command.connection_id)
            raise
        except PermanentError as exc:
            log.warning("manager edit refused by the messenger", extra={**context, "error": str(exc)})
            if exc.reason:
                await self._report_refused_edit(command, exc)
            return
        log.info("manager edit sent", extra=context)

    async def _report_refused_edit(self, command: events_pb2.EditInMessenger, refusal: PermanentError) -> None:
        report = events_pb2.DeliveryReport(
            kommo_message_id=command.kommo_message_id,
            scope_id=command.scope_id,
            state=events_pb2.DELIVERY_STATE_FAILED,
            error_code=status_texts.code_of(refusal.reason),
            error_text=status_texts.render(refusal.reason, refusal.reason_args, status_texts.DEFAULT_LANGUAGE),
            occurred_at_ms=int(time.time() * 1000),
            conversation_id=command.conversation_id,
            reason=refusal.reason,
            reason_args=refusal.reason_args,
            edit_refused=True,
        )
        msg_id = f"report:{command.kommo_message_id}:edit-refused:{command.edit_id}"
        await self._publisher.publish(Stream.REPORTS, command.kommo_message_id, report, msg_id)

    async def react(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.ReactInMessenger)
        context = {"conversation_id": command.conversation_id, "removed": command.removed}
        adapter, base_url, token = await self._platform(command.platform, command.connection_id)
        try:
            carried = await adapter.react(
                self._http,
                base_url,
                token,
                command.chat_id,
                command.platform_message_id,
                command.emoji,
                command.removed,
            )
        except CredentialRejectedError:
            self._tokens.invalidate(command.connection_id)
            raise
        except PermanentError as exc:
            log.warning("manager reaction refused by the messenger", extra={**context, "error": str(exc)})
            return
        if not carried:
            log.warning(
                "manager reaction not carried: the messenger has none like it",
                extra={**context, "platform": adapter.name, "emoji": command.emoji},
            )
            return
        log.info("manager reaction sent", extra=context)

    async def typing(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.TypingInMessenger)
        if command.expires_at_ms <= time.time() * 1000:
            return
        chat = (command.connection_id, command.chat_id)
        now = time.monotonic()
        if now - self._typing_sent.get(chat, float("-inf")) < TYPING_INTERVAL_S:
            return
        self._remember_typing(chat, now)
        try:
            adapter, base_url, token = await self._platform(command.platform, command.connection_id)
            await adapter.typing(self._http, base_url, token, command.chat_id, command.last_client_message_id)
        except BridgeError as exc:  # fire and forget: a typing that failed is not a message that failed
            log.info("typing not shown", extra={"conversation_id": command.conversation_id, "error": str(exc)})

    def _remember_typing(self, chat: tuple[str, str], now: float) -> None:
        if len(self._typing_sent) >= _TYPING_MEMORY:
            self._typing_sent = {k: at for k, at in self._typing_sent.items() if now - at < TYPING_INTERVAL_S}
        self._typing_sent[chat] = now
