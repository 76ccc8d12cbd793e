"""The kommo_sender process: every call to Kommo's chat API."""

from __future__ import annotations

import asyncio
import logging

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2

from libs.bus import KEY_HEADER, Consumer, Delivery, Dispatcher, Publisher, Stream, connect, ensure_streams
from libs.bus.publisher import MSG_ID_HEADER
from libs.config import Settings
from libs.db import create_engine
from libs.errors import NotFoundError, RetryableError
from libs.kommo.client import AmojoClient
from libs.kommo.rest import KommoRestClient
from libs.media import MediaLinks
from libs.media.inbound import InboundMedia
from libs.ratelimit import SharedRateLimiter
from libs.rpc import call, open_channel
from libs.runtime import mark_ready
from services.kommo_sender.crm import AccountTokens, ChatSetup, ProfileUpdater, SourceSync
from services.kommo_sender.deliveries import KommoDeliverer
from services.kommo_sender.holding import AccountGate, ParkingLot
from services.kommo_sender.languages import AccountLanguages
from services.kommo_sender.live_chat import LiveChat
from services.kommo_sender.retention import kommo_sender_pruner
from services.kommo_sender.statuses import StatusReporter
from services.kommo_sender.template_reviews import KommoTemplateReviews
from services.kommo_sender.templates import TemplateSync

log = logging.getLogger(__name__)


async def fetch_channel_credentials(
    auth: auth_pb2_grpc.AuthServiceAsyncStub, stop: asyncio.Event
) -> auth_pb2.ChannelCredentials:
    """Wait for the auth service: nothing can be signed without the channel secret."""
    delay = 0.2
    while True:
        try:
            return await call(auth.GetChannelCredentials, auth_pb2.GetChannelCredentialsRequest())
        except RetryableError:
            if stop.is_set():
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    settings.require("database_url", "nats_url", "service_token")
    engine = create_engine(settings.database_url)
    nc = await connect(settings.nats_servers, "kommo_sender")
    js = nc.jetstream()
    await ensure_streams(js, settings.stream_replicas)
    auth_channel = open_channel(settings.auth_grpc_addr, settings.service_token.get_secret_value())
    auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
    credentials = await fetch_channel_credentials(auth, stop)
    gate = AccountGate(auth)
    publisher = Publisher(js, settings.partitions)
    lot = ParkingLot(engine, publisher, gate)

    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as http:
        amojo = AmojoClient(settings.kommo_amojo_url, credentials.channel_id, credentials.channel_secret, http)
        rest = KommoRestClient(
            http,
            settings.kommo_account_url,
            SharedRateLimiter(engine),
            per_account=settings.kommo_rest_rate,
            per_ip=settings.kommo_rest_rate_per_ip,
            allowed_suffixes=settings.kommo_domains,
        )
        tokens = AccountTokens(auth)
        sources = SourceSync(engine, rest, tokens, settings.kommo_channel_code)
        chats = ChatSetup(engine, amojo, rest, tokens, sources)
        profiles = ProfileUpdater(engine, rest, tokens)

        async def sync_source(delivery: Delivery) -> None:
            command = delivery.decode(events_pb2.SyncSource)

            async def work() -> None:
                try:
                    await sources.ensure(command.scope_id, command.source)
                except NotFoundError as exc:  # an account without OAuth: no CRM API to sync to
                    log.warning("kommo source not synced", extra={"reason": str(exc)})

            await lot.through(delivery, command.scope_id, delivery.headers.get(KEY_HEADER, ""), "source", work)

        templates = TemplateSync(engine, rest, tokens)
        reviews = KommoTemplateReviews(engine, rest, tokens, publisher, settings.public_url, credentials.channel_secret)

        async def review_requested(delivery: Delivery) -> None:
            command = delivery.decode(events_pb2.ChatTemplateReviewRequested)

            async def work() -> None:
                await reviews.requested(command)

            key = delivery.headers.get(KEY_HEADER, "")
            msg_id = delivery.headers.get(MSG_ID_HEADER) or f"review-request:{command.scope_id}"
            await lot.through(delivery, command.scope_id, key, msg_id, work)

        async def review_verdict(delivery: Delivery) -> None:
            command = delivery.decode(events_pb2.SetTemplateReview)

            async def work() -> None:
                await reviews.write_verdict(command)

            key = delivery.headers.get(KEY_HEADER, "")
            msg_id = delivery.headers.get(MSG_ID_HEADER) or f"review-verdict:{command.kommo_template_id}"
            await lot.through(delivery, command.scope_id, key, msg_id, work)

        async def sync_templates(delivery: Delivery) -> None:
            command = delivery.decode(events_pb2.SyncTemplates)

            async def work() -> None:
                try:
                    await templates.sync(command)
                    await reviews.ensure_subscribed(command.scope_id)  # its review requests come from now on
                except NotFoundError as exc:  # an account without OAuth: no CRM API to sync to
                    log.warning("kommo chat templates not synced", extra={"reason": str(exc)})

            key = delivery.headers.get(KEY_HEADER, "")
            msg_id = delivery.headers.get(MSG_ID_HEADER) or f"templates:{command.connection_id}"
            await lot.through(delivery, command.scope_id, key, msg_id, work)

        async def update_profile(delivery: Delivery) -> None:
            command = delivery.decode(events_pb2.UpdateContactProfile)

            async def work() -> None:
                await profiles.handle(delivery)

            await lot.through(delivery, command.scope_id, command.conversation_id, f"profile:{command.update_id}", work)

        live = LiveChat(amojo, lot)
        commands = Dispatcher(
            {
                events_pb2.DeliverToKommo: KommoDeliverer(
                    engine, amojo, lot, chats, InboundMedia(MediaLinks.from_settings(settings), settings), publisher
                ).handle,
                events_pb2.SyncSource: sync_source,
                events_pb2.SyncTemplates: sync_templates,
                events_pb2.ChatTemplateReviewRequested: review_requested,
                events_pb2.SetTemplateReview: review_verdict,
                events_pb2.UpdateContactProfile: update_profile,
                events_pb2.EditInKommo: live.edit,
                events_pb2.ReactInKommo: live.react,
                events_pb2.TypingInKommo: live.typing,
            },
            untyped=events_pb2.DeliverToKommo,
        )

        async def ignore(delivery: Delivery) -> None:
            """Reports that are not for this service (the router learns Kommo's ids from these)."""

        reports = Dispatcher(
            {
                events_pb2.DeliveryReport: StatusReporter(engine, amojo, AccountLanguages(auth)).handle,
                events_pb2.KommoAccepted: ignore,
            },
            untyped=events_pb2.DeliveryReport,
        )
        consumers = [
            Consumer(
                js,
                consumer="kommo_sender",
                stream=Stream.KOMMO_COMMANDS,
                partitions=settings.partitions,
                handler=commands,
            ),
            Consumer(
                js,
                consumer="kommo_sender",
                stream=Stream.CRM_COMMANDS,
                partitions=settings.partitions,
                handler=commands,
            ),
            Consumer(
                js,
                consumer="kommo_sender",
                stream=Stream.REPORTS,
                partitions=settings.partitions,
                handler=reports,
            ),
        ]
        for consumer in consumers:
            await consumer.start()
        lot.start()
        pruner = kommo_sender_pruner(engine, settings)
        pruner.start()
        mark_ready()
        log.info("ready", extra={"partitions": settings.partitions})
        await stop.wait()
        await lot.stop()
        await pruner.stop()
        for consumer in consumers:
            await consumer.stop()
    await auth_channel.close(None)
    await nc.drain()
    await engine.dispose()
