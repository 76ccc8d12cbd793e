"""A Kommo chat template (type waba) as a WhatsApp template submitted for Meta's review
(`POST /{waba-id}/message_templates`, reference/messenger-apis.md §2 "Templates"; kommo-chats-api.md §11).

Kommo's name becomes a Meta-legal one (lowercase letters, digits, underscores). Kommo's markers
(`{{contact.name}}`, `{{1}}`) become Meta's positional placeholders, numbered in order of first
appearance, each with its example (`waba_examples`, else the marker's own name) in `example.body_text`, as
Meta requires of a template with variables. The header is a text (with its own placeholders and
`example.header_text`) or a file (IMAGE, VIDEO, DOCUMENT); quick replies and links become QUICK_REPLY and
URL buttons.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from kommo_bridge.events.v1 import events_pb2

NAME_LIMIT: Final = 512
MEDIA_FORMATS: Final = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
DEFAULT_LANGUAGE: Final = "en_US"
DEFAULT_CATEGORY: Final = "UTILITY"
CATEGORIES: Final = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
_MARKER_RE: Final = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_NOT_NAME_RE: Final = re.compile(r"[^a-z0-9]+")


def meta_name(name: str, fallback: str = "template") -> str:
    """`Order ready: São Paulo!` → `order_ready_sao_paulo`: what Meta accepts as a template's name."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    legal = _NOT_NAME_RE.sub("_", plain).strip("_")[:NAME_LIMIT].strip("_")
    return legal or fallback


def positional(text: str, order: list[str]) -> str:
    """`text` with each Kommo marker replaced by its Meta number (`{{n}}`, 1-based) in `order`; markers not
    yet in `order` are appended to it."""

    def number(match: re.Match[str]) -> str:
        marker = "{{" + match.group(1).replace(" ", "") + "}}"
        if marker not in order:
            order.append(marker)
        return "{{" + str(order.index(marker) + 1) + "}}"

    return _MARKER_RE.sub(number, text)


def _example(marker: str, examples: Mapping[str, str]) -> str:
    given = examples.get(marker) or examples.get(marker.replace("{{", "{{ ").replace("}}", " }}"))
    return given or marker.strip("{} ").split(".")[-1] or "example"


def _text_with_examples(
    text: str, examples: Mapping[str, str], markers: dict[str, list[str]], component: str
) -> tuple[str, list[str]]:
    """`text` with placeholders numbered from 1 (each component numbers its own), and their examples; the
    component's markers in that order go into `markers`."""
    order: list[str] = []
    converted = positional(text, order)
    if order:
        markers[component] = order
    return converted, [_example(marker, examples) for marker in order]


def meta_template(template: events_pb2.PlatformTemplate, fallback_name: str = "template") -> dict[str, Any]:
    """The body of `POST /{waba-id}/message_templates` for a Kommo chat template."""
    return submission(template, fallback_name)[0]


def submission(
    template: events_pb2.PlatformTemplate, fallback_name: str = "template"
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """`meta_template`, and Kommo's markers in the order of each component's placeholders (`header`,
    `body`, `button<index>`): what a manager's message of the template is sent with."""
    examples = dict(template.examples)
    markers: dict[str, list[str]] = {}
    components: list[dict[str, Any]] = []
    header_format = template.header.upper() if template.header_type == "media" else ""
    if header_format in MEDIA_FORMATS:
        components.append({"type": "HEADER", "format": header_format})
    elif template.header_type == "text" and template.header:
        text, values = _text_with_examples(template.header, examples, markers, "header")
        header: dict[str, Any] = {"type": "HEADER", "format": "TEXT", "text": text}
        if values:
            header["example"] = {"header_text": values}
        components.append(header)
    body_text, body_values = _text_with_examples(template.content, examples, markers, "body")
    body: dict[str, Any] = {"type": "BODY", "text": body_text}
    if body_values:
        body["example"] = {"body_text": [body_values]}
    components.append(body)
    if template.footer:
        components.append({"type": "FOOTER", "text": template.footer})
    buttons: list[dict[str, Any]] = []
    for button in template.buttons:
        if button.type == "url" and button.url:
            url, values = _text_with_examples(button.url, examples, markers, f"button{len(buttons)}")
            meta_button: dict[str, Any] = {"type": "URL", "text": button.text, "url": url}
            if values:
                meta_button["example"] = [positional_example(url, values)]
            buttons.append(meta_button)
        elif button.text:
            buttons.append({"type": "QUICK_REPLY", "text": button.text})
    if buttons:
        components.append({"type": "BUTTONS", "buttons": buttons})
    category = template.category.upper()
    body = {
        "name": meta_name(template.name, fallback_name),
        "language": template.language or DEFAULT_LANGUAGE,
        "category": category if category in CATEGORIES else DEFAULT_CATEGORY,
        "components": components,
    }
    return body, markers


def positional_example(text: str, values: list[str]) -> str:
    """`text` with its `{{n}}` filled by `values` (Meta's example of a URL is the whole URL)."""
    return re.sub(r"\{\{(\d+)\}\}", lambda m: values[int(m.group(1)) - 1], text)
