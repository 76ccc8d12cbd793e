"""Operations can see the system: every service's /metrics moves with traffic, probes answer, and one
message is one trace from the gateway's webhook through the router to the sender (context in NATS
headers), exported by OTLP to a collector (here, a small one the test runs)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.devstack.embedded import free_port
from libs.devstack.stack import SERVICES
from tests.e2e.conftest import start_sandbox
from tests.e2e.sandbox import Sandbox
from tests.support import wait_for


class Collector:
    """An OTLP/HTTP trace receiver: span names and services, grouped by trace id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.traces: dict[str, list[tuple[str, str]]] = defaultdict(list)

    async def receive(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource_spans in export.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.traces[span.trace_id.hex()].append((service, span.name))
        return Response(status_code=200)

    def trace_through(self, *services: str) -> list[tuple[str, str]] | None:
        for spans in self.traces.values():
            if all(any(s == f"kommo-bridge-{name}" for s, _ in spans) for name in services):
                return spans
        return None


@pytest.fixture
async def traced_sandbox(
    tmp_path: Path, database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Sandbox, Collector]]:
    collector = Collector()
    app = Starlette(routes=[Route("/v1/traces", collector.receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, port=collector.port, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, timeout=10, what="the trace collector")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    stack, sandbox, http = await start_sandbox(tmp_path, database_url, nats_url)
    try:
        yield sandbox, collector
    finally:
        await http.aclose()
        await asyncio.to_thread(stack.stop)
        server.should_exit = True
        await serving


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_metrics_move_with_traffic_and_one_trace_spans_gateway_router_and_sender(
    traced_sandbox: tuple[Sandbox, Collector],
) -> None:
    sandbox, collector = traced_sandbox
    await sandbox.client_writes(3001, "hello, is anyone there?")
    await wait_for(lambda: _count(sandbox.kommo_messages(), 1), timeout=30, what="the message in Kommo")
    conversation = await sandbox.conversation_of(3001)
    await sandbox.manager_writes(conversation, "yes, how can we help?")
    await wait_for(lambda: _count(sandbox.telegram_sent(), 1), timeout=30, what="the reply at the client")
    await wait_for(sandbox.pipeline_idle, timeout=30, what="an idle pipeline")

    async with httpx.AsyncClient(timeout=10) as http:
        scraped: dict[str, str] = {}
        for name in SERVICES:
            base = f"http://127.0.0.1:{sandbox.stack.metrics_ports[name]}"
            assert (await http.get(f"{base}/livez")).status_code == 200
            assert (await http.get(f"{base}/readyz")).status_code == 200
            response = await http.get(f"{base}/metrics")
            assert response.status_code == 200
            scraped[name] = response.text

    webhooks = samples(scraped["gateway"], "bridge_webhooks_total")
    assert webhooks[(("platform", "telegram"), ("status", "200"))] >= 1
    assert webhooks[(("platform", "kommo"), ("status", "200"))] >= 1
    inbound = samples(scraped["kommo_sender"], "bridge_messages_total")
    key = (("direction", "inbound"), ("outcome", "delivered"), ("platform", "telegram"), ("service", "kommo_sender"))
    assert inbound[key] == 1
    outbound = samples(scraped["messenger_sender"], "bridge_messages_total")
    key = (
        ("direction", "outbound"),
        ("outcome", "delivered"),
        ("platform", "telegram"),
        ("service", "messenger_sender"),
    )
    assert outbound[key] == 1
    hops = samples(scraped["router"], "bridge_hop_seconds_count")
    assert hops[(("hop", "router"), ("service", "router"))] >= 2  # one message each way
    assert (
        samples(scraped["gateway"], "bridge_hop_seconds_count")[(("hop", "gateway_publish"), ("service", "gateway"))]
        >= 2
    )
    assert "bridge_consumer_pending" in scraped["router"]

    def one_trace() -> bool:
        return collector.trace_through("gateway", "router", "kommo_sender") is not None

    await wait_for(one_trace, timeout=30, what="a trace spanning gateway, router and kommo_sender")
    spans = collector.trace_through("gateway", "router", "kommo_sender")
    assert spans is not None
    names = {name for _, name in spans}
    assert "webhook telegram" in names
    assert {"router BRIDGE_INBOUND", "kommo_sender BRIDGE_KOMMO_COMMANDS"} <= names
    await wait_for(
        lambda: collector.trace_through("gateway", "router", "messenger_sender") is not None,
        timeout=30,
        what="the reply's trace through messenger_sender",
    )


async def _count(source: object, expected: int) -> bool:
    assert asyncio.iscoroutine(source)
    return len(await source) >= expected
