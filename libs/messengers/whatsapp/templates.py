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
MEDIA_HEADER_FORMATS: Final = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
PAYLOAD_LIMIT: Final = 128
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


def _values(template: content_pb2.Template) -> dict[str, str]:
    return {p.key.replace(" ", ""): p.value for p in template.params}


def _text_parameters(
    text: str, values: Mapping[str, str], *, named: bool, where: str, component: str
) -> list[dict[str, Any]]:
    """The parameters filling `text`'s placeholders, in Meta's order, each valued from the hook's params:
    by `<component>:{{n}}` where the component numbers its own (a template submitted from Kommo), else by
    the marker itself."""
    parameters: list[dict[str, Any]] = []
    for name in placeholders(text):
        value = values.get(f"{component}:{marker(name)}") or values.get(marker(name))
        if not value:
            raise _refused(f"no value for {marker(name)} in the {where}")
        parameter: dict[str, Any] = {"type": "text", "text": value}
        if named:
            parameter["parameter_name"] = name
        parameters.append(parameter)
    return parameters


def header_media_format(definition: Mapping[str, Any] | None) -> str:
    """`image`, `video` or `document` when the template's header is a file (its parameter's type), else ""."""
    header_format = str(_component(definition or {}, "HEADER").get("format", "")).upper()
    return header_format.lower() if header_format in MEDIA_HEADER_FORMATS else ""


def header_media_missing(template: content_pb2.Template, kind: str) -> PermanentError:
    """A template that starts with a file was sent without one: Meta would refuse it (132012)."""
    name = TemplateKey.parse(template.external_id).name
    return PermanentError(
        f"whatsapp template {name}: its header is a {kind} and the message carries no file",
        reason=status_texts.TEMPLATE_HEADER_MEDIA_MISSING,
        reason_args={"platform": PLATFORM, "name": name, "kind": kind},
    )


def _button(sub_type: str, index: int, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "button", "sub_type": sub_type, "index": str(index), "parameters": parameters}


def _button_components(definition: Mapping[str, Any], values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Quick replies carry a payload (their text), which comes back with the client's tap as the reply's
    `callback_data`; a URL button with a placeholder gets its suffix from the params by that marker."""
    components: list[dict[str, Any]] = []
    for index, button in enumerate(_component(definition, "BUTTONS").get("buttons") or []):
        if not isinstance(button, dict):
            continue
        kind = str(button.get("type", "")).upper()
        if kind == "QUICK_REPLY":
            payload = str(button.get("text", ""))[:PAYLOAD_LIMIT] or str(index)
            parameters = [{"type": "payload", "payload": payload}]
            components.append(_button("quick_reply", index, parameters))
        elif kind == "URL" and placeholders(str(button.get("url", ""))):
            text_parameters = _text_parameters(
                str(button["url"]), values, named=False, where=f"button {index}'s link", component=f"button{index}"
            )
            components.append(_button("url", index, text_parameters))
    return components


def template_message(
    template: content_pb2.Template,
    definition: Mapping[str, Any] | None = None,
    header_media: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `template` object of a send. `definition` is the template as Graph lists it (its header, body and
    buttons decide the components; without it only the body's parameters go, from Kommo's content);
    `header_media` the `{"link"}` or `{"id"}` of the header's file, for a template whose header is one."""
    key = TemplateKey.parse(template.external_id)
    values = _values(template)
    components: list[dict[str, Any]] = []
    if definition is not None:
        header = _component(definition, "HEADER")
        media_kind = header_media_format(definition)
        if media_kind:
            if not header_media:
                raise header_media_missing(template, media_kind)
            parameter = {"type": media_kind, media_kind: dict(header_media)}
            components.append({"type": "header", "parameters": [parameter]})
        elif str(header.get("format", "")).upper() == "TEXT" and placeholders(str(header.get("text", ""))):
            parameters = _text_parameters(
                str(header["text"]), values, named=_named(definition), where="header", component="header"
            )
            components.append({"type": "header", "parameters": parameters})
    body_text = str(_component(definition or {}, "BODY").get("text") or template.content)
    names = placeholders(body_text)
    named = _named(definition) if definition is not None else bool(names) and not all(n.isdigit() for n in names)
    body_parameters = _text_parameters(body_text, values, named=named, where="text", component="body")
    if body_parameters:
        components.append({"type": "body", "parameters": body_parameters})
    if definition is not None:
        components.extend(_button_components(definition, values))
    message: dict[str, Any] = {"name": key.name, "language": {"code": key.language}}
    if components:
        message["components"] = components
    return message


def _named(definition: Mapping[str, Any]) -> bool:
    """A NAMED template's parameters carry their names; Graph says which format it is (else the body does)."""
    declared = str(definition.get("parameter_format", "")).upper()
    if declared:
        return declared == "NAMED"
    names = placeholders(str(_component(definition, "BODY").get("text", "")))
    return bool(names) and not all(name.isdigit() for name in names)
