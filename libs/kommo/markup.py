"""Kommo's `markup` of a message hook (reference/kommo-chats-api.md §9) into `content_pb2.Choices`.

Two shapes: inline buttons, `{"mode": "inline", "buttons": [[{"text"}, {"text", "url"}]]}` (rows of
buttons), and a Salesbot's WhatsApp list, `{"list_message": {header, body, footer, button, sections[{title,
rows[{callback_data, title, description}]}]}}`, which replaces mode and buttons. `markup` may be `null` or
absent. Kommo's inline buttons carry no id, so each reply button's `callback_data` is its text: the
client's tap comes back to Kommo as that text, which the chat shows recognisably.

Only the shape is checked here (anything malformed raises `BadRequestError` naming the field); the limits
of a messenger (WhatsApp's 3 buttons, 20-character titles, 10 rows) are its adapter's to apply, so a
refusal reaches the manager as a delivery status rather than a hook dropped at the gateway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kommo_bridge.events.v1 import content_pb2

from libs.errors import BadRequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Markup:
    """The choices a hook offers, and the body text of a list (a list's `body` is its message)."""

    choices: content_pb2.Choices
    list_body: str = ""


def markup_or_none(value: object, where: str) -> Markup | None:
    """The choices of a hook, never a reason to refuse it: Kommo sends a chat hook once and never again, so
    a refused hook is a lost message. Markup the bridge cannot read (a shape Kommo has not documented) is
    logged and dropped, and the message goes as its text; a malformed Salesbot list still gives its body."""
    try:
        return parse_markup(value, where)
    except BadRequestError as exc:
        log.warning("chat hook markup not understood: the message goes without its choices", extra={"error": str(exc)})
        listed = value.get("list_message") if isinstance(value, dict) else None
        body = listed.get("body") if isinstance(listed, dict) else None
        if isinstance(body, str) and body.strip():
            return Markup(content_pb2.Choices(), list_body=body)
        return None


def parse_markup(value: object, where: str) -> Markup | None:
    """`message.message.markup` → its choices; None when it is null, absent or offers nothing (PHP writes an
    empty map as `[]`, so an empty array, object or string is nothing too)."""
    if value is None or value in ([], {}, ""):
        return None
    if not isinstance(value, dict):
        raise _bad(where, "an object or null", value)
    if value.get("list_message") is not None:
        return _list_message(_obj(value, "list_message", where), f"{where}.list_message")
    buttons = value.get("buttons")
    if buttons is None:
        return None
    rows = _button_rows(buttons, f"{where}.buttons")
    if not rows:
        return None
    return Markup(content_pb2.Choices(buttons=content_pb2.ButtonRows(rows=rows)))


def _button_rows(value: object, where: str) -> list[content_pb2.ButtonRow]:
    """`[[button, …], …]`; a flat `[button, …]` is read as one row (Kommo documents rows, some examples
    show a single one unwrapped)."""
    if not isinstance(value, list):
        raise _bad(where, "an array of rows of buttons", value)
    if value and all(isinstance(item, dict) for item in value):
        value = [value]
    rows: list[content_pb2.ButtonRow] = []
    for r, row in enumerate(value):
        if not isinstance(row, list):
            raise _bad(f"{where}[{r}]", "an array of buttons", row)
        buttons = [_button(button, f"{where}[{r}][{b}]") for b, button in enumerate(row)]
        if buttons:
            rows.append(content_pb2.ButtonRow(buttons=buttons))
    return rows


def _button(value: object, where: str) -> content_pb2.Button:
    if not isinstance(value, dict):
        raise _bad(where, "an object {text, url?}", value)
    text = _str(value, "text", where, required=True)
    url = _str(value, "url", where)
    if url and not url.startswith(("https://", "http://")):
        raise BadRequestError(f"chat hook: {where}.url must be an http(s) link, is {url[:60]!r}")
    # A reply button answers with its own text unless Kommo ever names a value of its own.
    callback_data = "" if url else _str(value, "callback_data", where) or text
    return content_pb2.Button(text=text, url=url, callback_data=callback_data)


def _list_message(value: dict[str, Any], where: str) -> Markup:
    sections = value.get("sections")
    if not isinstance(sections, list) or not sections:
        raise _bad(f"{where}.sections", "a non-empty array of sections", sections)
    parsed: list[content_pb2.ChoiceSection] = []
    for s, section in enumerate(sections):
        path = f"{where}.sections[{s}]"
        if not isinstance(section, dict):
            raise _bad(path, "an object {title, rows}", section)
        rows = section.get("rows")
        if not isinstance(rows, list) or not rows:
            raise _bad(f"{path}.rows", "a non-empty array of rows", rows)
        parsed.append(
            content_pb2.ChoiceSection(
                title=_str(section, "title", path), rows=[_row(row, f"{path}.rows[{i}]") for i, row in enumerate(rows)]
            )
        )
    choice_list = content_pb2.ChoiceList(
        header=_str(value, "header", where),
        footer=_str(value, "footer", where),
        button=_str(value, "button", where),
        sections=parsed,
    )
    return Markup(content_pb2.Choices(list=choice_list), list_body=_str(value, "body", where))


def _row(value: object, where: str) -> content_pb2.ChoiceRow:
    if not isinstance(value, dict):
        raise _bad(where, "an object {callback_data, title, description?}", value)
    return content_pb2.ChoiceRow(
        callback_data=_str(value, "callback_data", where, required=True),
        title=_str(value, "title", where, required=True),
        description=_str(value, "description", where),
    )


def _obj(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _bad(f"{where}.{key}", "an object", value)
    return value


def _str(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        value = ""
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "callback_data":
        value = str(value)  # a Salesbot may write a numeric value
    if not isinstance(value, str):
        raise _bad(f"{where}.{key}", "a string", value)
    if required and not value.strip():
        raise BadRequestError(f"chat hook: {where}.{key} is missing or empty")
    return value


def _bad(where: str, expected: str, value: object) -> BadRequestError:
    state = "missing" if value is None else f"a {type(value).__name__}"
    return BadRequestError(f"chat hook: {where} must be {expected}, is {state}")
