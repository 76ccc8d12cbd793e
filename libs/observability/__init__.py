"""Metrics, traces and the probe endpoints every service process exposes (see docs/operations.md)."""

from libs.observability.metrics import (
    CONSUMER_PENDING,
    DEAD_LETTERS,
    HOP_SECONDS,
    MEDIA_DOWNLOADS,
    MESSAGES,
    RATE_LIMITED,
    ROWS_PRUNED,
    SPOOL_DEPTH,
    TOKEN_REFRESH_FAILURES,
    WEBHOOKS,
    count_late_failure,
    count_message,
    count_pruned,
    count_rate_limited,
    service_name,
    set_service,
)
from libs.observability.server import ProbeServer
from libs.observability.tracing import configure_tracing, extract_context, inject_context, tracer

__all__ = [
    "CONSUMER_PENDING",
    "DEAD_LETTERS",
    "HOP_SECONDS",
    "MEDIA_DOWNLOADS",
    "MESSAGES",
    "RATE_LIMITED",
    "ROWS_PRUNED",
    "SPOOL_DEPTH",
    "TOKEN_REFRESH_FAILURES",
    "WEBHOOKS",
    "ProbeServer",
    "configure_tracing",
    "count_late_failure",
    "count_message",
    "count_pruned",
    "count_rate_limited",
    "extract_context",
    "inject_context",
    "service_name",
    "set_service",
    "tracer",
]
