"""Failures the router itself detects are reported to Kommo like any other delivery outcome."""

from __future__ import annotations

import time

from kommo_bridge.events.v1 import events_pb2

from libs.bus import Publisher, Stream


async def report_failure(publisher: Publisher, scope_id: str, kommo_message_id: str, code: int, text: str) -> None:
    report = events_pb2.DeliveryReport(
        kommo_message_id=kommo_message_id,
        scope_id=scope_id,
        state=events_pb2.DELIVERY_STATE_FAILED,
        error_code=code,
        error_text=text,
        occurred_at_ms=int(time.time() * 1000),
    )
    await publisher.publish(Stream.REPORTS, kommo_message_id, report, f"report:{kommo_message_id}:router-failed")
