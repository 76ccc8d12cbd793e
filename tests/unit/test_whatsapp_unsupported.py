"""A client's message WhatsApp does not pass on (`unsupported`, error 131051) still reaches the manager, in
words that say what happened, whether or not the webhook names its kind."""

from __future__ import annotations

import json
from typing import Any

from libs.messengers.whatsapp.inbound import UNSUPPORTED_NOTE, parse_notification

WA_ID = "5511912345678"
ERRORS = [
    {"code": 131051, "title": "Message type unknown", "error_data": {"details": "Message type is not supported."}}
]


def text_of(message: dict[str, Any]) -> str:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "1000"},
        "contacts": [{"profile": {"name": "Ann"}, "wa_id": WA_ID}],
        "messages": [{"from": WA_ID, "id": "wamid.u1", "timestamp": "1760000000", **message}],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    [event] = parse_notification(json.dumps(body).encode(), "conn-1")
    return event.content.text.body


def test_an_unsupported_message_of_a_named_kind_names_it() -> None:
    assert text_of({"type": "unsupported", "unsupported": {"type": "poll"}, "errors": ERRORS}) == (
        "[unsupported WhatsApp message: poll]"
    )


def test_an_unsupported_message_of_no_named_kind_says_what_to_do() -> None:
    assert text_of({"type": "unsupported", "errors": ERRORS}) == UNSUPPORTED_NOTE
    assert "another way" in UNSUPPORTED_NOTE


def test_a_type_the_bridge_does_not_know_is_named() -> None:
    assert text_of({"type": "ephemeral", "ephemeral": {}}) == "[unsupported WhatsApp message: ephemeral]"
