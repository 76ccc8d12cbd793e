"""Manager messages out to the messengers, each at most once, with its outcome reported to Kommo.

A message already in `messenger_deliveries` is never sent again; its report is re-published instead
(harmless: reports are deduplicated and only move forward). A send is claimed before the platform is
called: if the sender dies during the call, the redelivered message finds the claim unsettled and is
reported to Kommo as not confirmed (the manager can send it again) rather than risk showing the
client the same message twice. A retryable failure we saw happen releases the claim and is retried.

A manager's album comes as one command; each of its messages is claimed, settled and reported on its
own, exactly like a single message, and the platform gets the album in as few calls as it allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import Delivery, Publisher, Stream
from libs.bus.consumer import DEFAULT_MAX_DELIVER
from libs.config import Settings
from libs.db.retry import persist_after_effect
from libs.errors import (
    CredentialRejectedError,
    PermanentError,
    RateLimitedError,
    RecipientUnavailableError,
    RetryableError,
)
from libs.messengers.registry import AlbumSending, MessengerAdapter, accepted_state, adapter_for, album_runs, paced
from libs.observability import count_message
from libs.ratelimit import SharedRateLimiter, retry_pause
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
        limiter: SharedRateLimiter | None = None,
    ) -> None:
        self._settings = settings
        self._outcomes = outcomes
        self._publisher = publisher
        self._http = http
        self._auth = auth
        self._tokens: TtlCache[str, str] = TtlCache(TOKEN_CACHE_TTL_S, self._load_token)
        self._limiter = limiter
        self._sending: dict[int, MessengerAdapter] = {}

    @property
    def tokens(self) -> TtlCache[str, str]:
        """The messenger tokens of connections, briefly cached (shared with the live-chat handlers)."""
        return self._tokens

    def sending_adapter(self, platform: int) -> MessengerAdapter:
        """The platform's adapter, its sends paced by the limits every replica shares (where it has any)."""
        if platform not in self._sending:
            adapter = adapter_for(platform)
            limiter = self._limiter
            self._sending[platform] = adapter if limiter is None else paced(adapter, limiter, self._settings)
        return self._sending[platform]

    async def _load_token(self, connection_id: str) -> str:
        response = await call(
            self._auth.GetSecret, auth_pb2.GetSecretRequest(owner=connection_id, kind=MESSENGER_TOKEN)
        )
        return response.value

    async def handle(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.DeliverToMessenger)
        if command.album:
            await self._album(command, delivery.attempt)
            return
        item = events_pb2.AlbumItem(kommo_message_id=command.kommo_message_id, content=command.content)
        if await self._claimed([item], command):
            await self._deliver(command, [item], command.reply_to_platform_message_id, delivery.attempt)

    async def _album(self, command: events_pb2.DeliverToMessenger, attempt: int) -> None:
        """A manager's album: sent in the runs the platform groups as one album (every item alone on a
        platform without albums), in order, each run claimed just before its call, so a send cut off
        mid-call leaves only that run unconfirmed. Only the first message carries the quote."""
        adapter = adapter_for(command.platform)
        items = list(command.album)
        reply_to = command.reply_to_platform_message_id
        for run in album_runs(adapter, [item.content for item in items], adapter.media_limits(self._settings)):
            ours = await self._claimed([items[index] for index in run], command)
            if ours:
                await self._deliver(command, ours, reply_to, attempt)
            reply_to = ""

    async def _claimed(
        self, items: list[events_pb2.AlbumItem], command: events_pb2.DeliverToMessenger
    ) -> list[events_pb2.AlbumItem]:
        """Claim each item's send; an item claimed before is reported as that attempt left it (unconfirmed
        if it was cut off mid-call) and left out. Returns the items now ours to send."""
        ours = []
        for item in items:
            previous = await self._outcomes.claim(item.kommo_message_id, command.connection_id)
            if previous is None:
                ours.append(item)
            elif previous.outcome == SENDING:
                base = Outcome(item.kommo_message_id, command.connection_id, "failed")
                interrupted = _failed(base, status_texts.INTERRUPTED_SEND)
                await persist_after_effect(partial(self._outcomes.save, interrupted))
                count_message(command.platform, "outbound", "failed")
                await self._report(command, interrupted)
            else:
                count_message(command.platform, "outbound", "duplicate")
                await self._report(command, previous)
        return ours

    async def _deliver(
        self, command: events_pb2.DeliverToMessenger, items: list[events_pb2.AlbumItem], reply_to: str, attempt: int
    ) -> None:
        """Send claimed items with one platform call (one message, or one album), then settle and report
        each. A failure is every item's, with the same reason."""
        try:
            outcomes = await self._send(command, items, reply_to, attempt)
        except Exception:
            # Refused for now (429, 5xx, a timeout, a revoked token): the call is retried later. A
            # cancellation (shutdown mid-call) keeps the claims: that send's fate is unknown.
            for item in items:
                await self._outcomes.release(item.kommo_message_id)
            raise
        for outcome in outcomes:
            await persist_after_effect(partial(self._outcomes.save, outcome))
            count_message(command.platform, "outbound", "delivered" if outcome.outcome == "sent" else "failed")
            await self._report(command, outcome)

    async def _send(
        self, command: events_pb2.DeliverToMessenger, items: list[events_pb2.AlbumItem], reply_to: str, attempt: int
    ) -> list[Outcome]:
        adapter = self.sending_adapter(command.platform)
        token = await self._tokens.get(command.connection_id)
        base_url, limits = adapter.api_base_url(self._settings), adapter.media_limits(self._settings)
        ids = [item.kommo_message_id for item in items]
        try:
            if len(items) == 1:
                content = items[0].content
                platform_ids = [
                    await adapter.send(self._http, base_url, token, command.chat_id, content, reply_to, limits)
                ]
            elif isinstance(adapter, AlbumSending):
                contents = [item.content for item in items]
                platform_ids = await adapter.send_album(
                    self._http, base_url, token, command.chat_id, contents, reply_to, limits
                )
            else:
                raise PermanentError(f"{adapter.name} sends no albums: its items go one by one")
        except RecipientUnavailableError as exc:
            return self._all_failed(command, ids, exc.reason or status_texts.CONVERSATION_CLOSED, exc.reason_args)
        except CredentialRejectedError:
            self._tokens.invalidate(command.connection_id)
            raise
        except PermanentError as exc:
            if exc.reason:
                return self._all_failed(command, ids, exc.reason, exc.reason_args)
            args = {"platform": adapter.name, "detail": str(exc)}
            return self._all_failed(command, ids, status_texts.PLATFORM_REFUSED, args)
        except RetryableError as exc:
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                exc.retry_after = retry_pause(exc.retry_after, attempt)  # the platform's limit: back off further
            if attempt >= DEFAULT_MAX_DELIVER:
                log.warning("messenger kept refusing, given up", extra={"kommo_message_ids": ids, "error": str(exc)})
                return self._all_failed(command, ids, status_texts.PLATFORM_UNAVAILABLE, {"platform": adapter.name})
            raise
        for kommo_id in ids:
            log.info(
                "sent to messenger",
                extra={
                    "kommo_message_id": kommo_id,
                    "conversation_id": command.conversation_id,
                    "in_one_call": len(ids),
                },
            )
        return [
            Outcome(kommo_id, command.connection_id, "sent", platform_message_id=platform_id)
            for kommo_id, platform_id in zip(ids, platform_ids, strict=True)
        ]

    @staticmethod
    def _all_failed(
        command: events_pb2.DeliverToMessenger, ids: list[str], reason: str, reason_args: Mapping[str, str] | None
    ) -> list[Outcome]:
        return [_failed(Outcome(kommo_id, command.connection_id, "failed"), reason, reason_args) for kommo_id in ids]

    async def _report(self, command: events_pb2.DeliverToMessenger, outcome: Outcome) -> None:
        # A bot API accepting a message is the best "delivered" some platforms (Telegram) ever give; where
        # the platform's receipts follow (WhatsApp), it is "sent" until they come.
        accepted = accepted_state(adapter_for(command.platform))
        state = accepted if outcome.outcome == "sent" else events_pb2.DELIVERY_STATE_FAILED
        report = events_pb2.DeliveryReport(
            kommo_message_id=outcome.kommo_message_id,
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
            Stream.REPORTS, outcome.kommo_message_id, report, f"report:{outcome.kommo_message_id}:{state}"
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
