"""WhatsApp message templates both ways (reference/messenger-apis.md §2 "Templates", kommo-chats-api.md §11
"Chat templates" and §9 `template`).

Into Kommo: a template of the business account becomes a Kommo chat template of type `waba`. Its key in
Kommo (`external_id`) is `<business account id>:<name>:<language>`, all a send needs, so a manager's
template message names the WhatsApp template without a lookup, and two accounts' same-named templates
stay apart. WhatsApp's placeholders already have Kommo's marker form (`{{1}}`, or `{{order_id}}` in a
NAMED template), so the body is Kommo's `content` as it is and the hook's `params` come back keyed by
them. Meta's status becomes Kommo's review status; a template on its way out (deleted, archived) is not
mirrored.

Out of Kommo: the hook's `template` becomes a `template` message: name and language from the key, the
body's parameters in the order of its placeholders, each valued from `params`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kommo_bridge.events.v1 import content_pb2, events_pb2

from libs import status_texts
from libs.errors import PermanentError
from libs.messengers.whatsapp.graph_errors import PLATFORM

# Meta's status -> Kommo's review status (draft|review|approved|paused|rejected).
REVIEW_STATUSES: Final[Mapping[str, str]] = {
    "APPROVED": "approved",
    "REINSTATED": "approved",
    "FLAGGED": "approved",  # a quality warning: still sendable until paused
    "PENDING": "review",
    "IN_APPEAL": "review",
    "PAUSED": "paused",
    "LOCKED": "paused",
    "REJECTED": "rejected",
    "DISABLED": "rejected",
    "LIMIT_EXCEEDED": "rejected",
}
CATEGORIES: Final = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
HEADER_LIMIT: Final = 60
_PLACEHOLDER_RE: Final = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_KEY_PARTS: Final = 3


@dataclass(frozen=True)
class TemplateKey:
    """Which WhatsApp template a Kommo chat template stands for."""

    waba_id: str
    name: str
    language: str

    @property
    def external_id(self) -> str:
        return f"{self.waba_id}:{self.name}:{self.language}"

    @classmethod
    def parse(cls, external_id: str) -> TemplateKey:
        parts = external_id.split(":")
        if len(parts) != _KEY_PARTS or not all(parts):
            raise PermanentError(
                f"whatsapp: {external_id!r} names no WhatsApp template",
                reason=status_texts.TEMPLATE_REFUSED,
                reason_args={"platform": PLATFORM, "detail": "the template is not one of this WhatsApp number's"},
            )
        return cls(*parts)


def marker(name: str) -> str:
    return "{{" + name + "}}"


def placeholders(text: str) -> list[str]:
    """The placeholders of a text, each once, in the order they are filled: by number for positional ones
    (`{{2}} … {{1}}` still takes 1 first), as written for named ones."""
    found = list(dict.fromkeys(m.group(1) for m in _PLACEHOLDER_RE.finditer(text)))
    if found and all(name.isdigit() for name in found):
        return sorted(found, key=int)
    return found


def _component(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for component in template.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == kind:
            return component
    return {}


def _examples(body: Mapping[str, Any], names: list[str]) -> dict[str, str]:
    """`waba_examples`: each marker with Meta's example value (`body_text` rows, or named params)."""
    example = body.get("example")
    if not isinstance(example, dict):
        return {}
    named = example.get("body_text_named_params")
    if isinstance(named, list):
        return {
            marker(str(p["param_name"])): str(p.get("example", ""))
            for p in named
            if isinstance(p, dict) and p.get("param_name")
        }
    rows = example.get("body_text")
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], list) else []
    return {marker(name): str(value) for name, value in zip(names, row, strict=False)}


def _buttons(template: Mapping[str, Any]) -> list[events_pb2.TemplateButton]:
    found: list[events_pb2.TemplateButton] = []
    for button in _component(template, "BUTTONS").get("buttons") or []:
        if not isinstance(button, dict):
            continue
        kind = str(button.get("type", "")).upper()
        if kind == "URL":
            found.append(
                events_pb2.TemplateButton(type="url", text=str(button.get("text", "")), url=str(button["url"]))
            )
        elif kind == "QUICK_REPLY":
            found.append(events_pb2.TemplateButton(type="inline", text=str(button.get("text", ""))))
    return found


def kommo_template(waba_id: str, template: Mapping[str, Any]) -> events_pb2.PlatformTemplate | None:
    """A Graph template as Kommo keeps it; None for one Kommo should not show (gone, or unreadable)."""
    status = str(template.get("status", "")).upper()
    review = REVIEW_STATUSES.get(status)
    name, language = template.get("name"), template.get("language")
    body = _component(template, "BODY")
    text = body.get("text")
    if review is None or not isinstance(name, str) or not isinstance(language, str) or not isinstance(text, str):
        return None
    header = _component(template, "HEADER")
    header_format = str(header.get("format", "")).upper()
    category = str(template.get("category", "")).upper()
    reason = template.get("rejected_reason")
    return events_pb2.PlatformTemplate(
        external_id=TemplateKey(waba_id, name, language).external_id,
        name=name,
        language=language,
        category=category if category in CATEGORIES else "UTILITY",
        review_status=review,
        reject_reason=str(reason) if review == "rejected" and reason and reason != "NONE" else "",
        content=text,
        header=str(header.get("text", ""))[:HEADER_LIMIT] if header_format == "TEXT" else "",
        header_type=("text" if header_format == "TEXT" else "media") if header else "",
        footer=str(_component(template, "FOOTER").get("text", "")),
        examples=_examples(body, placeholders(text)),
        buttons=_buttons(template),
    )


def _refused(detail: str) -> PermanentError:
    return PermanentError(
        f"whatsapp template: {detail}",
        reason=status_texts.TEMPLATE_REFUSED,
        reason_args={"platform": PLATFORM, "detail": detail},
    )


def template_message(template: content_pb2.Template) -> dict[str, Any]:
    """The `template` object of a send: name, language and the body's parameters from the hook's params."""
    key = TemplateKey.parse(template.external_id)
    values = {p.key.replace(" ", ""): p.value for p in template.params}
    names = placeholders(template.content)
    parameters: list[dict[str, Any]] = []
    named = bool(names) and not all(name.isdigit() for name in names)
    for name in names:
        value = values.get(marker(name))
        if not value:
            raise _refused(f"no value for {marker(name)}")
        parameter: dict[str, Any] = {"type": "text", "text": value}
        if named:
            parameter["parameter_name"] = name
        parameters.append(parameter)
    message: dict[str, Any] = {"name": key.name, "language": {"code": key.language}}
    if parameters:
        message["components"] = [{"type": "body", "parameters": parameters}]
    return message
