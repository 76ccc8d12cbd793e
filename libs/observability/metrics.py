"""The Prometheus metrics of the bridge: one set of names for every service (the dashboard and alerts
in deploy/ depend on them), each series labelled with the service that counted it."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

_service = "unknown"

MESSAGES: Final = Counter(
    "bridge_messages",
    "Messages carried, by platform, direction (inbound: client to Kommo; outbound: Kommo to client) and outcome",
    ["service", "platform", "direction", "outcome"],
)
HOP_SECONDS: Final = Histogram(
    "bridge_hop_seconds",
    "Time one hop took: gateway_publish, router, kommo_send, messenger_send",
    ["service", "hop"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_PENDING: Final = Gauge(
    "bridge_consumer_pending", "Messages waiting for this consumer (all partitions)", ["service", "stream"]
)
DEAD_LETTERS: Final = Counter("bridge_dead_letters", "Messages given up and dead-lettered", ["service", "stream"])
TOKEN_REFRESH_FAILURES: Final = Counter(
    "bridge_token_refresh_failures", "Kommo token refreshes that failed (refused or unreachable)"
)
RATE_LIMITED: Final = Counter(
    "bridge_platform_rate_limited", "429 answers from a platform (Telegram, WhatsApp, Kommo)", ["service", "platform"]
)
WEBHOOKS: Final = Counter("bridge_webhooks", "Webhooks answered by the gateway, by status", ["platform", "status"])
SPOOL_DEPTH: Final = Gauge("bridge_spool_depth", "Kommo hooks kept in the gateway's fallback spool")
LATE_FAILURES: Final = Counter(
    "bridge_status_late_failures",
    "Failures reported for a message already delivered or read: recorded in its history, never posted as a step back",
    ["service"],
)
MEDIA_DOWNLOADS: Final = Counter(
    "bridge_media_downloads",
    "Client files requested through the gateway's signed media links, by platform and HTTP status",
    ["platform", "status"],
)


def set_service(name: str) -> None:
    global _service
    _service = name


def service_name() -> str:
    return _service


def count_message(platform: int, direction: str, outcome: str) -> None:
    """One message carried (or not): `platform` is the protobuf Platform value."""
    from kommo_bridge.events.v1 import content_pb2

    name = content_pb2.Platform.Name(platform).removeprefix("PLATFORM_").lower()  # type: ignore[arg-type]
    MESSAGES.labels(_service, name, direction, outcome).inc()


def count_rate_limited(platform: str) -> None:
    RATE_LIMITED.labels(_service, platform).inc()


def count_late_failure() -> None:
    LATE_FAILURES.labels(_service).inc()


ROWS_PRUNED: Final = Counter(
    "bridge_rows_pruned",
    "Rows deleted by retention (libs/db/retention.py): expired history and bookkeeping, by table",
    ["service", "table"],
)


def count_pruned(table: str, rows: int) -> None:
    ROWS_PRUNED.labels(_service, table).inc(rows)
