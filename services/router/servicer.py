"""RouterService over gRPC: connections for bridgectl and the settings window."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from kommo_bridge.events.v1 import events_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.bus import Publisher, Stream
from libs.errors import ConflictError
from libs.messengers.registry import adapter_named
from libs.rpc import rpc_errors
from services.router.channels import ChannelConnector, webhook_url
from services.router.connections import DISCONNECTED, ConnectionRecord, ConnectionStore
from services.router.health import HealthChecks
from services.router.pausing import ChannelLot
from services.router.settings import settings_changes, settings_pb, source_spec
from services.router.templates import TemplateMirror

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    "active": router_pb2.CONNECTION_STATE_ACTIVE,
    "disconnected": router_pb2.CONNECTION_STATE_DISCONNECTED,
    "paused": router_pb2.CONNECTION_STATE_PAUSED,
}


def _ms(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(
        self,
        store: ConnectionStore,
        connector: ChannelConnector,
        publisher: Publisher,
        public_url: str,
        lot: ChannelLot,
        health: HealthChecks,
        on_change: Callable[[str], None] = lambda connection_id: None,
        templates: TemplateMirror | None = None,
    ) -> None:
        self._templates = templates
        self._lot = lot
        self._health = health
        self._on_change = on_change
        self._store = store
        self._connector = connector
        self._publisher = publisher
        self._public_url = public_url

    async def _sync_source(self, record: ConnectionRecord) -> None:
        """Have kommo_sender create or update the channel's Kommo source now, not at the first message."""
        spec = source_spec(record)
        command = events_pb2.SyncSource(scope_id=record.scope_id, source=spec)
        # Unique per request: a source renamed A → B → A within the dedup window must still end as A
        # (syncing twice is harmless, kommo_sender compares with what Kommo has).
        msg_id = f"source:{record.id}:{uuid.uuid4()}"
        await self._publisher.publish(Stream.CRM_COMMANDS, record.id, command, msg_id)

    async def _to_pb(self, record: ConnectionRecord, held: int | None = None) -> router_pb2.Connection:
        stats = await self._store.stats(record.id)
        if held is None:
            held = (await self._lot.waiting([record.id])).get(record.id, 0)
        adapter = adapter_named(record.platform)
        return router_pb2.Connection(
            connection_id=record.id,
            account_id=record.account_id,
            scope_id=record.scope_id,
            platform=adapter.platform,
            external_id=record.external_id,
            display_name=record.display_name,
            source_external_id=record.source_external_id,
            state=_STATES.get(record.state, router_pb2.CONNECTION_STATE_UNSPECIFIED),
            webhook_url=webhook_url(self._public_url, adapter.name, record.id),
            created_at_ms=int(record.created_at.timestamp() * 1000),
            conversations=stats.conversations,
            last_message_at_ms=int(stats.last_message_at.timestamp() * 1000) if stats.last_message_at else 0,
            settings=settings_pb(record),
            closed_conversations=stats.closed_conversations,
            messages_today=stats.messages_today,
            held_messages=held,
            paused_at_ms=_ms(record.paused_at),
        )

    async def _connected(self, connection_id: str) -> ConnectionRecord:
        record = await self._store.get(connection_id)
        if record.state == DISCONNECTED:
            raise ConflictError("this channel was removed; add it again with its token", code="channel_removed")
        return record

    @rpc_errors
    async def ConnectChannel(
        self, request: router_pb2.ConnectChannelRequest, context: Context
    ) -> router_pb2.Connection:
        changes = settings_changes(request.settings)  # a bad setting is refused before anything is stored
        record = await self._connector.connect(
            request.account_id, request.platform, request.token, request.source_external_id, request.app_secret
        )
        record = await self._store.update_settings(record.id, changes)
        await self._sync_source(record)
        if self._templates is not None:
            await self._templates.sync_quietly(record)
        return await self._to_pb(record)

    @rpc_errors
    async def UpdateChannelSettings(
        self, request: router_pb2.UpdateChannelSettingsRequest, context: Context
    ) -> router_pb2.Connection:
        record = await self._store.update_settings(request.connection_id, settings_changes(request.settings))
        # This replica applies them from the next message; the others within their cache's few seconds.
        self._on_change(record.id)
        if record.state == "active":
            await self._sync_source(record)
        return await self._to_pb(record)

    @rpc_errors
    async def DisconnectChannel(
        self, request: router_pb2.DisconnectChannelRequest, context: Context
    ) -> router_pb2.Connection:
        return await self._to_pb(await self._store.set_state(request.connection_id, "disconnected"))

    @rpc_errors
    async def GetConnection(self, request: router_pb2.GetConnectionRequest, context: Context) -> router_pb2.Connection:
        return await self._to_pb(await self._store.get(request.connection_id))

    @rpc_errors
    async def ListConnections(
        self, request: router_pb2.ListConnectionsRequest, context: Context
    ) -> router_pb2.ListConnectionsResponse:
        records = await self._store.list(request.account_id)
        held = await self._lot.waiting(record.id for record in records)
        return router_pb2.ListConnectionsResponse(
            connections=[await self._to_pb(record, held.get(record.id, 0)) for record in records]
        )

    @rpc_errors
    async def PauseChannel(self, request: router_pb2.PauseChannelRequest, context: Context) -> router_pb2.Connection:
        record = await self._store.pause(request.connection_id)
        self._on_change(record.id)
        return await self._to_pb(record)

    @rpc_errors
    async def ResumeChannel(self, request: router_pb2.ResumeChannelRequest, context: Context) -> router_pb2.Connection:
        record = await self._store.resume(request.connection_id)
        self._on_change(record.id)
        self._lot.wake()  # the held messages go now, not at the releaser's next round
        return await self._to_pb(record)

    @rpc_errors
    async def ListChannelHealth(
        self, request: router_pb2.ListChannelHealthRequest, context: Context
    ) -> router_pb2.ListChannelHealthResponse:
        records = [r for r in await self._store.list(request.account_id) if r.state != DISCONNECTED]
        return router_pb2.ListChannelHealthResponse(channels=await self._health.of(records, fresh=request.fresh))

    @rpc_errors
    async def ReplaceChannelToken(
        self, request: router_pb2.ReplaceChannelTokenRequest, context: Context
    ) -> router_pb2.Connection:
        record = await self._connector.replace_token(
            await self._connected(request.connection_id), request.token, request.app_secret
        )
        self._health.forget(record.id)
        self._on_change(record.id)
        return await self._to_pb(record)

    @rpc_errors
    async def RegisterWebhook(
        self, request: router_pb2.RegisterWebhookRequest, context: Context
    ) -> router_pb2.Connection:
        record = await self._connected(request.connection_id)
        await self._connector.register_again(record)
        self._health.forget(record.id)
        return await self._to_pb(record)
