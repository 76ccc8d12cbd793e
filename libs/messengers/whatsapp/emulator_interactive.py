"""Interactive messages in the WhatsApp emulator (reference/messenger-apis.md §2, "Outbound" and inbound
`interactive`): the checks Graph makes on reply buttons, lists and link buttons, and a client's tap.

Checks answer as Graph does: a field missing or of the wrong shape is 100 "Invalid parameter", a value out
of WhatsApp's limits (a title too long, a fourth button, an eleventh row) is 131009 "Parameter value is not
valid"; `details` names the field. A tap is what the client's phone sends when they choose a reply button
or a list row of a message they received: `interactive{type: button_reply|list_reply}` with the choice's
id and title, in `context` the interactive message's wamid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from libs.messengers.whatsapp.emulator_errors import GraphApiError, invalid_parameter
from libs.messengers.whatsapp.emulator_state import Client, PhoneNumber, WhatsAppState

TYPES: Final = frozenset({"button", "list", "cta_url", "flow", "product", "product_list", "location_request_message"})
HEADER_TYPES: Final = frozenset({"text", "image", "video", "document"})
BODY_LIMIT: Final = 1024
FOOTER_LIMIT: Final = 60
HEADER_LIMIT: Final = 60
MAX_BUTTONS: Final = 3
BUTTON_ID_LIMIT: Final = 256
BUTTON_TITLE_LIMIT: Final = 20
LIST_BUTTON_LIMIT: Final = 20
MAX_SECTIONS: Final = 10
MAX_ROWS: Final = 10
SECTION_TITLE_LIMIT: Final = 24
ROW_ID_LIMIT: Final = 200
ROW_TITLE_LIMIT: Final = 24
ROW_DESCRIPTION_LIMIT: Final = 72
CTA_DISPLAY_LIMIT: Final = 20
TAPPABLE: Final = frozenset({"button", "list"})


class TapRefused(ValueError):
    """The client cannot choose that: not an interactive message of theirs, or no such option."""


def _not_valid(details: str) -> GraphApiError:
    return invalid_parameter(details, code=131009)


def _text(value: object, field: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise invalid_parameter(f"Param {field} is required and must be a non-empty string")
    if len(value) > limit:
        raise _not_valid(f"{field} is {len(value)} characters long, at most {limit} are allowed")
    return value


def _object(parent: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> dict[str, Any] | None:
    value = parent.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise invalid_parameter(f"Param {field} is required and must be an object")
    return value


def check_interactive(interactive: object) -> None:
    """Reply buttons, lists and link buttons, within their limits; raises GraphApiError."""
    if not isinstance(interactive, dict):
        raise invalid_parameter("Param interactive must be an object")
    kind = interactive.get("type")
    if kind not in TYPES:
        raise invalid_parameter(f"Param interactive['type'] must be one of {sorted(TYPES)}")
    body = _object(interactive, "body", "interactive['body']")
    assert body is not None
    _text(body.get("text"), "interactive['body']['text']", BODY_LIMIT)
    footer = _object(interactive, "footer", "interactive['footer']", required=False)
    if footer is not None:
        _text(footer.get("text"), "interactive['footer']['text']", FOOTER_LIMIT)
    header = _object(interactive, "header", "interactive['header']", required=False)
    if header is not None:
        _header(header, str(kind))
    action = _object(interactive, "action", "interactive['action']")
    assert action is not None
    if kind == "button":
        _buttons(action)
    elif kind == "list":
        _list(action)
    elif kind == "cta_url":
        _cta_url(action)


def _header(header: Mapping[str, Any], kind: str) -> None:
    header_type = header.get("type")
    allowed = {"text"} if kind == "list" else HEADER_TYPES
    if header_type not in allowed:
        raise invalid_parameter(f"Param interactive['header']['type'] must be one of {sorted(allowed)} for {kind}")
    if header_type == "text":
        _text(header.get("text"), "interactive['header']['text']", HEADER_LIMIT)


def _buttons(action: Mapping[str, Any]) -> None:
    buttons = action.get("buttons")
    field = "interactive['action']['buttons']"
    if not isinstance(buttons, list) or not buttons:
        raise invalid_parameter(f"Param {field} is required and must be a non-empty array")
    if len(buttons) > MAX_BUTTONS:
        raise _not_valid(f"{field} has {len(buttons)} buttons, at most {MAX_BUTTONS} are allowed")
    ids: set[str] = set()
    for index, button in enumerate(buttons):
        path = f"{field}[{index}]"
        if not isinstance(button, dict) or button.get("type") != "reply":
            raise invalid_parameter(f"Param {path}['type'] must be 'reply'")
        reply = _object(button, "reply", f"{path}['reply']")
        assert reply is not None
        button_id = _text(reply.get("id"), f"{path}['reply']['id']", BUTTON_ID_LIMIT)
        _text(reply.get("title"), f"{path}['reply']['title']", BUTTON_TITLE_LIMIT)
        if button_id in ids:
            raise _not_valid(f"{path}['reply']['id'] {button_id!r} is not unique")
        ids.add(button_id)


def _list(action: Mapping[str, Any]) -> None:
    _text(action.get("button"), "interactive['action']['button']", LIST_BUTTON_LIMIT)
    sections = action.get("sections")
    field = "interactive['action']['sections']"
    if not isinstance(sections, list) or not sections:
        raise invalid_parameter(f"Param {field} is required and must be a non-empty array")
    if len(sections) > MAX_SECTIONS:
        raise _not_valid(f"{field} has {len(sections)} sections, at most {MAX_SECTIONS} are allowed")
    ids: set[str] = set()
    total = 0
    for s, section in enumerate(sections):
        path = f"{field}[{s}]"
        if not isinstance(section, dict):
            raise invalid_parameter(f"Param {path} must be an object")
        _text(section.get("title"), f"{path}['title']", SECTION_TITLE_LIMIT, required=len(sections) > 1)
        rows = section.get("rows")
        if not isinstance(rows, list) or not rows:
            raise invalid_parameter(f"Param {path}['rows'] is required and must be a non-empty array")
        for r, row in enumerate(rows):
            row_path = f"{path}['rows'][{r}]"
            if not isinstance(row, dict):
                raise invalid_parameter(f"Param {row_path} must be an object")
            row_id = _text(row.get("id"), f"{row_path}['id']", ROW_ID_LIMIT)
            _text(row.get("title"), f"{row_path}['title']", ROW_TITLE_LIMIT)
            _text(row.get("description"), f"{row_path}['description']", ROW_DESCRIPTION_LIMIT, required=False)
            if row_id in ids:
                raise _not_valid(f"{row_path}['id'] {row_id!r} is not unique")
            ids.add(row_id)
            total += 1
    if total > MAX_ROWS:
        raise _not_valid(f"{field} hold {total} rows in total, at most {MAX_ROWS} are allowed")


def _cta_url(action: Mapping[str, Any]) -> None:
    if action.get("name") != "cta_url":
        raise invalid_parameter("Param interactive['action']['name'] must be 'cta_url'")
    parameters = _object(action, "parameters", "interactive['action']['parameters']")
    assert parameters is not None
    _text(parameters.get("display_text"), "interactive['action']['parameters']['display_text']", CTA_DISPLAY_LIMIT)
    url = parameters.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise _not_valid("interactive['action']['parameters']['url'] must be an http(s) URL")


def tap(interactive: Mapping[str, Any], choice_id: str) -> dict[str, Any]:
    """The `interactive` of the reply a client's tap on option `choice_id` sends (raises TapRefused)."""
    kind = interactive.get("type")
    action = interactive.get("action")
    if kind not in TAPPABLE or not isinstance(action, dict):
        raise TapRefused(f"a {kind} message has no option to choose")
    if kind == "button":
        for button in action.get("buttons") or []:
            reply = button.get("reply") or {}
            if reply.get("id") == choice_id:
                return {"type": "button_reply", "button_reply": {"id": choice_id, "title": reply.get("title", "")}}
    else:
        for section in action.get("sections") or []:
            for row in section.get("rows") or []:
                if row.get("id") == choice_id:
                    reply = {"id": choice_id, "title": row.get("title", "")}
                    if row.get("description"):
                        reply["description"] = row["description"]
                    return {"type": "list_reply", "list_reply": reply}
    raise TapRefused(f"the message offers no option {choice_id!r}")


def tap_message(
    state: WhatsAppState, number: PhoneNumber, client: Client, wamid: str, choice_id: str
) -> dict[str, Any]:
    """What the client's phone sends when they choose `choice_id` of the business's message `wamid`: the
    reply, quoting that message (raises TapRefused when they never received it or it offers no such option)."""
    message = state.messages.get(wamid)
    if message is None or message.direction != "out" or message.phone_number_id != number.id:
        raise TapRefused(f"{wamid!r} is not a message this number sent")
    if message.client_key != client.key:
        raise TapRefused(f"{wamid!r} was sent to another user")
    if message.status not in ("delivered", "read"):
        raise TapRefused(f"{wamid!r} has not reached the user's phone (status {message.status})")
    interactive = message.body.get("interactive") if message.type == "interactive" else None
    if not isinstance(interactive, dict):
        raise TapRefused(f"{wamid!r} is a {message.type} message, not an interactive one")
    return {
        "type": "interactive",
        "interactive": tap(interactive, choice_id),
        "context": {"from": number.display_phone_number, "id": wamid},
    }
