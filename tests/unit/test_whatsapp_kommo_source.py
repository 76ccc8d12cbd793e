"""What a channel's Kommo source declares about its messenger (kommo-chats-api.md §11 `services`): a WhatsApp
number's source says WhatsApp with list messages and template reviews, with the number as its page; a
Telegram bot's declares nothing. The router asks the adapter, and kommo_sender sends it in Kommo's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kommo_bridge.events.v1 import events_pb2

from libs.messengers.registry import adapter_named, source_services
from libs.messengers.whatsapp.kommo_source import display_phone_digits, whatsapp_source_services
from services.kommo_sender.crm import kommo_services, services_key
from services.router.connections import ConnectionRecord
from services.router.settings import source_spec

NUMBER_ID = "106540352242922"


def record(platform: str, external_id: str, display_name: str) -> ConnectionRecord:
    return ConnectionRecord(
        id="c-1",
        account_id="amojo-1",
        scope_id="chan_amojo-1",
        platform=platform,
        external_id=external_id,
        display_name=display_name,
        source_external_id=external_id,
        state="active",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        source_name="",
        pipeline_id=0,
        contact_rule="create",
        update_profiles=False,
        robot_label="",
        paused_at=None,
    )


@pytest.mark.parametrize(
    ("display_name", "digits"),
    [
        ("Sandbox Shop WA (15550001111)", "15550001111"),
        ("Shop (Main) (+55 11 98765-4321)", "5511987654321"),
        ("+1 555-010-0200", "15550100200"),
        ("Sandbox Shop WA", ""),  # only the verified name is known
        ("Shop (Main)", ""),  # parentheses that hold no number
        (NUMBER_ID, ""),  # the display name fell back to the phone-number id
        ("Shop (123)", ""),  # too short for an international number
    ],
)
def test_the_display_number_is_read_from_the_connections_display_name(display_name: str, digits: str) -> None:
    assert display_phone_digits(display_name, NUMBER_ID) == digits


def test_a_numbers_source_declares_whatsapp_with_list_messages_and_template_reviews() -> None:
    [service] = whatsapp_source_services(NUMBER_ID, "Sandbox Shop WA (+1 555 000 1111)")

    assert service.type == "whatsapp"
    assert dict(service.params) == {"waba": True, "is_supports_list_message": True}
    [page] = service.pages
    assert (page.id, page.name, page.link) == (
        NUMBER_ID,
        "Sandbox Shop WA (+1 555 000 1111)",
        "https://wa.me/15550001111",
    )


def test_kommos_shape_has_no_link_when_the_number_is_unknown() -> None:
    spec = events_pb2.SourceSpec(external_id=NUMBER_ID, services=whatsapp_source_services(NUMBER_ID, "Sandbox Shop"))

    assert kommo_services(spec) == [
        {
            "type": "whatsapp",
            "params": {"waba": True, "is_supports_list_message": True},
            "pages": [{"id": NUMBER_ID, "name": "Sandbox Shop"}],
        }
    ]
    # The same services, whatever the order of their keys, compare equal; none is "".
    reordered = [{"pages": [{"name": "Sandbox Shop", "id": NUMBER_ID}], **kommo_services(spec)[0]}]
    assert services_key(reordered) == services_key(kommo_services(spec)) != ""
    assert services_key([]) == ""


def test_the_router_asks_the_adapter_and_names_no_platform() -> None:
    whatsapp = source_spec(record("whatsapp", NUMBER_ID, "Shop (15550001111)"))
    telegram = source_spec(record("telegram", "7000000001", "Sandbox Shop (@bridge_sandbox_bot)"))

    assert [s.type for s in whatsapp.services] == ["whatsapp"]
    assert whatsapp.services[0].pages[0].link == "https://wa.me/15550001111"
    assert list(telegram.services) == []
    assert source_services(adapter_named("telegram"), "7000000001", "bot") == []
    assert list(whatsapp.services) == source_services(adapter_named("whatsapp"), NUMBER_ID, "Shop (15550001111)")
