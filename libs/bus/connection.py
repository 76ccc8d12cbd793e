"""Connecting to NATS and declaring the topology, idempotently, at every start-up."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError as JsBadRequest

from libs.bus.topology import Stream

log = logging.getLogger(__name__)

# How long JetStream remembers a Nats-Msg-Id to drop duplicate publishes (seconds). Later duplicates
# are caught by idempotency keys in PostgreSQL.
DUPLICATE_WINDOW_S = 120.0
# Messages are kept this long even after every consumer acked them (debugging, replays).
MAX_AGE_S = 7 * 24 * 3600.0


async def connect(servers: list[str], name: str, *, connect_timeout: float = 5.0) -> NATS:
    """Connect with endless reconnects: a NATS outage must never kill a service."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error_type": type(exc).__name__, "detail": str(exc)})

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        servers=servers,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def stream_config(stream: Stream, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=stream.stream_name,
        subjects=[stream.wildcard],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
    )


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create every stream, or bring an existing one to the declared configuration."""
    for stream in Stream:
        config = stream_config(stream, replicas)
        try:
            await js.add_stream(config)
        except JsBadRequest as exc:
            if exc.err_code != 10058:  # stream name already in use with a different configuration
                raise
            await js.update_stream(config)
