"""Failures the router itself detects are reported to Kommo like any other delivery outcome."""

from __future__ import annotations

import time
from collections.abc import Mapping

from kommo_bridge.events.v1 import events_pb2

from libs import status_texts
from libs.bus import Publisher, Stream


async def report_failure(
    publisher: Publisher,
    scope_id: str,
    kommo_message_id: str,
    reason: str,
    reason_args: Mapping[str, str] | None = None,
) -> None:
    """`reason` is a key of libs.status_texts: kommo_sender renders it in the account's language; the
    Kommo code comes with it, and the English text travels as the fallback."""
    args = dict(reason_args or {})
    report = events_pb2.DeliveryReport(
        kommo_message_id=kommo_message_id,
        scope_id=scope_id,
        state=events_pb2.DELIVERY_STATE_FAILED,
        error_code=status_texts.code_of(reason),
        error_text=status_texts.render(reason, args, status_texts.DEFAULT_LANGUAGE),
        occurred_at_ms=int(time.time() * 1000),
        reason=reason,
        reason_args=args,
    )
    await publisher.publish(Stream.REPORTS, kommo_message_id, report, f"report:{kommo_message_id}:router-failed")
