"""What the emulated Kommo CRM stores for chats: pipelines and their statuses, contacts, sources, incoming
(unsorted) leads and chat ↔ contact links.

Plain dataclasses with `to_json()` giving Kommo's REST model (§11) without `_links`, which depend on the
URL a request came in on and are added by the REST handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

PHONE: Final = "PHONE"
EMAIL: Final = "EMAIL"
# ASSUMPTION: field ids differ per real account; these are fixed so tests can name them. The names are
# what an English-language account shows.
CONTACT_FIELDS: Final = {PHONE: (264_911, "Phone"), EMAIL: (264_913, "Email")}
FIELD_CODE_BY_ID: Final = {field_id: code for code, (field_id, _) in CONTACT_FIELDS.items()}
ENUM_CODES: Final = {
    PHONE: frozenset({"WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"}),
    EMAIL: frozenset({"WORK", "PRIV", "OTHER"}),
}
"""The enum codes Kommo's system PHONE and EMAIL multitext fields accept."""
CATEGORY_CHATS: Final = "chats"


@dataclass
class Status:
    """A pipeline stage. type 1 is the "Incoming leads" stage every pipeline has, 0 an ordinary one."""

    id: int
    name: str
    sort: int
    pipeline_id: int
    type: int
    color: str
    is_editable: bool
    account_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "sort": self.sort,
            "is_editable": self.is_editable,
            "pipeline_id": self.pipeline_id,
            "color": self.color,
            "type": self.type,
            "account_id": self.account_id,
        }


@dataclass
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool
    account_id: int
    statuses: list[Status] = field(default_factory=list)

    @property
    def incoming_status_id(self) -> int:
        return next(s.id for s in self.statuses if s.type == 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "sort": self.sort,
            "is_main": self.is_main,
            "is_unsorted_on": True,
            "is_archive": False,
            "account_id": self.account_id,
            "_embedded": {"statuses": [s.to_json() for s in self.statuses]},
        }


@dataclass
class Contact:
    """A contact; `fields` maps PHONE/EMAIL to their values `[{"value","enum_code"}]`."""

    id: int
    name: str
    first_name: str
    last_name: str
    responsible_user_id: int
    created_at: int
    updated_at: int
    account_id: int
    fields: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def values(self, code: str) -> list[str]:
        return [v["value"] for v in self.fields.get(code, [])]

    def custom_fields_values(self) -> list[dict[str, Any]] | None:
        out = []
        for code in (PHONE, EMAIL):
            values = self.fields.get(code)
            if values:
                field_id, field_name = CONTACT_FIELDS[code]
                out.append(
                    {
                        "field_id": field_id,
                        "field_name": field_name,
                        "field_code": code,
                        "field_type": "multitext",
                        "values": [dict(v) for v in values],
                    }
                )
        # Kommo answers null, not [], for an entity without custom field values.
        return out or None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "responsible_user_id": self.responsible_user_id,
            "group_id": 0,
            "created_by": 0,
            "updated_by": 0,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": self.custom_fields_values(),
            "account_id": self.account_id,
        }

    def summary(self) -> dict[str, Any]:
        """The model for the control routes, with `custom_fields_values` always a list."""
        return {**self.to_json(), "custom_fields_values": self.custom_fields_values() or []}


@dataclass
class Source:
    """A lead source (§11): where a chat's incoming lead goes, matched by `external_id`."""

    id: int
    name: str
    pipeline_id: int
    external_id: str
    default: bool
    origin_code: str
    services: list[dict[str, Any]]
    account_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "pipeline_id": self.pipeline_id,
            "external_id": self.external_id,
            "default": self.default,
            "origin_code": self.origin_code,
            "services": self.services,
            "account_id": self.account_id,
        }


@dataclass(frozen=True)
class ChatLink:
    """A chat bound to a contact (§11: one contact per chat)."""

    id: int
    chat_id: str
    contact_id: int

    def to_json(self) -> dict[str, Any]:
        return {"chat_id": self.chat_id, "contact_id": self.contact_id, "id": self.id}


@dataclass
class IncomingLead:
    """An incoming (unsorted) lead of category "chats" and the lead Kommo created with it (§11).

    `source_id` is 0 when the message named no known source and the integration itself is the source.
    """

    uid: str
    lead_id: int
    chat_id: str
    contact_id: int
    pipeline_id: int
    status_id: int
    source_id: int
    source_uid: str
    source_name: str
    created_at: int
    metadata: dict[str, Any]
    account_id: int
    category: str = CATEGORY_CHATS

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "source_uid": self.source_uid,
            "source_name": self.source_name,
            "category": self.category,
            "pipeline_id": self.pipeline_id,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "account_id": self.account_id,
            "_embedded": {
                "contacts": [{"id": self.contact_id}],
                "leads": [{"id": self.lead_id}],
                "companies": [],
            },
        }

    def summary(self) -> dict[str, Any]:
        """The unsorted model plus what the emulator knows beyond it, for the control routes."""
        return {
            **self.to_json(),
            "lead_id": self.lead_id,
            "chat_id": self.chat_id,
            "contact_id": self.contact_id,
            "status_id": self.status_id,
            "source_id": self.source_id,
        }
