"""Message templates in the WhatsApp emulator (reference/messenger-apis.md §2, "Templates"): enough for a
bridge to sync them and send them, and for tests to play Meta's review.

- `GET /{waba-id}/message_templates?fields=&status=&name=&language=&limit=&after=`: pages with cursors.
- `POST /{waba-id}/message_templates`: a new template, `PENDING` until reviewed.
- `GET /{template-id}`; `DELETE /{waba-id}/message_templates?name=`.
- A review (control route) changes the status and notifies `message_template_status_update`.
- Sending one checks what Meta checks: approved in that language (132001), not paused (132015) or
  disabled (132016), as many body parameters as the text has placeholders (132000), and a header
  parameter of the header's format (132012: a media header sent without its file too), and button components
  naming the template's buttons (131009), a dynamic URL button's suffix given (131008).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from libs.messengers.whatsapp.emulator_errors import GraphApiError, invalid_parameter

CATEGORIES: Final = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
STATUSES: Final = frozenset(
    {
        "APPROVED",
        "PENDING",
        "REJECTED",
        "PAUSED",
        "DISABLED",
        "IN_APPEAL",
        "PENDING_DELETION",
        "DELETED",
        "ARCHIVED",
        "LIMIT_EXCEEDED",
        "FLAGGED",
        "REINSTATED",
        "LOCKED",
    }
)
MEDIA_FORMATS: Final = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
_NAME_RE: Final = re.compile(r"^[a-z0-9_]{1,512}$")
_POSITIONAL_RE: Final = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_NAMED_RE: Final = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
BODY_LIMIT: Final = 1024
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 25


@dataclass
class Template:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]
    parameter_format: str = "POSITIONAL"
    status: str = "PENDING"
    reason: str = "NONE"
    rejection_info: dict[str, str] | None = None
    history: list[str] = field(default_factory=list)

    def to_json(self, fields: set[str] | None = None) -> dict[str, Any]:
        full = {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": self.parameter_format,
            "components": self.components,
        }
        if self.status == "REJECTED":
            full["rejected_reason"] = self.reason
        if fields is None:
            return full
        return {key: value for key, value in full.items() if key in fields or key == "id"}

    def component(self, kind: str) -> dict[str, Any] | None:
        return next((c for c in self.components if str(c.get("type", "")).upper() == kind), None)

    def placeholders(self, text: str) -> list[str]:
        pattern = _NAMED_RE if self.parameter_format == "NAMED" else _POSITIONAL_RE
        return list(dict.fromkeys(pattern.findall(text)))


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"i:{index}".encode()).decode().rstrip("=")


def _index(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise invalid_parameter("the cursor is not one Graph gave") from None
    if not text.startswith("i:") or not text[2:].isdigit():
        raise invalid_parameter("the cursor is not one Graph gave")
    return int(text[2:])


class TemplateStore:
    """Every template of every business account, by id."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.items: dict[str, Template] = {}

    def of(self, waba_id: str) -> list[Template]:
        return [t for t in self.items.values() if t.waba_id == waba_id and t.status != "DELETED"]

    def find(self, waba_id: str, name: str, language: str) -> Template | None:
        return next((t for t in self.of(waba_id) if t.name == name and t.language == language), None)

    def create(self, waba_id: str, body: Mapping[str, Any]) -> Template:
        """`POST /{waba-id}/message_templates`: checked as Meta checks it, then PENDING."""
        name, language, category = body.get("name"), body.get("language"), body.get("category")
        components = body.get("components")
        parameter_format = str(body.get("parameter_format") or "POSITIONAL").upper()
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise invalid_parameter("name must be 1-512 lowercase letters, digits and underscores")
        if not isinstance(language, str) or not language:
            raise invalid_parameter("language is required (e.g. en_US)")
        if category not in CATEGORIES:
            raise invalid_parameter(f"category must be one of {sorted(CATEGORIES)}")
        if parameter_format not in ("POSITIONAL", "NAMED"):
            raise invalid_parameter("parameter_format must be POSITIONAL or NAMED")
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise invalid_parameter("components must be an array of objects")
        bodies = [c for c in components if str(c.get("type", "")).upper() == "BODY"]
        if len(bodies) != 1 or not isinstance(bodies[0].get("text"), str) or not bodies[0]["text"].strip():
            raise invalid_parameter("a template has exactly one BODY component with text")
        if len(bodies[0]["text"]) > BODY_LIMIT:
            raise invalid_parameter(f"the BODY text is longer than {BODY_LIMIT} characters")
        header = next((c for c in components if str(c.get("type", "")).upper() == "HEADER"), None)
        if header is not None and str(header.get("format", "")).upper() not in (*MEDIA_FORMATS, "TEXT", "LOCATION"):
            raise invalid_parameter("a HEADER's format is TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION")
        if self.find(waba_id, name, language) is not None:
            raise GraphApiError(
                400,
                100,
                "Invalid parameter",
                subcode=2388023,
                details=f"Content in {language} already exists for template {name}",
            )
        template = Template(
            id=str(secrets.randbelow(9 * 10**15) + 10**15),
            waba_id=waba_id,
            name=name,
            language=language,
            category=str(category),
            components=[dict(c) for c in components],
            parameter_format=parameter_format,
        )
        template.history.append("PENDING")
        self.items[template.id] = template
        return template

    def page(self, waba_id: str, query: Mapping[str, str], next_url: Callable[[str], str]) -> dict[str, Any]:
        """One page of `GET /{waba-id}/message_templates`, with Graph's cursors."""
        fields = {f.strip() for f in query.get("fields", "").split(",") if f.strip()} or None
        found = self.of(waba_id)
        for key in ("status", "name", "language", "category"):
            wanted = query.get(key)
            if wanted:
                found = [t for t in found if str(getattr(t, key)) in wanted.split(",")]
        limit_text = query.get("limit", "")
        limit = min(MAX_PAGE, int(limit_text)) if limit_text.isdigit() and int(limit_text) > 0 else DEFAULT_PAGE
        start = _index(query["after"]) if query.get("after") else 0
        chunk = found[start : start + limit]
        result: dict[str, Any] = {"data": [t.to_json(fields) for t in chunk]}
        if chunk:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(chunk))}}
            if start + len(chunk) < len(found):
                paging["next"] = next_url(_cursor(start + len(chunk)))
            result["paging"] = paging
        return result

    def delete(self, waba_id: str, name: str) -> int:
        """`DELETE /{waba-id}/message_templates?name=`: every language of that name."""
        doomed = [t for t in self.of(waba_id) if t.name == name]
        if not doomed:
            raise invalid_parameter(f"no template named {name}")
        for template in doomed:
            template.status = "DELETED"
            template.history.append("DELETED")
        return len(doomed)

    def review(
        self, template: Template, event: str, reason: str = "NONE", rejection_info: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Meta's review moves the template to `event`; the `message_template_status_update` value."""
        if event not in STATUSES:
            raise ValueError(f"event must be one of {sorted(STATUSES)}")
        template.status = "APPROVED" if event == "REINSTATED" else event
        template.reason = reason
        template.rejection_info = rejection_info
        template.history.append(event)
        value: dict[str, Any] = {
            "event": event,
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": reason,
            "message_template_category": template.category,
        }
        if rejection_info:
            value["rejection_info"] = rejection_info
        return value

    def check_send(self, waba_id: str, message: Mapping[str, Any]) -> Template:
        """A `template` message object against the template it names; the 1320xx errors Meta gives."""
        name = message.get("name")
        language = message.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(name, str) or not isinstance(code, str):
            raise GraphApiError(400, 131008, "Required parameter is missing", details="template name and language.code")
        template = self.find(waba_id, name, code)
        if template is None or template.status not in ("APPROVED", "PAUSED", "DISABLED"):
            raise GraphApiError(
                400, 132001, "Template name does not exist in the translation",
                details=f"template name ({name}) does not exist in {code}",
            )  # fmt: skip
        if template.status == "PAUSED":
            raise GraphApiError(400, 132015, "Template is Paused", details=f"template {name} is paused")
        if template.status == "DISABLED":
            raise GraphApiError(400, 132016, "Template is disabled", details=f"template {name} is disabled")
        components = message.get("components") or []
        if not isinstance(components, list):
            raise invalid_parameter("template.components must be an array")
        given = {str(c.get("type", "")).lower(): c for c in components if isinstance(c, dict)}
        self._check_body(template, given.get("body"))
        self._check_header(template, given.get("header"))
        self._check_buttons(template, [c for c in components if isinstance(c, dict) and c.get("type") == "button"])
        return template

    def _check_buttons(self, template: Template, given: list[dict[str, Any]]) -> None:
        """Each button component names a button of the template by index and sub_type: a quick reply takes
        one payload, a URL button with a placeholder exactly one text (its suffix), and must get it."""
        buttons = (template.component("BUTTONS") or {}).get("buttons") or []
        seen: set[int] = set()
        for component in given:
            index_text = str(component.get("index", ""))
            sub_type = str(component.get("sub_type", "")).lower()
            index = int(index_text) if index_text.isdigit() else -1
            button = buttons[index] if 0 <= index < len(buttons) else None
            if button is None or str(button.get("type", "")).lower() != sub_type or index in seen:
                raise GraphApiError(
                    400, 131009, "Parameter value is not valid",
                    details=f"button at index {index_text} of type {sub_type or '?'} is not one of the template's",
                )  # fmt: skip
            seen.add(index)
            parameters = self._parameters(component)
            if sub_type == "quick_reply":
                if len(parameters) != 1 or parameters[0].get("type") != "payload":
                    raise GraphApiError(
                        400, 132012, "Parameter format does not match format in the created template",
                        details=f"button at index {index}: a quick reply takes one payload parameter",
                    )  # fmt: skip
            elif sub_type == "url":
                expected = _POSITIONAL_RE.findall(str(button.get("url", "")))
                if len(parameters) != len(expected):
                    raise GraphApiError(
                        400, 132000, "Number of parameters does not match the expected number of params",
                        details=f"button at index {index}: number of params ({len(parameters)}) does not match "
                        f"({len(expected)})",
                    )  # fmt: skip
                if any(p.get("type") != "text" or not p.get("text") for p in parameters):
                    raise GraphApiError(
                        400, 132012, "Parameter format does not match format in the created template",
                        details=f"button at index {index}: a URL's suffix is a text parameter",
                    )  # fmt: skip
        for index, button in enumerate(buttons):
            dynamic = str(button.get("type", "")).upper() == "URL" and _POSITIONAL_RE.search(str(button.get("url", "")))
            if dynamic and index not in seen:
                raise GraphApiError(
                    400, 131008, "Required parameter is missing",
                    details=f"button at index {index} of type Url requires a parameter",
                )  # fmt: skip

    @staticmethod
    def _parameters(component: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        parameters = component.get("parameters") if component is not None else None
        if parameters is None:
            return []
        if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
            raise invalid_parameter("parameters must be an array of objects")
        return parameters

    def _check_body(self, template: Template, given: Mapping[str, Any] | None) -> None:
        body = template.component("BODY") or {}
        expected = template.placeholders(str(body.get("text", "")))
        parameters = self._parameters(given)
        if len(parameters) != len(expected):
            raise GraphApiError(
                400, 132000, "Number of parameters does not match the expected number of params",
                details=f"body: number of localizable_params ({len(parameters)}) does not match the expected "
                f"number of params ({len(expected)})",
            )  # fmt: skip
        for parameter in parameters:
            if parameter.get("type") != "text" or not isinstance(parameter.get("text"), str) or not parameter["text"]:
                raise GraphApiError(400, 131008, "Required parameter is missing", details="body parameters are texts")
            if template.parameter_format == "NAMED" and parameter.get("parameter_name") not in expected:
                raise GraphApiError(
                    400, 132000, "Number of parameters does not match the expected number of params",
                    details=f"body: no parameter named {parameter.get('parameter_name')!r} in the template",
                )  # fmt: skip

    def _check_header(self, template: Template, given: Mapping[str, Any] | None) -> None:
        header = template.component("HEADER")
        if header is None:
            return
        header_format = str(header.get("format", "TEXT")).upper()
        parameters = self._parameters(given)
        if header_format in MEDIA_FORMATS:
            kind = header_format.lower()
            media = parameters[0].get(kind) if len(parameters) == 1 and parameters[0].get("type") == kind else None
            if not isinstance(media, dict) or not (media.get("id") or media.get("link")):
                raise GraphApiError(
                    400, 132012, "Parameter format does not match format in the created template",
                    details=f"header: format mismatch, expected {header_format}",
                )  # fmt: skip
        elif header_format == "TEXT":
            expected = template.placeholders(str(header.get("text", "")))
            if len(parameters) != len(expected):
                raise GraphApiError(
                    400, 132000, "Number of parameters does not match the expected number of params",
                    details=f"header: number of params ({len(parameters)}) does not match ({len(expected)})",
                )  # fmt: skip
