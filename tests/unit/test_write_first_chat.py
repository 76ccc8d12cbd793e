"""Which platforms can write first, and the chat a phone number opens there."""

from __future__ import annotations

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.messengers.registry import adapter_for, write_first_chat


@pytest.mark.parametrize(
    ("phone", "chat"),
    [("+55 11 90000-0108", "5511900000108"), ("79161234567", "79161234567"), ("12-34", None), ("", None)],
)
def test_whatsapp_writes_first_to_the_wa_id_of_a_phone(phone: str, chat: str | None) -> None:
    assert write_first_chat(adapter_for(content_pb2.PLATFORM_WHATSAPP), phone) == chat


def test_a_telegram_bot_cannot_write_first() -> None:
    assert write_first_chat(adapter_for(content_pb2.PLATFORM_TELEGRAM), "+55 11 90000-0108") is None
