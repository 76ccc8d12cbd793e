"""A channel's message templates mirrored into Kommo's chat templates (WhatsApp "write first").

The platform's list is read (with the channel's token, which only the auth service holds) and handed to
kommo_sender as one `SyncTemplates` command: kommo_sender owns every Kommo call and compares with what
Kommo has, so the same list synced twice changes nothing. It is read when a channel connects, when the
platform says a template's review changed (the list then holds the new verdict), and now and then in case
a notification was missed. Templates submitted for a Kommo review are not mirrored: their verdict is
written on that review (services/router/template_reviews.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Final

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2

from libs.bus import Publisher, Stream
from libs.config import Settings
from libs.errors import BridgeError
from libs.messengers.registry import MessageTemplates, adapter_named
from libs.rpc import call
from libs.secret_names import MESSENGER_TOKEN
from services.router.connections import ConnectionRecord, ConnectionStore
from services.router.template_reviews import TemplateReviews

log = logging.getLogger(__name__)

RESYNC_EVERY_S: Final = 3600.0
"""How often every connected account's templates are read again (a missed notification heals by then)."""


class TemplateMirror:
    def __init__(
        self,
        settings: Settings,
        auth: auth_pb2_grpc.AuthServiceAsyncStub,
        http: httpx.AsyncClient,
        publisher: Publisher,
        reviews: TemplateReviews | None = None,
    ) -> None:
        self._settings = settings
        self._auth = auth
        self._http = http
        self._publisher = publisher
        self._reviews = reviews

    @staticmethod
    def applies_to(record: ConnectionRecord) -> bool:
        return isinstance(adapter_named(record.platform), MessageTemplates)

    async def sync(self, record: ConnectionRecord) -> int:
        """Read the channel's templates and have kommo_sender mirror them; how many there were."""
        adapter = adapter_named(record.platform)
        if not isinstance(adapter, MessageTemplates):
            return 0
        request = auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_TOKEN)
        token = (await call(self._auth.GetSecret, request)).value
        templates = await adapter.templates(self._http, adapter.api_base_url(self._settings), token)
        if self._reviews is not None:  # those submitted for a Kommo review are that review's verdicts
            templates = await self._reviews.paired(record, templates)
        command = events_pb2.SyncTemplates(scope_id=record.scope_id, connection_id=record.id, templates=templates)
        # Unique per reading: a verdict that went A → B → A within the dedup window must still end as A.
        await self._publisher.publish(Stream.CRM_COMMANDS, record.id, command, f"templates:{record.id}:{uuid.uuid4()}")
        log.info("templates read for kommo", extra={"connection_id": record.id, "templates": len(templates)})
        return len(templates)

    async def sync_quietly(self, record: ConnectionRecord) -> None:
        """`sync` where a failure must not undo what called it (connecting a channel): logged; the next
        notification or periodic reading catches up."""
        try:
            await self.sync(record)
        except BridgeError as exc:
            log.warning("templates not read", extra={"connection_id": record.id, "reason": str(exc)})

    async def run_periodically(self, store: ConnectionStore, stop: asyncio.Event) -> None:
        """Read every active channel's templates again every `RESYNC_EVERY_S`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESYNC_EVERY_S)
            if stop.is_set():
                return
            for record in await store.list(""):
                if record.state == "active" and self.applies_to(record):
                    await self.sync_quietly(record)
