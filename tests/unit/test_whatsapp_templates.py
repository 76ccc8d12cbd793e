"""WhatsApp templates both ways: a Graph template as a Kommo chat template, a Kommo template hook as a
Graph template send, and Meta's review notification as an event."""

from __future__ import annotations

import json

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.errors import PermanentError
from libs.kommo.hooks import parse_hook
from libs.messengers.whatsapp.inbound import parse_notification
from libs.messengers.whatsapp.templates import kommo_template, placeholders, template_message

ORDER_UPDATE = {
    "id": "1234567890123456",
    "name": "order_update",
    "language": "en_US",
    "status": "REJECTED",
    "rejected_reason": "INVALID_FORMAT",
    "category": "UTILITY",
    "components": [
        {"type": "HEADER", "format": "TEXT", "text": "Your order"},
        {"type": "BODY", "text": "Hi {{1}}, order {{2}} is ready", "example": {"body_text": [["Ann", "42"]]}},
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Thanks"},
                {"type": "URL", "text": "Track", "url": "https://x.example/{{1}}"},
            ],
        },
    ],
}


def test_a_graph_template_becomes_a_waba_chat_template_keyed_by_account_name_and_language() -> None:
    mirrored = kommo_template("777", ORDER_UPDATE)
    assert mirrored is not None
    assert mirrored.external_id == "777:order_update:en_US"
    assert (mirrored.review_status, mirrored.reject_reason) == ("rejected", "INVALID_FORMAT")
    assert mirrored.content == "Hi {{1}}, order {{2}} is ready"
    assert dict(mirrored.examples) == {"{{1}}": "Ann", "{{2}}": "42"}
    assert (mirrored.header, mirrored.header_type, mirrored.footer) == ("Your order", "text", "Reply STOP to opt out")
    assert [(b.type, b.text) for b in mirrored.buttons] == [("inline", "Thanks"), ("url", "Track")]


@pytest.mark.parametrize(
    ("status", "review"),
    [("APPROVED", "approved"), ("PENDING", "review"), ("PAUSED", "paused"), ("REJECTED", "rejected")],
)
def test_metas_status_becomes_kommos_review_status(status: str, review: str) -> None:
    mirrored = kommo_template("777", {**ORDER_UPDATE, "status": status})
    assert mirrored is not None and mirrored.review_status == review


def test_a_deleted_template_is_not_mirrored() -> None:
    assert kommo_template("777", {**ORDER_UPDATE, "status": "DELETED"}) is None


def test_positional_placeholders_are_filled_by_number_named_ones_as_written() -> None:
    assert placeholders("{{2}} then {{1}} and {{2}}") == ["1", "2"]
    assert placeholders("{{order_id}} for {{name}}") == ["order_id", "name"]


def hook(template: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "account_id": "acc",
            "time": 1,
            "message": {
                "receiver": {"id": "r", "client_id": "c"},
                "sender": {"id": "s"},
                "conversation": {"id": "chat", "client_id": "conv"},
                "timestamp": 1,
                "message": {"id": "m1", "type": "text", "text": "Hi Ann, order 42 is ready", "template": template},
            },
        }
    ).encode()


def test_a_kommo_template_hook_becomes_a_template_send_with_its_parameters_in_order() -> None:
    event = parse_hook(
        hook(
            {
                "id": 7103,
                "external_id": "777:order_update:en_US",
                "content": "Hi {{1}}, order {{2}} is ready",
                "params": [{"key": "{{2}}", "value": "42"}, {"key": "{{1}}", "value": "Ann"}],
            }
        ),
        "scope",
    )
    assert event.content.WhichOneof("body") == "template"  # type: ignore[union-attr]
    message = template_message(event.content.template)  # type: ignore[union-attr]
    assert message == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}
        ],
    }


def test_a_template_without_a_value_for_a_marker_is_refused_before_sending() -> None:
    template = content_pb2.Template(external_id="777:order_update:en_US", content="Hi {{1}}")
    with pytest.raises(PermanentError) as refused:
        template_message(template)
    assert refused.value.reason == "template_refused"


def test_metas_review_notification_becomes_a_template_status_event() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "777",
                "time": 1700000000,
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "PAUSED",
                            "message_template_id": 1234567890123456,
                            "message_template_name": "order_update",
                            "message_template_language": "en_US",
                            "reason": "NONE",
                        },
                    }
                ],
            }
        ],
    }
    (event,) = parse_notification(json.dumps(body).encode(), "conn")
    assert event.WhichOneof("event") == "template_status"
    change = event.template_status
    assert (change.template_id, change.name, change.language, change.status, change.account_id) == (
        "1234567890123456",
        "order_update",
        "en_US",
        "PAUSED",
        "777",
    )
