"""Sizes of clients' files, for platforms whose webhooks leave them out (WhatsApp).

amojo requires `file_size` for files, videos and pictures, and an event should say what it carries; the
WhatsApp webhook names a file only by its media id. So before publishing, the gateway asks the platform
for the size (Graph's `GET /{media-id}`: metadata only, no download), once per file, with a short budget.
The size is a nicety, never a reason to lose a message: when the platform cannot say in time the event
goes without it (size 0), and the signed link still serves the file with the platform's Content-Length.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import httpx
from kommo_bridge.events.v1 import events_pb2

from libs.config import Settings
from libs.errors import BridgeError
from libs.messengers.registry import FileSizing, MessengerAdapter
from services.gateway.credentials import GatewayCredentials

log = logging.getLogger(__name__)

SIZE_LOOKUP_TIMEOUT_S: Final = 3.0
"""Each lookup's budget: the platform waits for the webhook's answer meanwhile (Meta allows seconds)."""


class FileSizes:
    def __init__(self, credentials: GatewayCredentials, http: httpx.AsyncClient, settings: Settings) -> None:
        self._credentials = credentials
        self._http = http
        self._settings = settings

    async def fill(
        self, adapter: MessengerAdapter, connection_id: str, events: list[events_pb2.InboundMessage]
    ) -> None:
        """Set the size of each client's file in `events` the platform left without one (in place)."""
        base_url = adapter.api_base_url(self._settings)
        if not isinstance(adapter, FileSizing):
            return
        for event in events:
            which = event.WhichOneof("event")
            body = event.content if which == "content" else event.edited if which == "edited" else None
            kind = body.WhichOneof("body") if body is not None else None
            if body is None or kind not in ("media", "sticker"):
                continue
            file = body.media if kind == "media" else body.sticker
            if file.size > 0 or not file.file_ref:
                continue
            size = await self._size(adapter, base_url, connection_id, file.file_ref)
            if size is not None and size > 0:
                file.size = size

    async def _size(self, adapter: FileSizing, base_url: str, connection_id: str, file_ref: str) -> int | None:
        try:
            token = await self._credentials.messenger_token(connection_id)
            async with asyncio.timeout(SIZE_LOOKUP_TIMEOUT_S):
                return await adapter.file_size(self._http, base_url, token, file_ref)
        except (BridgeError, TimeoutError) as exc:
            log.warning(
                "file size unknown: the event goes without it",
                extra={"connection_id": connection_id, "error_type": type(exc).__name__},
            )
            return None
