"""OpenTelemetry traces across HTTP → NATS → gRPC → HTTP: the W3C trace context travels in NATS
headers, so one client message is one trace from the webhook to the other platform's API.

Exporting is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set and
`OTEL_SDK_DISABLED` is not true; otherwise spans cost almost nothing and go nowhere.
"""

from __future__ import annotations

import os

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_provider: TracerProvider | None = None


def configure_tracing(service: str) -> None:
    """Export spans by OTLP/HTTP when an endpoint is configured (standard OTEL_* variables)."""
    global _provider
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if disabled or not endpoint or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or f"kommo-bridge-{service}"
    _provider = TracerProvider(resource=Resource.create({"service.name": name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)


def shutdown_tracing() -> None:
    """Flush what is buffered (called on a clean stop)."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer("kommo_bridge")


def inject_context(headers: dict[str, str]) -> None:
    """Add the current trace context (`traceparent`, `tracestate`) to outgoing NATS headers."""
    propagate.inject(headers)


def extract_context(headers: dict[str, str]) -> Context:
    return propagate.extract(headers, context=context.Context())
