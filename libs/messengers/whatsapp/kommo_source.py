"""What a WhatsApp number's Kommo source declares (kommo-chats-api.md §11 "Sources", `services`).

Kommo's Salesbot offers WhatsApp list messages (`markup.list_message`) only on a source whose `services`
say `{type: "whatsapp", params: {is_supports_list_message: true}}`, and a chat template's review needs a
source with `params.waba: true`; the bridge sends lists as WhatsApp interactive lists (`interactive.py`)
and submits reviews to Meta (`template_submission.py`), so a number's source declares both. Its one page
is the number: the phone-number id, the channel's name, and its `wa.me` link when the display number is
known (the connection's display name is `verified_name (display_phone_number)`, see the adapter's
`check_credentials`, or just one of them).
"""

from __future__ import annotations

import re
from typing import Final

from kommo_bridge.events.v1 import events_pb2

SERVICE_TYPE: Final = "whatsapp"
SOURCE_PARAMS: Final = {"waba": True, "is_supports_list_message": True}
WA_ME: Final = "https://wa.me/"
_TRAILING_PARENS: Final = re.compile(r"\(([^()]*)\)\s*$")
_PHONE_LIKE: Final = re.compile(r"^\+?[\d\s().\-]+$")
E164_DIGITS: Final = range(7, 16)
"""A display number's digits, country code included (E.164: at most 15)."""


def display_phone_digits(display_name: str, phone_number_id: str) -> str:
    """The number's digits from its display name (`Name (+1 555-0100)`, or the number alone); "" when the
    name shows no number (a display name that fell back to the phone-number id is not a phone number)."""
    name = display_name.strip()
    if name == phone_number_id:
        return ""
    trailing = _TRAILING_PARENS.search(name)
    candidate = trailing.group(1).strip() if trailing else name
    if not _PHONE_LIKE.match(candidate):
        return ""
    digits = "".join(ch for ch in candidate if ch.isdigit())
    return digits if len(digits) in E164_DIGITS else ""


def whatsapp_source_services(phone_number_id: str, display_name: str) -> list[events_pb2.SourceService]:
    """`services` of the number's source: WhatsApp, with list messages and template reviews, one page."""
    digits = display_phone_digits(display_name, phone_number_id)
    page = events_pb2.SourcePage(
        id=phone_number_id,
        name=display_name.strip() or phone_number_id,
        link=f"{WA_ME}{digits}" if digits else "",
    )
    return [events_pb2.SourceService(type=SERVICE_TYPE, params=SOURCE_PARAMS, pages=[page])]
