"""Inbound webhooks: verify first, then publish, and answer only once the event is durable.

Nothing is published for a request that fails verification or parsing; the error tree decides the
HTTP status (`libs.errors.http_status`), and the body says what was wrong without echoing secrets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping

from google.protobuf.message import Message as ProtoMessage
from kommo_bridge.events.v1 import events_pb2
from nats.aio.client import Client as NATS
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from libs.bus import TYPE_HEADER, Publisher, Stream
from libs.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    MissingCredentialError,
    NotFoundError,
    RetryableError,
    http_status,
)
from libs.kommo.hooks import hook_msg_id, parse_hook
from libs.kommo.signing import verify_hook_signature
from libs.messengers.registry import MessengerAdapter, adapter_named, webhook_answer
from libs.observability import HOP_SECONDS, WEBHOOKS, service_name, tracer
from services.gateway.credentials import GatewayCredentials
from services.gateway.file_sizes import FileSizes
from services.gateway.spool import HookSpool

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Kommo allows 5 s for the whole hook; the spool fallback needs part of that.
KOMMO_PUBLISH_TIMEOUT_S = 1.5


def error_response(error: BridgeError) -> JSONResponse:
    status = http_status(error)
    # A caller learns what was wrong with its request, never details of our own failures.
    message = str(error) if status < 500 else "temporarily unavailable, please retry"
    return JSONResponse({"ok": False, "error": message}, status_code=status)


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequestError("body too large")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequestError("body too large")
    return body


class Webhooks:
    def __init__(
        self,
        credentials: GatewayCredentials,
        publisher: Publisher,
        spool: HookSpool,
        nc: NATS,
        file_sizes: FileSizes | None = None,
    ) -> None:
        self._credentials = credentials
        self._publisher = publisher
        self._spool = spool
        self._nc = nc
        self._file_sizes = file_sizes

    async def messenger(self, request: Request) -> Response:
        """POST /webhooks/{platform}/{connection_id}: a messenger platform delivers an update."""
        try:
            platform = adapter_named(request.path_params["platform"]).name
        except NotFoundError:
            platform = "unknown"  # never a label value a caller chose
        return await self._observed(platform, self._messenger(request))

    async def messenger_check(self, request: Request) -> Response:
        """GET /webhooks/{platform}/{connection_id}: a platform checks the URL before it sends there
        (WhatsApp's hub.challenge); the answer is the text it asked to see echoed, or 403."""
        try:
            platform = adapter_named(request.path_params["platform"]).name
        except NotFoundError:
            platform = "unknown"  # never a label value a caller chose
        return await self._observed(platform, self._messenger_check(request))

    async def kommo(self, request: Request) -> Response:
        """POST /webhooks/kommo/{scope_id}: a manager's message from Kommo, sent once and never retried."""
        return await self._observed("kommo", self._kommo(request))

    async def observed(self, platform: str, handling: Awaitable[Response]) -> Response:
        """`handling`'s answer, counted and timed like every webhook's."""
        return await self._observed(platform, handling)

    def log_refusal(self, message: str, exc: BridgeError, **context: str) -> None:
        self._log_refusal(message, exc, **context)

    @staticmethod
    async def _observed(platform: str, handling: Awaitable[Response]) -> Response:
        """Count and time the answer; the span is the root of the message's trace across services."""
        started = time.monotonic()
        with tracer().start_as_current_span(f"webhook {platform}", kind=SpanKind.SERVER) as span:
            response = await handling
            span.set_attribute("http.response.status_code", response.status_code)
        WEBHOOKS.labels(platform, str(response.status_code)).inc()
        HOP_SECONDS.labels(service_name(), "gateway_publish").observe(time.monotonic() - started)
        return response

    async def _messenger(self, request: Request) -> Response:
        connection_id = request.path_params["connection_id"]
        try:
            adapter = adapter_named(request.path_params["platform"])
            body = await read_body(request)
            await self.verify_messenger(adapter, request.headers, body, connection_id)
            events = adapter.parse_webhook(body, connection_id)
            if not events:
                return JSONResponse({"ok": True, "ignored": True})
            # Platforms retry until they get a 2xx, so a bus failure answers 503 and nothing is lost; the
            # events published before it are deduplicated by their ids when the request comes again.
            await self.publish_inbound(adapter, connection_id, events)
        except BridgeError as exc:
            self._log_refusal("messenger webhook refused", exc, connection_id=connection_id)
            return error_response(exc)
        # Some platforms run a method given as the answer (Telegram: stop a tapped button's spinner).
        return JSONResponse(webhook_answer(adapter, events) or {"ok": True})

    async def publish_inbound(
        self, adapter: MessengerAdapter, connection_id: str, events: list[events_pb2.InboundMessage]
    ) -> None:
        """Publish a connection's verified events (sizes of clients' files filled in first), in order."""
        if self._file_sizes is not None:
            await self._file_sizes.fill(adapter, connection_id, events)
        for event in events:
            # A client's stable platform id, where there is one (WhatsApp's BSUID), keeps their messages in one
            # lane when their number is hidden or changes (services/router/identities.py).
            client = event.sender.platform_user_id or event.chat_id
            await self._publisher.publish(Stream.INBOUND, f"{connection_id}:{client}", event, event.event_id)

    async def verify_messenger(
        self, adapter: MessengerAdapter, headers: Mapping[str, str], body: bytes, connection_id: str
    ) -> None:
        """`body` came from the platform for this connection; AuthError otherwise. Checked against the cached
        secret; on a mismatch, once more against the stored one (an admin may have just given the bot a new
        token, which registers a new secret), at most every few seconds."""
        kind = adapter.webhook_secret_kind
        secret = await self._credentials.webhook_secret(connection_id, kind)
        try:
            adapter.verify_webhook(headers, body, secret)
        except MissingCredentialError:
            raise
        except AuthError:
            stored = await self._credentials.webhook_secret_again(connection_id, kind)
            if stored is None or stored == secret:
                raise
            adapter.verify_webhook(headers, body, stored)

    async def _messenger_check(self, request: Request) -> Response:
        connection_id = request.path_params["connection_id"]
        try:
            adapter = adapter_named(request.path_params["platform"])
            query = request.query_params
            secret = await self._credentials.webhook_secret(connection_id)
            try:
                answer = adapter.verify_handshake(query, secret)
            except AuthError:
                # The webhook secret is registered with the platform as the check's token just before the
                # platform checks: the cached one may be the one it replaced.
                stored = await self._credentials.webhook_secret_again(connection_id)
                if stored is None or stored == secret:
                    raise
                answer = adapter.verify_handshake(query, stored)
        except AuthError as exc:
            self._log_refusal("messenger webhook check refused", exc, connection_id=connection_id)
            return PlainTextResponse("Forbidden", status_code=403)
        except BridgeError as exc:
            self._log_refusal("messenger webhook check refused", exc, connection_id=connection_id)
            return error_response(exc)
        return PlainTextResponse(answer)

    async def _kommo(self, request: Request) -> Response:
        scope_id = request.path_params["scope_id"]
        try:
            body = await read_body(request)
            channel = await self._credentials.channel()
            signature = request.headers.get("x-signature", "")
            if not signature:
                raise MissingCredentialError("missing X-Signature")
            if not verify_hook_signature(channel.channel_secret, body, signature):
                raise AuthError("X-Signature does not match the body")
            await self._credentials.check_scope(scope_id)
            # A message, a reaction or typing: one lane per conversation keeps them in the order sent.
            event = parse_hook(body, scope_id)
            key = event.conversation_id or event.kommo_chat_id
            await self._publish_or_spool(key, hook_msg_id(event), event)
        except BridgeError as exc:
            self._log_refusal("kommo hook refused", exc, scope_id=scope_id)
            return error_response(exc)
        return JSONResponse({"ok": True})

    async def _publish_or_spool(self, key: str, msg_id: str, event: ProtoMessage) -> None:
        payload, message_type = event.SerializeToString(), event.DESCRIPTOR.full_name
        async with self._spool.ordered(key):
            if self._nc.is_connected and not await self._spool.holds(key):
                try:
                    await self._publisher.publish(
                        Stream.OUTBOUND,
                        key,
                        payload,
                        msg_id,
                        headers={TYPE_HEADER: message_type},
                        ack_timeout=KOMMO_PUBLISH_TIMEOUT_S,
                    )
                    return
                except RetryableError:
                    pass
            await self._spool.put(Stream.OUTBOUND, key, msg_id, payload, message_type)

    @staticmethod
    def _log_refusal(message: str, exc: BridgeError, **context: str) -> None:
        level = logging.WARNING if isinstance(exc, RetryableError) else logging.INFO
        log.log(level, message, extra={**context, "error_type": type(exc).__name__, "detail": str(exc)})
