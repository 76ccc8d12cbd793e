"""A text with choices (`Text.choices`) into a WhatsApp interactive message (reference/messenger-apis.md §2).

- Up to 3 reply buttons: `interactive{type: "button"}`, each button's `callback_data` as its reply id.
- More reply buttons than that: a list (one section, a row per button), up to WhatsApp's 10 rows.
- A link button: `interactive{type: "cta_url"}` when there is no reply button; WhatsApp shows one link
  button per message, so further links, and links beside reply buttons, become lines of the body
  (`Site: https://…`): nothing offered is lost.
- A Salesbot's list (`markup.list_message`): `interactive{type: "list"}` with its header, footer, button label,
  sections and rows.

Limits. Visible labels longer than WhatsApp takes (button titles 20, row and section titles 24, row
descriptions 72, the list button 20, header and footer 60) are shortened with "…": the client still
recognises the option, and the answer carries the full id. What cannot be shortened without changing
the answer or the message is refused before any call, with a status text for the manager
(`choices_unsupported`): an id longer than WhatsApp allows (256 for buttons, 200 for rows), a list of
more than 10 rows in all or more than 10 sections, two rows with the same id, a body over 1024 characters.
"""

from __future__ import annotations

from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import BadRequestError, PermanentError
from libs.messengers.choices import button_line
from libs.messengers.whatsapp.graph_errors import PLATFORM

MAX_BUTTONS: Final = 3
MAX_ROWS: Final = 10
MAX_SECTIONS: Final = 10
BODY_LIMIT: Final = 1024
BUTTON_TITLE_LIMIT: Final = 20
BUTTON_ID_LIMIT: Final = 256
ROW_TITLE_LIMIT: Final = 24
ROW_ID_LIMIT: Final = 200
ROW_DESCRIPTION_LIMIT: Final = 72
SECTION_TITLE_LIMIT: Final = 24
LIST_BUTTON_LIMIT: Final = 20
HEADER_LIMIT: Final = 60
FOOTER_LIMIT: Final = 60
CTA_DISPLAY_LIMIT: Final = 20
ELLIPSIS: Final = "…"
LIST_BUTTON_LABEL: Final = "Choose"
"""The label of the button that opens a list, where Kommo names none (a list made of many buttons)."""


def shortened(text: str, limit: int) -> str:
    """`text` within `limit` characters, its end replaced by "…" when it had to be cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _refused(detail: str) -> PermanentError:
    return PermanentError(
        f"whatsapp: the options cannot be sent: {detail}",
        reason=status_texts.CHOICES_UNSUPPORTED,
        reason_args={"platform": PLATFORM, "detail": detail},
    )


def _body(text: str, extra_lines: list[str]) -> dict[str, str]:
    body = "\n".join([text, "", *extra_lines]) if extra_lines else text
    if not body.strip():
        raise BadRequestError("whatsapp: a message with options needs a text")
    if len(body) > BODY_LIMIT:
        raise _refused(f"a message with buttons or a list holds at most {BODY_LIMIT} characters, this one {len(body)}")
    return {"text": body}


def _id(value: str, limit: int, what: str) -> str:
    if not value:
        raise BadRequestError(f"whatsapp: {what} has no id")
    if len(value) > limit:
        raise _refused(f"the id of {what} is {len(value)} characters, WhatsApp takes {limit}")
    return value


def interactive_object(text: content_pb2.Text) -> dict[str, Any]:
    """The `interactive` object of a message sending `text` with its choices."""
    choices = text.choices
    if choices.HasField("list"):
        return _list_message(text.body, choices.list)
    buttons = [b for row in choices.buttons.rows for b in row.buttons]
    if not buttons:
        raise BadRequestError("whatsapp: the options to send are empty")
    replies: list[content_pb2.Button] = []
    for button in buttons:  # the same answer twice is one button
        if not button.url and all(r.callback_data != button.callback_data for r in replies):
            replies.append(button)
    links = [b for b in buttons if b.url]
    if not replies:
        first, *others = links
        return {
            "type": "cta_url",
            "body": _body(text.body, [button_line(b) for b in others]),
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": shortened(first.text, CTA_DISPLAY_LIMIT), "url": first.url},
            },
        }
    link_lines = [button_line(b) for b in links]
    if len(replies) <= MAX_BUTTONS:
        return {
            "type": "button",
            "body": _body(text.body, link_lines),
            "action": {
                "buttons": [
                    {
                        "type": "reply",
                        "reply": {
                            "id": _id(b.callback_data, BUTTON_ID_LIMIT, f"button {b.text!r}"),
                            "title": shortened(b.text, BUTTON_TITLE_LIMIT),
                        },
                    }
                    for b in replies
                ]
            },
        }
    # More reply buttons than WhatsApp shows: the same choices as the rows of a list.
    rows = [content_pb2.ChoiceRow(callback_data=b.callback_data, title=b.text) for b in replies]
    listed = content_pb2.ChoiceList(button=LIST_BUTTON_LABEL, sections=[content_pb2.ChoiceSection(rows=rows)])
    return _list_message(text.body, listed, link_lines)


def _list_message(
    body: str, choice_list: content_pb2.ChoiceList, extra_lines: list[str] | None = None
) -> dict[str, Any]:
    sections = list(choice_list.sections)
    total = sum(len(s.rows) for s in sections)
    if not sections or total == 0:
        raise BadRequestError("whatsapp: the list to send has no rows")
    if len(sections) > MAX_SECTIONS or total > MAX_ROWS:
        raise _refused(f"a list holds at most {MAX_ROWS} options in {MAX_SECTIONS} sections, this one {total}")
    ids = [row.callback_data for s in sections for row in s.rows]
    if len(set(ids)) != len(ids):
        raise _refused("two options of the list have the same value")
    out_sections: list[dict[str, Any]] = []
    for index, section in enumerate(sections, start=1):
        out: dict[str, Any] = {"rows": [_row(row) for row in section.rows]}
        # WhatsApp requires a title on each section once there are several.
        title = section.title or (f"{index}" if len(sections) > 1 else "")
        if title:
            out["title"] = shortened(title, SECTION_TITLE_LIMIT)
        out_sections.append(out)
    interactive: dict[str, Any] = {
        "type": "list",
        "body": _body(body, extra_lines or []),
        "action": {
            "button": shortened(choice_list.button or LIST_BUTTON_LABEL, LIST_BUTTON_LIMIT),
            "sections": out_sections,
        },
    }
    if choice_list.header.strip():
        interactive["header"] = {"type": "text", "text": shortened(choice_list.header, HEADER_LIMIT)}
    if choice_list.footer.strip():
        interactive["footer"] = {"text": shortened(choice_list.footer, FOOTER_LIMIT)}
    return interactive


def _row(row: content_pb2.ChoiceRow) -> dict[str, str]:
    out = {
        "id": _id(row.callback_data, ROW_ID_LIMIT, f"option {row.title!r}"),
        "title": shortened(row.title, ROW_TITLE_LIMIT),
    }
    if row.description.strip():
        out["description"] = shortened(row.description, ROW_DESCRIPTION_LIMIT)
    return out
