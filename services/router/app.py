"""The router process: three consumers (inbound, outbound, the reports that map messages) and the
RouterService."""

from __future__ import annotations

import asyncio
import logging

import httpx
from kommo_bridge.auth.v1 import auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2
from kommo_bridge.router.v1 import router_pb2, router_pb2_grpc

from libs.bus import Consumer, Dispatcher, Publisher, Stream, connect, ensure_streams
from libs.config import Settings
from libs.db import create_engine
from libs.rpc import GrpcServer, open_channel
from libs.runtime import TtlCache, mark_ready
from services.router.albums import Albums
from services.router.channels import ChannelConnector
from services.router.connections import ConnectionStore
from services.router.context import RoutingContext
from services.router.conversations import ConversationStore
from services.router.health import HealthChecks
from services.router.inbound import InboundRouter
from services.router.message_map import MapLearner, MessageMap
from services.router.outbound import OutboundRouter
from services.router.pausing import ChannelLot
from services.router.retention import router_pruner
from services.router.servicer import RouterServicer
from services.router.template_reviews import TemplateReviews
from services.router.templates import TemplateMirror

log = logging.getLogger(__name__)

CONNECTION_CACHE_TTL_S = 5.0


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("database_url", "nats_url", "service_token")
    token = settings.service_token.get_secret_value()
    engine = create_engine(settings.database_url)
    nc = await connect(settings.nats_servers, "router")
    js = nc.jetstream()
    await ensure_streams(js, settings.stream_replicas)
    publisher = Publisher(js, settings.partitions)

    connection_store = ConnectionStore(engine)
    connections = TtlCache(CONNECTION_CACHE_TTL_S, connection_store.get)
    conversations = ConversationStore(engine)
    pauses = ChannelLot(engine, publisher, connection_store)
    message_map = MessageMap(engine)
    context = RoutingContext(
        connections, conversations, publisher, pauses, message_map, connection_store, settings.kommo_bot_ids
    )
    albums = Albums(engine, publisher)
    outbound = OutboundRouter(context, albums)
    outbound_events = Dispatcher(
        {
            events_pb2.KommoOutboundMessage: outbound.handle,
            events_pb2.KommoReaction: outbound.reaction,
            events_pb2.KommoTyping: outbound.typing,
        },
        untyped=events_pb2.KommoOutboundMessage,  # hooks published before they carried their type
    )
    learner = MapLearner(message_map)
    # Its own durable consumer of the reports (kommo_sender has another): the ids both senders learn.
    reports = Dispatcher(
        {events_pb2.DeliveryReport: learner.delivery_report, events_pb2.KommoAccepted: learner.kommo_accepted},
        untyped=events_pb2.DeliveryReport,
    )
    auth_channel = open_channel(settings.auth_grpc_addr, token)
    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as http:
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        reviews = TemplateReviews(engine, settings, auth, http, publisher, connection_store)
        outbound_events.add(events_pb2.SubmitTemplateReview, reviews.submit)
        templates = TemplateMirror(settings, auth, http, publisher, reviews)
        inbound = InboundRouter(context, templates)
        consumers = [
            Consumer(
                js, consumer="router", stream=Stream.INBOUND, partitions=settings.partitions, handler=inbound.handle
            ),
            Consumer(
                js, consumer="router", stream=Stream.OUTBOUND, partitions=settings.partitions, handler=outbound_events
            ),
            Consumer(js, consumer="router", stream=Stream.REPORTS, partitions=settings.partitions, handler=reports),
        ]
        connector = ChannelConnector(settings, connection_store, auth, http)
        health = HealthChecks(settings, auth, http)
        server = GrpcServer(token, [router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name])
        router_pb2_grpc.add_RouterServiceServicer_to_server(
            RouterServicer(
                connection_store,
                connector,
                publisher,
                settings.public_url,
                pauses,
                health,
                connections.invalidate,
                templates,
            ),
            server.server,
        )
        port = await server.start(settings.router_grpc_addr)
        for consumer in consumers:
            await consumer.start()
        pauses.start()
        albums.start()
        pruner = router_pruner(engine)
        pruner.start()
        resync = asyncio.create_task(templates.run_periodically(connection_store, stop))
        mark_ready()
        log.info("ready", extra={"port": port, "partitions": settings.partitions})
        await stop.wait()
        await resync
        await server.stop()
        await pauses.stop()
        await albums.stop()
        await pruner.stop()
        for consumer in consumers:
            await consumer.stop()
    await auth_channel.close(None)
    await nc.drain()
    await engine.dispose()
