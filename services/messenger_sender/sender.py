"""Manager messages out to the messengers, each at most once, with its outcome reported to Kommo.

A message already in `messenger_deliveries` is never sent again; its report is re-published instead
(harmless: reports are deduplicated and only move forward). A send is claimed before the platform is
called: if the sender dies during the call, the redelivered message finds the claim unsettled and is
reported to Kommo as not confirmed (the manager can send it again) rather than risk showing the
client the same message twice. A retryable failure we saw happen releases the claim and is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import Delivery, Publisher, Stream
from libs.bus.consumer import DEFAULT_MAX_DELIVER
from libs.config import Settings
from libs.db.retry import persist_after_effect
from libs.errors import CredentialRejectedError, PermanentError, RecipientUnavailableError, RetryableError
from libs.messengers.registry import adapter_for
from libs.observability import count_message
from libs.rpc import call
from libs.runtime import TtlCache
from libs.secret_names import MESSENGER_TOKEN
from services.messenger_sender.outcomes import SENDING, Outcome, OutcomeStore

log = logging.getLogger(__name__)

TOKEN_CACHE_TTL_S = 60.0


class MessengerSender:
    def __init__(
        self,
        settings: Settings,
        outcomes: OutcomeStore,
        auth: auth_pb2_grpc.AuthServiceAsyncStub,
        publisher: Publisher,
        http: httpx.AsyncClient,
    ) -> None:
        self._settings = settings
        self._outcomes = outcomes
        self._publisher = publisher
        self._http = http
        self._auth = auth
        self._tokens: TtlCache[str, str] = TtlCache(TOKEN_CACHE_TTL_S, self._load_token)

    @property
    def tokens(self) -> TtlCache[str, str]:
        """The messenger tokens of connections, briefly cached (shared with the live-chat handlers)."""
        return self._tokens

    async def _load_token(self, connection_id: str) -> str:
        response = await call(
            self._auth.GetSecret, auth_pb2.GetSecretRequest(owner=connection_id, kind=MESSENGER_TOKEN)
        )
        return response.value

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.DeliverToMessenger)
        previous = await self._outcomes.claim(command.kommo_message_id, command.connection_id)
        if previous is not None and previous.outcome == SENDING:
            base = Outcome(command.kommo_message_id, command.connection_id, "failed")
            interrupted = _failed(base, status_texts.INTERRUPTED_SEND)
            await persist_after_effect(lambda: self._outcomes.save(interrupted))
            count_message(command.platform, "outbound", "failed")
            await self._report(command, interrupted)
            return
        if previous is not None:
            count_message(command.platform, "outbound", "duplicate")
            await self._report(command, previous)
            return
        try:
            outcome = await self._send(command, delivery.attempt)
        except Exception:
            # Refused for now (429, 5xx, a timeout, a revoked token): the call is retried later. A
            # cancellation (shutdown mid-call) keeps the claim: that send's fate is unknown.
            await self._outcomes.release(command.kommo_message_id)
            raise
        await persist_after_effect(lambda: self._outcomes.save(outcome))
        count_message(command.platform, "outbound", "delivered" if outcome.outcome == "sent" else "failed")
        await self._report(command, outcome)

    async def _send(self, command: events_pb2.DeliverToMessenger, attempt: int) -> Outcome:
        adapter = adapter_for(command.platform)
        token = await self._tokens.get(command.connection_id)
        base = Outcome(command.kommo_message_id, command.connection_id, "sent")
        try:
            platform_id = await adapter.send(
                self._http,
                adapter.api_base_url(self._settings),
                token,
                command.chat_id,
                command.content,
                reply_to=command.reply_to_platform_message_id,
                limits=adapter.media_limits(self._settings),
            )
        except RecipientUnavailableError as exc:
            return _failed(base, exc.reason or status_texts.CONVERSATION_CLOSED, exc.reason_args)
        except CredentialRejectedError:
            self._tokens.invalidate(command.connection_id)
            raise
        except PermanentError as exc:
            if exc.reason:
                return _failed(base, exc.reason, exc.reason_args)
            return _failed(base, status_texts.PLATFORM_REFUSED, {"platform": adapter.name, "detail": str(exc)})
        except RetryableError as exc:
            if attempt >= DEFAULT_MAX_DELIVER:
                log.warning(
                    "messenger kept refusing, given up",
                    extra={"kommo_message_id": command.kommo_message_id, "error": str(exc)},
                )
                return _failed(base, status_texts.PLATFORM_UNAVAILABLE, {"platform": adapter.name})
            raise
        log.info(
            "sent to messenger",
            extra={"kommo_message_id": command.kommo_message_id, "conversation_id": command.conversation_id},
        )
        return Outcome(command.kommo_message_id, command.connection_id, "sent", platform_message_id=platform_id)

    async def _report(self, command: events_pb2.DeliverToMessenger, outcome: Outcome) -> None:
        # A bot API accepting a message is the best "delivered" some platforms (Telegram) ever give.
        state = events_pb2.DELIVERY_STATE_DELIVERED if outcome.outcome == "sent" else events_pb2.DELIVERY_STATE_FAILED
        report = events_pb2.DeliveryReport(
            kommo_message_id=command.kommo_message_id,
            scope_id=command.scope_id,
            state=state,
            error_code=outcome.error_code,
            error_text=outcome.error_text,
            reason=outcome.reason,
            reason_args=outcome.reason_args,
            platform_message_id=outcome.platform_message_id,
            occurred_at_ms=int(time.time() * 1000),
            # The router maps the platform's id of the message to Kommo's with it.
            conversation_id=command.conversation_id,
        )
        await self._publisher.publish(
            Stream.REPORTS, command.kommo_message_id, report, f"report:{command.kommo_message_id}:{state}"
        )


def _failed(base: Outcome, reason: str, reason_args: Mapping[str, str] | None = None) -> Outcome:
    """A failure as the manager will read it: `reason` is a key of libs.status_texts (its Kommo code comes
    with it; the English text is kept as the fallback)."""
    args = dict(reason_args or {})
    code = status_texts.code_of(reason)
    log.warning(
        "messenger refused message",
        extra={"kommo_message_id": base.kommo_message_id, "error_code": code, "reason": reason},
    )
    text = status_texts.render(reason, args, status_texts.DEFAULT_LANGUAGE)
    return Outcome(
        base.kommo_message_id,
        base.connection_id,
        "failed",
        error_code=code,
        error_text=text,
        reason=reason,
        reason_args=args,
    )
