"""The messenger_sender process: every call to a messenger API."""

from __future__ import annotations

import asyncio
import logging

import httpx
from kommo_bridge.auth.v1 import auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2

from libs.bus import Consumer, Dispatcher, Publisher, Stream, connect, ensure_streams
from libs.config import Settings
from libs.db import create_engine
from libs.ratelimit import SharedRateLimiter
from libs.rpc import open_channel
from libs.runtime import mark_ready
from services.messenger_sender.live_chat import MessengerLive
from services.messenger_sender.outcomes import OutcomeStore
from services.messenger_sender.sender import MessengerSender

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("database_url", "nats_url", "service_token")
    engine = create_engine(settings.database_url)
    nc = await connect(settings.nats_servers, "messenger_sender")
    js = nc.jetstream()
    await ensure_streams(js, settings.stream_replicas)
    auth_channel = open_channel(settings.auth_grpc_addr, settings.service_token.get_secret_value())
    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as http:
        sender = MessengerSender(
            settings,
            OutcomeStore(engine),
            auth_pb2_grpc.AuthServiceStub(auth_channel),
            Publisher(js, settings.partitions),
            http,
            SharedRateLimiter(engine),
        )
        live = MessengerLive(settings, sender.tokens, http, Publisher(js, settings.partitions), sender.sending_adapter)
        commands = Dispatcher(
            {
                events_pb2.DeliverToMessenger: sender.handle,
                events_pb2.EditInMessenger: live.edit,
                events_pb2.ReactInMessenger: live.react,
                events_pb2.TypingInMessenger: live.typing,
            },
            untyped=events_pb2.DeliverToMessenger,
        )
        consumer = Consumer(
            js,
            consumer="messenger_sender",
            stream=Stream.MESSENGER_COMMANDS,
            partitions=settings.partitions,
            handler=commands,
        )
        await consumer.start()
        mark_ready()
        log.info("ready", extra={"partitions": settings.partitions})
        await stop.wait()
        await consumer.stop()
    await auth_channel.close(None)
    await nc.drain()
    await engine.dispose()
