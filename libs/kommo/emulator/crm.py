"""The CRM side of Kommo that chats touch (§3, §4, §11): pipelines, contacts, sources, chat ↔ contact links
and the incoming (unsorted) lead a chat's first non-silent incoming message creates.

One `CrmState` is shared by the amojo emulator (which reports chats and incoming messages) and the
account emulator (which serves it over REST v4), so a test sees a message turn into a lead exactly as a
manager would. Everything is keyed by the account's amojo id, the only account id amojo knows (§0).
Mutations hold a lock; REST writes validate a whole batch before changing anything, as Kommo answers a
batch with one 400 naming every bad item.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from libs.errors import BadRequestError
from libs.kommo.emulator.crm_records import (
    CONTACT_FIELDS,
    EMAIL,
    ENUM_CODES,
    FIELD_CODE_BY_ID,
    PHONE,
    ChatLink,
    Contact,
    IncomingLead,
    Pipeline,
    Source,
    Status,
)
from libs.kommo.emulator.records import User

SOURCES_PER_CALL: Final = 50
SOURCES_PER_ACCOUNT: Final = 50
"""§11/§13.5: 100 per integration (Sources API) vs 50 (RU-CAP); the emulator holds to the stricter."""
SOURCE_EXTERNAL_ID_MAX_LEN: Final = 36
"""§13.5: 36 (Sources API) vs 40 (Chats API); a source is created through the Sources API, so 36."""
UNSORTED_CATEGORIES: Final = frozenset({"sip", "mail", "forms", "chats"})
SOURCE_SERVICE_TYPES: Final = frozenset({"whatsapp"})
SOURCE_SERVICE_PARAMS: Final = frozenset({"waba", "is_supports_list_message"})
"""§11: the only service type and params Kommo's source model names."""
_HTTP_LINK: Final = re.compile(r"^https?://[^\s/]+\S*$")

# Validation error codes. FieldMissing, InvalidType, NotSupportedChoice and EntityNotFound appear in
# Kommo's public answers; ASSUMPTION: the others are our names in the same style, since Kommo's are
# undocumented. Clients must go by the status and `path`, never by the code's wording.
FIELD_MISSING: Final = "FieldMissing"
INVALID_TYPE: Final = "InvalidType"
NOT_SUPPORTED_CHOICE: Final = "NotSupportedChoice"
ENTITY_NOT_FOUND: Final = "EntityNotFound"
NOT_BLANK: Final = "NotBlank"
TOO_LONG: Final = "InvalidLength"
NOT_UNIQUE: Final = "NotUnique"
NOT_EDITABLE: Final = "NotEditable"
LIMIT_EXCEEDED: Final = "LimitExceeded"

_PHONE_QUERY: Final = re.compile(r"^[\d\s+()\-.]+$")
_TYPE_NAMES: Final = {str: "string", int: "int", bool: "bool", list: "array", dict: "object"}


@dataclass(frozen=True)
class FieldError:
    code: str
    path: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "detail": self.detail}


class CrmValidationError(BadRequestError):
    """A REST write Kommo refuses with its 400 "Request validation failed" body (§11): errors grouped by
    the `request_id` of the item they belong to."""

    def __init__(self, items: list[tuple[str, list[FieldError]]]) -> None:
        super().__init__("; ".join(f"{rid}: {e.path} {e.code}" for rid, errs in items for e in errs))
        self.items = items

    @classmethod
    def one(cls, code: str, path: str, detail: str, request_id: str = "0") -> CrmValidationError:
        return cls([(request_id, [FieldError(code, path, detail)])])

    def to_json(self) -> dict[str, Any]:
        return {
            "validation-errors": [
                {"request_id": rid, "errors": [e.to_json() for e in errs]} for rid, errs in self.items
            ],
            "title": "Bad Request",
            "type": "https://httpstatus.es/400",
            "status": 400,
            "detail": "Request validation failed",
        }


class _Item:
    """One item of a batch being validated: its request_id and the errors found so far."""

    def __init__(self, raw: Any, index: int) -> None:
        self.is_object = isinstance(raw, dict)
        self.data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        rid = self.data.get("request_id")
        self.request_id = rid if isinstance(rid, str) and rid else str(index)
        self.errors: list[FieldError] = []
        if not self.is_object:
            self.fail(INVALID_TYPE, "", "This value should be of type object.")

    def fail(self, code: str, path: str, detail: str) -> None:
        self.errors.append(FieldError(code, path, detail))

    def get(self, key: str, kind: type, *, required: bool = False, path: str = "") -> Any:
        """The value of `key` if it has type `kind` (bool is not an int); None, with an error, otherwise."""
        path = path or key
        value = self.data.get(key)
        if not self.is_object:  # already refused as a whole
            return None
        if value is None:
            if required:
                self.fail(FIELD_MISSING, path, "This field is missing.")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(INVALID_TYPE, path, f"This value should be of type {_TYPE_NAMES[kind]}.")
            return None
        return value


def _raise_if_failed(items: Iterable[_Item]) -> None:
    failed = [(item.request_id, item.errors) for item in items if item.errors]
    if failed:
        raise CrmValidationError(failed)


def _batch(body: Any, limit: int | None = None) -> list[_Item]:
    """A batch body must be a non-empty array (of at most `limit` items)."""
    if not isinstance(body, list) or not body:
        raise CrmValidationError.one(INVALID_TYPE, "", "The request body must be a non-empty array.")
    if limit is not None and len(body) > limit:
        raise CrmValidationError.one(LIMIT_EXCEEDED, "", f"At most {limit} items are accepted per request.")
    return [_Item(raw, index) for index, raw in enumerate(body)]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


@dataclass
class _Book:
    """One account's CRM, keyed by its amojo id."""

    amojo_id: str
    account_id: int = 0
    responsible_user_id: int = 0
    pipelines: list[Pipeline] = field(default_factory=list)
    contacts: dict[int, Contact] = field(default_factory=dict)
    sources: dict[int, Source] = field(default_factory=dict)
    leads: dict[str, IncomingLead] = field(default_factory=dict)
    links: dict[str, ChatLink] = field(default_factory=dict)
    chats: set[str] = field(default_factory=set)
    lead_of_chat: dict[str, str] = field(default_factory=dict)

    @property
    def main_pipeline(self) -> Pipeline:
        return next(p for p in self.pipelines if p.is_main)

    def pipeline(self, pipeline_id: int) -> Pipeline | None:
        return next((p for p in self.pipelines if p.id == pipeline_id), None)

    def source_by_external_id(self, external_id: str) -> Source | None:
        return next((s for s in self.sources.values() if s.external_id == external_id), None)


class CrmState:
    """Every account's chat-related CRM data; inspectable in-process, over the account emulator's REST v4
    routes and its `/_emulator/accounts/{domain}/crm` route."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._books: dict[str, _Book] = {}
        # Kommo's ids are global integers; the starting points only make them look like Kommo's.
        self._pipeline_ids = itertools.count(7_200_001)
        self._status_ids = itertools.count(61_000_001)
        self._contact_ids = itertools.count(3_100_001)
        self._lead_ids = itertools.count(20_400_001)
        self._source_ids = itertools.count(10_001)
        self._link_ids = itertools.count(26_001)

    def now(self) -> datetime:
        return self._clock()

    def _now_s(self) -> int:
        return int(self.now().timestamp())

    def _book(self, amojo_id: str) -> _Book:
        """The account's CRM, created with its two pipelines on first touch."""
        if not amojo_id:
            raise BadRequestError("an amojo id is required")
        with self._lock:
            book = self._books.get(amojo_id)
            if book is None:
                book = _Book(amojo_id)
                book.pipelines = [self._new_pipeline(book, "Sales", 1, True), self._new_pipeline(book, "Partners", 2)]
                self._books[amojo_id] = book
            return book

    def _new_pipeline(self, book: _Book, name: str, sort: int, is_main: bool = False) -> Pipeline:
        pipeline = Pipeline(next(self._pipeline_ids), name, sort, is_main, book.account_id)
        # ASSUMPTION: two working stages stand in for an account's own; 142/143 are Kommo's fixed ids for
        # the closing stages of every pipeline.
        stages = [
            (next(self._status_ids), "Incoming leads", 10, 1, "#c1c1c1", False),
            (next(self._status_ids), "Contact established", 20, 0, "#99ccff", True),
            (next(self._status_ids), "Negotiation", 30, 0, "#ffff99", True),
            (142, "Closed - won", 10000, 0, "#CCFF66", False),
            (143, "Closed - lost", 11000, 0, "#D5D8DB", False),
        ]
        pipeline.statuses = [
            Status(sid, name, s, pipeline.id, kind, color, editable, book.account_id)
            for sid, name, s, kind, color, editable in stages
        ]
        return pipeline

    def bind_account(self, amojo_id: str, account_id: int, responsible_user_id: int = 0) -> None:
        """Name the Kommo account (its integer id and admin) behind an amojo id; the account emulator does
        this when it creates an account. Records made before then get the id now."""
        with self._lock:
            book = self._book(amojo_id)
            book.account_id = account_id
            book.responsible_user_id = responsible_user_id
            for pipeline in book.pipelines:
                pipeline.account_id = account_id
                for status in pipeline.statuses:
                    status.account_id = account_id
            for contact in book.contacts.values():
                contact.account_id = account_id
            for source in book.sources.values():
                source.account_id = account_id
            for lead in book.leads.values():
                lead.account_id = account_id

    # -- inspection

    def pipelines(self, amojo_id: str) -> list[Pipeline]:
        with self._lock:
            return list(self._book(amojo_id).pipelines)

    def main_pipeline(self, amojo_id: str) -> Pipeline:
        with self._lock:
            return self._book(amojo_id).main_pipeline

    def contacts(self, amojo_id: str) -> list[Contact]:
        with self._lock:
            return list(self._book(amojo_id).contacts.values())

    def contact(self, amojo_id: str, contact_id: int) -> Contact | None:
        with self._lock:
            return self._book(amojo_id).contacts.get(contact_id)

    def leads(self, amojo_id: str) -> list[IncomingLead]:
        """Incoming leads in creation order."""
        with self._lock:
            return list(self._book(amojo_id).leads.values())

    def lead_for_chat(self, amojo_id: str, kommo_chat_id: str) -> IncomingLead | None:
        with self._lock:
            book = self._book(amojo_id)
            uid = book.lead_of_chat.get(kommo_chat_id)
            return book.leads[uid] if uid else None

    def sources(self, amojo_id: str) -> list[Source]:
        with self._lock:
            return list(self._book(amojo_id).sources.values())

    def source(self, amojo_id: str, source_id: int) -> Source | None:
        with self._lock:
            return self._book(amojo_id).sources.get(source_id)

    def links(self, amojo_id: str) -> list[ChatLink]:
        with self._lock:
            return list(self._book(amojo_id).links.values())

    def chats(self, amojo_id: str) -> list[str]:
        """Kommo chat ids of the account's chats, as amojo reported them."""
        with self._lock:
            return sorted(self._book(amojo_id).chats)

    def snapshot(self, amojo_id: str) -> dict[str, Any]:
        """What `GET /_emulator/accounts/{domain}/crm` answers."""
        with self._lock:
            book = self._book(amojo_id)
            return {
                "pipelines": [p.to_json() for p in book.pipelines],
                "sources": [s.to_json() for s in book.sources.values()],
                "contacts": [c.summary() for c in book.contacts.values()],
                "leads": [lead.summary() for lead in book.leads.values()],
                "links": [link.to_json() for link in book.links.values()],
            }

    # -- chats (amojo reports them)

    def register_chat(self, amojo_id: str, kommo_chat_id: str) -> None:
        """A chat now exists in the account (created by amojo §3, or by a first message §4)."""
        with self._lock:
            self._book(amojo_id).chats.add(kommo_chat_id)

    def chat_message(
        self,
        amojo_id: str,
        kommo_chat_id: str,
        client: User,
        source_external_id: str,
        *,
        silent: bool,
        text: str,
        service: str = "",
        integration_name: str = "",
    ) -> IncomingLead | None:
        """An incoming message reached a chat. The first non-silent one of a chat without a lead creates
        the incoming lead (§4, §11): with the contact linked to the chat, or a new contact made from the
        client's profile and linked to the chat. Returns the lead if this message created it.

        The lead goes to the pipeline of the source whose `external_id` matches; "an unknown external_id
        falls back to the integration as the source" (§11), whose lead goes to the main pipeline.
        `service` is the channel code, `integration_name` the name shown when the integration is the source.
        """
        with self._lock:
            book = self._book(amojo_id)
            book.chats.add(kommo_chat_id)
            if silent or kommo_chat_id in book.lead_of_chat:
                return None
            now = self._now_s()
            link = book.links.get(kommo_chat_id)
            contact = book.contacts.get(link.contact_id) if link is not None else None
            if contact is None:
                contact = self._new_contact(book, client.name, client.phone, client.email)
                book.links[kommo_chat_id] = ChatLink(next(self._link_ids), kommo_chat_id, contact.id)
            source = book.source_by_external_id(source_external_id) if source_external_id else None
            pipeline = (book.pipeline(source.pipeline_id) if source else None) or book.main_pipeline
            source_name = source.name if source else (integration_name or service)
            # ASSUMPTION: `source_uid` is the source's external_id (the integration's channel code when it
            # is the source); the metadata is a snapshot of the first message and is not updated later.
            lead = IncomingLead(
                uid=uuid.uuid4().hex,
                lead_id=next(self._lead_ids),
                chat_id=kommo_chat_id,
                contact_id=contact.id,
                pipeline_id=pipeline.id,
                status_id=pipeline.incoming_status_id,
                source_id=source.id if source else 0,
                source_uid=source.external_id if source else service,
                source_name=source_name,
                created_at=now,
                metadata={
                    "from": client.name,
                    "received_at": now,
                    "service": service,
                    "client": {"name": client.name, "avatar": client.avatar},
                    "origin": {"chat_id": kommo_chat_id},
                    "last_message_text": text,
                    "source_name": source_name,
                },
                account_id=book.account_id,
            )
            book.leads[lead.uid] = lead
            book.lead_of_chat[kommo_chat_id] = lead.uid
            return lead

    # -- contacts

    def _new_contact(
        self,
        book: _Book,
        name: str,
        phone: str = "",
        email: str = "",
        *,
        first_name: str = "",
        last_name: str = "",
        responsible_user_id: int = 0,
        fields: dict[str, list[dict[str, str]]] | None = None,
    ) -> Contact:
        now = self._now_s()
        values = dict(fields or {})
        if phone:
            values.setdefault(PHONE, [{"value": phone, "enum_code": "WORK"}])
        if email:
            values.setdefault(EMAIL, [{"value": email, "enum_code": "WORK"}])
        contact = Contact(
            id=next(self._contact_ids),
            name=name,
            first_name=first_name,
            last_name=last_name,
            responsible_user_id=responsible_user_id or book.responsible_user_id,
            created_at=now,
            updated_at=now,
            account_id=book.account_id,
            fields=values,
        )
        book.contacts[contact.id] = contact
        return contact

    def add_contact(self, amojo_id: str, name: str, phone: str = "", email: str = "") -> Contact:
        """A contact that already exists in the account (a test seeds it)."""
        if not name:
            raise BadRequestError("a contact needs a name")
        with self._lock:
            return self._new_contact(self._book(amojo_id), name, phone, email)

    def write_first_contact(self, amojo_id: str, kommo_chat_id: str, phone: str) -> Contact:
        """A manager writes first to `phone` (§9): the chat Kommo opens belongs to the contact with that
        number (made if none has it). ASSUMPTION: the chat gets no lead of its own here; the client's first
        answer makes the incoming lead, with this contact, as any chat's first message does (§4)."""
        with self._lock:
            book = self._book(amojo_id)
            book.chats.add(kommo_chat_id)
            wanted = _digits(phone)
            contact = next(
                (c for c in book.contacts.values() if any(_digits(p) == wanted for p in c.values(PHONE))), None
            )
            if contact is None:
                contact = self._new_contact(book, phone, phone)
            if kommo_chat_id not in book.links:
                book.links[kommo_chat_id] = ChatLink(next(self._link_ids), kommo_chat_id, contact.id)
            return contact

    def find_contacts(self, amojo_id: str, query: str = "") -> list[Contact]:
        """`GET /contacts?query=`: a name substring, an email (both case-insensitive) or a phone by its
        digits, so "+1 (555) 010-2030" and "15550102030" find each other. No query: every contact."""
        query = query.strip()
        folded = query.casefold()
        digits = _digits(query) if _PHONE_QUERY.match(query) and len(_digits(query)) >= 3 else ""

        def matches(contact: Contact) -> bool:
            if not query or folded in contact.name.casefold():
                return True
            if any(folded in email.casefold() for email in contact.values(EMAIL)):
                return True
            return bool(digits) and any(digits in _digits(phone) for phone in contact.values(PHONE))

        with self._lock:
            return [c for c in self._book(amojo_id).contacts.values() if matches(c)]

    def create_contacts(self, amojo_id: str, body: Any) -> list[tuple[str, Contact]]:
        """`POST /contacts` with an array; each item needs `name` or `first_name`."""
        items = _batch(body)
        parsed = []
        for item in items:
            name = item.get("name", str) or ""
            first_name = item.get("first_name", str) or ""
            last_name = item.get("last_name", str) or ""
            responsible = item.get("responsible_user_id", int) or 0
            fields = _custom_fields(item)
            named = name or first_name or any(e.path in ("", "name", "first_name") for e in item.errors)
            if not named:
                item.fail(FIELD_MISSING, "name", "This field is missing.")
            full_name = name or " ".join(part for part in (first_name, last_name) if part)
            parsed.append((item, full_name, first_name, last_name, responsible, fields))
        _raise_if_failed(items)
        with self._lock:
            book = self._book(amojo_id)
            return [
                (
                    item.request_id,
                    self._new_contact(
                        book,
                        full_name,
                        first_name=first,
                        last_name=last,
                        responsible_user_id=responsible,
                        fields=fields,
                    ),
                )
                for item, full_name, first, last, responsible, fields in parsed
            ]

    def update_contact(self, amojo_id: str, contact_id: int, body: Any) -> Contact | None:
        """`PATCH /contacts/{id}` with an object: names, and the listed custom fields replaced (an empty
        `values` clears one). None when there is no such contact."""
        item = _Item(body, 0)
        name = item.get("name", str)
        first_name = item.get("first_name", str)
        last_name = item.get("last_name", str)
        responsible = item.get("responsible_user_id", int)
        fields = _custom_fields(item, allow_empty=True)
        _raise_if_failed([item])
        with self._lock:
            contact = self._book(amojo_id).contacts.get(contact_id)
            if contact is None:
                return None
            if name is not None:
                contact.name = name
            if first_name is not None:
                contact.first_name = first_name
            if last_name is not None:
                contact.last_name = last_name
            if responsible is not None:
                contact.responsible_user_id = responsible
            for code, values in (fields or {}).items():
                if values:
                    contact.fields[code] = values
                else:
                    contact.fields.pop(code, None)
            contact.updated_at = self._now_s()
            return contact

    # -- chat ↔ contact links

    def chat_links(self, amojo_id: str, chat_ids: list[str], contact_ids: list[int]) -> list[ChatLink]:
        """`GET /contacts/chats`. ASSUMPTION: a link must match every filter given; none given, all links."""
        with self._lock:
            return [
                link
                for link in self._book(amojo_id).links.values()
                if (not chat_ids or link.chat_id in chat_ids) and (not contact_ids or link.contact_id in contact_ids)
            ]

    def link_chats(self, amojo_id: str, body: Any) -> list[tuple[str, ChatLink]]:
        """`POST /contacts/chats` (§11): one contact per chat, and only chats of this account."""
        items = _batch(body)
        with self._lock:
            book = self._book(amojo_id)
            planned: dict[str, int] = {chat_id: link.contact_id for chat_id, link in book.links.items()}
            pairs: list[tuple[_Item, str, int]] = []
            for item in items:
                contact_id = item.get("contact_id", int, required=True)
                chat_id = item.get("chat_id", str, required=True)
                if contact_id is not None and contact_id not in book.contacts:
                    item.fail(ENTITY_NOT_FOUND, "contact_id", f"Contact {contact_id} not found.")
                if chat_id is not None and chat_id not in book.chats:
                    item.fail(ENTITY_NOT_FOUND, "chat_id", "The chat is not a chat of this account's channel.")
                if item.errors or contact_id is None or chat_id is None:
                    continue
                linked_to = planned.get(chat_id)
                if linked_to is not None and linked_to != contact_id:
                    item.fail(NOT_UNIQUE, "chat_id", f"The chat is already linked to contact {linked_to}.")
                    continue
                planned[chat_id] = contact_id
                pairs.append((item, chat_id, contact_id))
            _raise_if_failed(items)
            answer = []
            for item, chat_id, contact_id in pairs:
                # ASSUMPTION: re-linking the same pair is answered with the existing link (its id).
                link = book.links.get(chat_id)
                if link is None:
                    link = ChatLink(next(self._link_ids), chat_id, contact_id)
                    book.links[chat_id] = link
                answer.append((item.request_id, link))
            return answer

    # -- sources

    def sources_by_external_id(self, amojo_id: str, external_ids: list[str]) -> list[Source]:
        with self._lock:
            return [
                s for s in self._book(amojo_id).sources.values() if not external_ids or s.external_id in external_ids
            ]

    def create_sources(self, amojo_id: str, body: Any) -> list[tuple[str, Source]]:
        """`POST /sources` (§11): ≤50 per call and per account, external_id unique and ≤36 printable ASCII,
        pipeline_id (if given) one of the account's, else the main pipeline."""
        items = _batch(body, SOURCES_PER_CALL)
        with self._lock:
            book = self._book(amojo_id)
            taken = {s.external_id for s in book.sources.values()}
            parsed = []
            for item in items:
                name = item.get("name", str, required=True)
                if name is not None and not name.strip():
                    item.fail(NOT_BLANK, "name", "This value should not be blank.")
                external_id = item.get("external_id", str, required=True)
                if external_id is not None and _valid_external_id(item, external_id):
                    if external_id in taken:
                        item.fail(NOT_UNIQUE, "external_id", "A source with this external_id already exists.")
                    taken.add(external_id)
                pipeline_id = _pipeline_id(item, book)
                default = item.get("default", bool) or False
                origin_code = item.get("origin_code", str) or ""
                services = _services(item)
                parsed.append((item, name, external_id, pipeline_id, default, origin_code, services))
            if len(book.sources) + len(items) > SOURCES_PER_ACCOUNT:
                items[0].fail(
                    LIMIT_EXCEEDED, "", f"An integration may have at most {SOURCES_PER_ACCOUNT} sources in an account."
                )
            _raise_if_failed(items)
            answer = []
            for item, name, external_id, pipeline_id, default, origin_code, services in parsed:
                source = Source(
                    id=next(self._source_ids),
                    name=name,
                    pipeline_id=pipeline_id or book.main_pipeline.id,
                    external_id=external_id,
                    default=default,
                    origin_code=origin_code,
                    services=services or [],
                    account_id=book.account_id,
                )
                book.sources[source.id] = source
                if default:
                    _only_default(book, source)
                answer.append((item.request_id, source))
            return answer

    def update_sources(self, amojo_id: str, body: Any, *, source_id: int | None = None) -> list[tuple[str, Source]]:
        """`PATCH /sources` (an array, each with `id`) or `PATCH /sources/{id}` (`source_id`, an object).
        `external_id` is immutable: repeating it is fine, changing it is refused."""
        if source_id is not None:
            if not isinstance(body, dict):
                raise CrmValidationError.one(INVALID_TYPE, "", "The request body must be an object.")
            items = [_Item({**body, "id": source_id}, 0)]
        else:
            items = _batch(body, SOURCES_PER_CALL)
        with self._lock:
            book = self._book(amojo_id)
            parsed = []
            for item in items:
                sid = item.get("id", int, required=True)
                source = book.sources.get(sid) if sid is not None else None
                if sid is not None and source is None:
                    item.fail(ENTITY_NOT_FOUND, "id", f"Source {sid} not found.")
                name = item.get("name", str)
                if name is not None and not name.strip():
                    item.fail(NOT_BLANK, "name", "This value should not be blank.")
                external_id = item.get("external_id", str)
                if external_id is not None and source is not None and external_id != source.external_id:
                    item.fail(NOT_EDITABLE, "external_id", "external_id cannot be changed.")
                pipeline_id = _pipeline_id(item, book)
                default = item.get("default", bool)
                origin_code = item.get("origin_code", str)
                services = _services(item)
                parsed.append((item, source, name, pipeline_id, default, origin_code, services))
            _raise_if_failed(items)
            answer = []
            for item, source, name, pipeline_id, default, origin_code, services in parsed:
                assert source is not None
                if name is not None:
                    source.name = name
                if pipeline_id is not None:
                    source.pipeline_id = pipeline_id
                if origin_code is not None:
                    source.origin_code = origin_code
                if services is not None:
                    source.services = services
                if default is not None:
                    source.default = default
                    if default:
                        _only_default(book, source)
                answer.append((item.request_id, source))
            return answer

    def require_waba_source(self, amojo_id: str, source_id: int) -> None:
        """A chat template's review needs a source with `params.waba: true` (§11); CrmValidationError else."""
        with self._lock:
            source = self._book(amojo_id).sources.get(source_id)
            if source is None:
                raise CrmValidationError.one(ENTITY_NOT_FOUND, "source_id", f"Source {source_id} not found.")
            if not any(
                s.get("type") == "whatsapp" and (s.get("params") or {}).get("waba") is True for s in source.services
            ):
                raise CrmValidationError.one(
                    NOT_SUPPORTED_CHOICE, "source_id", "The source does not declare WhatsApp templates (params.waba)."
                )

    def delete_source(self, amojo_id: str, source_id: int) -> bool:
        """False when there is no such source. Leads already created keep their pipeline."""
        with self._lock:
            return self._book(amojo_id).sources.pop(source_id, None) is not None

    def delete_sources(self, amojo_id: str, body: Any) -> int:
        """`DELETE /sources` with `[{"id":…}]`: every id must exist, or nothing is deleted."""
        items = _batch(body, SOURCES_PER_CALL)
        with self._lock:
            book = self._book(amojo_id)
            ids: list[int] = []
            for item in items:
                sid = item.get("id", int, required=True)
                if sid is not None and sid not in book.sources:
                    item.fail(ENTITY_NOT_FOUND, "id", f"Source {sid} not found.")
                elif sid is not None:
                    ids.append(sid)
            _raise_if_failed(items)
            for sid in ids:
                book.sources.pop(sid, None)
            return len(ids)

    # -- incoming leads

    def unsorted(self, amojo_id: str, categories: list[str], pipeline_id: int | None) -> list[IncomingLead]:
        with self._lock:
            return [
                lead
                for lead in self._book(amojo_id).leads.values()
                if (not categories or lead.category in categories)
                and (pipeline_id is None or lead.pipeline_id == pipeline_id)
            ]


def _valid_external_id(item: _Item, external_id: str) -> bool:
    if not external_id:
        item.fail(NOT_BLANK, "external_id", "This value should not be blank.")
        return False
    if len(external_id) > SOURCE_EXTERNAL_ID_MAX_LEN or not _printable_ascii(external_id):
        item.fail(
            TOO_LONG,
            "external_id",
            f"external_id must be at most {SOURCE_EXTERNAL_ID_MAX_LEN} printable ASCII characters.",
        )
        return False
    return True


def _pipeline_id(item: _Item, book: _Book) -> int | None:
    pipeline_id: int | None = item.get("pipeline_id", int)
    if pipeline_id is not None and book.pipeline(pipeline_id) is None:
        item.fail(NOT_SUPPORTED_CHOICE, "pipeline_id", f"Pipeline {pipeline_id} not found.")
        return None
    return pipeline_id


def _services(item: _Item) -> list[dict[str, Any]] | None:
    """`services` of a source (§11): `[{type: "whatsapp", params: {waba, is_supports_list_message}, pages:
    [{id, name, link}]}]`. ASSUMPTION: Kommo documents only these keys, so it refuses any other type or
    param (NotSupportedChoice), a param that is not a boolean, and a page without a string id and name or
    whose link is not an http(s) address; what it stores is what it was given."""
    services: list[Any] | None = item.get("services", list)
    if services is None:
        return None
    for index, service in enumerate(services):
        path = f"services.{index}"
        if not isinstance(service, dict):
            item.fail(INVALID_TYPE, path, "This value should be of type object.")
            continue
        kind = service.get("type")
        if not isinstance(kind, str) or not kind:
            item.fail(FIELD_MISSING, f"{path}.type", "This field is missing.")
        elif kind not in SOURCE_SERVICE_TYPES:
            item.fail(NOT_SUPPORTED_CHOICE, f"{path}.type", "The value you selected is not a valid choice.")
        for key, expected in (("params", dict), ("pages", list)):
            if service.get(key) is not None and not isinstance(service[key], expected):
                item.fail(INVALID_TYPE, f"{path}.{key}", f"This value should be of type {_TYPE_NAMES[expected]}.")
        params = service.get("params")
        if isinstance(params, dict):
            for name, value in params.items():
                if name not in SOURCE_SERVICE_PARAMS:
                    item.fail(
                        NOT_SUPPORTED_CHOICE, f"{path}.params.{name}", "The value you selected is not a valid choice."
                    )
                elif not isinstance(value, bool):
                    item.fail(INVALID_TYPE, f"{path}.params.{name}", "This value should be of type bool.")
        pages = service.get("pages")
        for page_index, page in enumerate(pages if isinstance(pages, list) else []):
            _check_page(item, f"{path}.pages.{page_index}", page)
    return [dict(s) for s in services if isinstance(s, dict)]


def _check_page(item: _Item, path: str, page: Any) -> None:
    if not isinstance(page, dict):
        item.fail(INVALID_TYPE, path, "This value should be of type object.")
        return
    for key in ("id", "name"):
        value = page.get(key)
        if value is None:
            item.fail(FIELD_MISSING, f"{path}.{key}", "This field is missing.")
        elif not isinstance(value, str):
            item.fail(INVALID_TYPE, f"{path}.{key}", "This value should be of type string.")
        elif not value.strip():
            item.fail(NOT_BLANK, f"{path}.{key}", "This value should not be blank.")
    link = page.get("link")
    if link is not None and (not isinstance(link, str) or not _HTTP_LINK.match(link)):
        item.fail(INVALID_TYPE, f"{path}.link", "This value is not a valid URL.")


def _only_default(book: _Book, source: Source) -> None:
    """ASSUMPTION: "one default per integration" (§11) means a new default replaces the old one."""
    for other in book.sources.values():
        if other.id != source.id:
            other.default = False


def _custom_fields(item: _Item, *, allow_empty: bool = False) -> dict[str, list[dict[str, str]]] | None:
    """`custom_fields_values` of a contact: PHONE and EMAIL, named by `field_code` or `field_id`, each with
    `values:[{value, enum_code?}]` (enum_code defaults to WORK)."""
    entries: list[Any] | None = item.get("custom_fields_values", list)
    if entries is None:
        return None
    out: dict[str, list[dict[str, str]]] = {}
    for index, entry in enumerate(entries):
        path = f"custom_fields_values.{index}"
        if not isinstance(entry, dict):
            item.fail(INVALID_TYPE, path, "This value should be of type object.")
            continue
        code: Any = entry.get("field_code")
        field_id: Any = entry.get("field_id")
        if code is None and field_id is None:
            item.fail(FIELD_MISSING, f"{path}.field_id", "This field is missing.")
            continue
        if code is not None and (not isinstance(code, str) or code not in CONTACT_FIELDS):
            item.fail(NOT_SUPPORTED_CHOICE, f"{path}.field_code", "The value you selected is not a valid choice.")
            continue
        valid_id = isinstance(field_id, int) and not isinstance(field_id, bool)
        by_id = FIELD_CODE_BY_ID.get(field_id) if valid_id else None
        if field_id is not None and (by_id is None or (code is not None and by_id != code)):
            item.fail(NOT_SUPPORTED_CHOICE, f"{path}.field_id", "The value you selected is not a valid choice.")
            continue
        code = code if code is not None else by_id
        values = entry.get("values")
        if values is None or (values == [] and not allow_empty):
            item.fail(FIELD_MISSING, f"{path}.values", "This field is missing.")
            continue
        if not isinstance(values, list):
            item.fail(INVALID_TYPE, f"{path}.values", "This value should be of type array.")
            continue
        parsed: list[dict[str, str]] = []
        for vindex, value in enumerate(values):
            vpath = f"{path}.values.{vindex}"
            text = value.get("value") if isinstance(value, dict) else None
            if not isinstance(text, str) or not text:
                item.fail(INVALID_TYPE, f"{vpath}.value", "This value should be of type string.")
                continue
            enum_code = value.get("enum_code") or "WORK"
            if not isinstance(enum_code, str) or enum_code not in ENUM_CODES[code]:
                item.fail(NOT_SUPPORTED_CHOICE, f"{vpath}.enum_code", "The value you selected is not a valid choice.")
                continue
            parsed.append({"value": text, "enum_code": enum_code})
        out[code] = parsed
    return out
