"""Kommo's chat templates (§11 "Chat templates"), per account: what `/api/v4/chats/templates` serves.

Model: `{id, account_id, name, content, is_editable, type: amocrm|waba, buttons[{type: inline|url, text,
url}], attachment, created_at, updated_at, external_id}` plus the WABA fields (`waba_footer`,
`waba_category`, `waba_language`, `waba_examples`, `waba_header` ≤ 60, `waba_header_type` text|media) and,
with `with=reviews`, `review_status` (draft|review|approved|paused|rejected), `is_on_review` and
`_embedded.reviews[{id, source_id, status, reject_reason}]`. POST requires `name` and `content`; a waba
template is editable only while a draft; more than the account's limit is 422.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from libs.kommo.emulator.account_webhooks import AccountWebhooks, form_pairs
from libs.kommo.emulator.crm import (
    FIELD_MISSING,
    NOT_BLANK,
    NOT_EDITABLE,
    NOT_SUPPORTED_CHOICE,
    TOO_LONG,
    CrmValidationError,
    _batch,
    _Item,
    _raise_if_failed,
)

TEMPLATES_PER_ACCOUNT: Final = 150
"""peers-and-user-asks.md: 150 templates per account (Kommo's 2024 knowledge base)."""
TYPES: Final = frozenset({"amocrm", "waba"})
WABA_CATEGORIES: Final = frozenset({"UTILITY", "AUTHENTICATION", "MARKETING"})
HEADER_TYPES: Final = frozenset({"text", "media"})
BUTTON_TYPES: Final = frozenset({"inline", "url"})
VERDICTS: Final = frozenset({"approved", "paused", "rejected"})
WABA_HEADER_LIMIT: Final = 60
_TEXT_FIELDS: Final = ("waba_footer", "waba_language", "external_id")


class TemplateLimitError(Exception):
    """More templates than the account may have: Kommo's 422."""


@dataclass
class Review:
    id: int
    source_id: int
    status: str = "review"
    reject_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source_id": self.source_id, "status": self.status, "reject_reason": self.reject_reason}


@dataclass
class ChatTemplate:
    id: int
    account_id: int
    fields: dict[str, Any]
    created_at: int
    updated_at: int
    reviews: list[Review] = field(default_factory=list)

    @property
    def review_status(self) -> str:
        return self.reviews[-1].status if self.reviews else "draft"

    @property
    def is_editable(self) -> bool:
        return self.fields.get("type") != "waba" or self.review_status == "draft"

    def to_json(self, with_reviews: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "account_id": self.account_id,
            "buttons": [],
            "attachment": None,
            "external_id": None,
            **self.fields,
            "is_editable": self.is_editable,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if with_reviews:
            body["review_status"] = self.review_status
            body["is_on_review"] = self.review_status == "review"
            body["_embedded"] = {"reviews": [r.to_json() for r in self.reviews]}
        return body


def _validate(item: _Item, *, creating: bool) -> dict[str, Any]:
    """The fields of one POST/PATCH item, each error noted on `item`."""
    fields: dict[str, Any] = {}
    for key in ("name", "content"):
        value = item.get(key, str, required=creating)
        if value is not None and not value.strip():
            item.fail(NOT_BLANK, key, "This value should not be blank.")
        if value is not None:
            fields[key] = value
    kind = item.get("type", str)
    if kind is not None:
        if kind not in TYPES:
            item.fail(NOT_SUPPORTED_CHOICE, "type", "The value you selected is not a valid choice.")
        fields["type"] = kind
    elif creating:
        fields["type"] = "amocrm"
    for key in _TEXT_FIELDS:
        value = item.get(key, str)
        if value is not None:
            fields[key] = value
    category = item.get("waba_category", str)
    if category is not None:
        if category not in WABA_CATEGORIES:
            item.fail(NOT_SUPPORTED_CHOICE, "waba_category", "The value you selected is not a valid choice.")
        fields["waba_category"] = category
    header = item.get("waba_header", str)
    if header is not None:
        if len(header) > WABA_HEADER_LIMIT:
            item.fail(TOO_LONG, "waba_header", f"This value is too long. It should have {WABA_HEADER_LIMIT} or less.")
        fields["waba_header"] = header
    header_type = item.get("waba_header_type", str)
    if header_type is not None:
        if header_type not in HEADER_TYPES:
            item.fail(NOT_SUPPORTED_CHOICE, "waba_header_type", "The value you selected is not a valid choice.")
        fields["waba_header_type"] = header_type
    examples = item.get("waba_examples", dict)
    if examples is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in examples.items()):
            item.fail(NOT_SUPPORTED_CHOICE, "waba_examples", "Examples map markers to texts.")
        fields["waba_examples"] = examples
    buttons = item.get("buttons", list)
    if buttons is not None:
        for index, button in enumerate(buttons):
            path = f"buttons[{index}]"
            if not isinstance(button, dict) or button.get("type") not in BUTTON_TYPES:
                item.fail(NOT_SUPPORTED_CHOICE, f"{path}.type", "The value you selected is not a valid choice.")
            elif not isinstance(button.get("text"), str) or not button["text"]:
                item.fail(FIELD_MISSING, f"{path}.text", "This field is missing.")
            elif button["type"] == "url" and not isinstance(button.get("url"), str):
                item.fail(FIELD_MISSING, f"{path}.url", "This field is missing.")
        fields["buttons"] = buttons
    return fields


class ChatTemplates:
    """Every account's chat templates, keyed by the account's amojo id."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._books: dict[str, dict[int, ChatTemplate]] = {}
        self._ids = itertools.count(7_101)
        self._review_ids = itertools.count(301)
        # The account webhooks a user's review request fires (`add_chat_template_review`).
        self.webhooks = AccountWebhooks()

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def of(self, amojo_id: str) -> list[ChatTemplate]:
        with self._lock:
            return list(self._books.get(amojo_id, {}).values())

    def get(self, amojo_id: str, template_id: int) -> ChatTemplate | None:
        with self._lock:
            return self._books.get(amojo_id, {}).get(template_id)

    def create(self, amojo_id: str, account_id: int, body: Any) -> list[tuple[str, ChatTemplate]]:
        items = _batch(body)
        with self._lock:
            book = self._books.setdefault(amojo_id, {})
            parsed = [(item, _validate(item, creating=True)) for item in items]
            _raise_if_failed(items)
            if len(book) + len(items) > TEMPLATES_PER_ACCOUNT:
                raise TemplateLimitError(f"An account may have at most {TEMPLATES_PER_ACCOUNT} chat templates.")
            now = self._now()
            answer = []
            for item, fields in parsed:
                template = ChatTemplate(next(self._ids), account_id, fields, now, now)
                book[template.id] = template
                answer.append((item.request_id, template))
            return answer

    def update(self, amojo_id: str, template_id: int, body: Any) -> ChatTemplate | None:
        """PATCH one template (an object); None for an unknown id."""
        if not isinstance(body, dict):
            raise CrmValidationError.one(NOT_SUPPORTED_CHOICE, "", "The request body must be an object.")
        with self._lock:
            template = self._books.get(amojo_id, {}).get(template_id)
            if template is None:
                return None
            item = _Item(body, 0)
            fields = _validate(item, creating=False)
            if not template.is_editable:
                item.fail(NOT_EDITABLE, "", "A WABA template can be edited only while it is a draft.")
            _raise_if_failed([item])
            template.fields.update(fields)
            template.updated_at = self._now()
            return template

    def delete(self, amojo_id: str, template_ids: list[int]) -> int:
        with self._lock:
            book = self._books.get(amojo_id, {})
            return sum(1 for tid in template_ids if book.pop(tid, None) is not None)

    def request_review(self, amojo_id: str, template_id: int, source_id: int = 0) -> Review | None:
        """`POST …/{id}/review`: a new review, status `review` (only a waba template can be reviewed)."""
        with self._lock:
            template = self._books.get(amojo_id, {}).get(template_id)
            if template is None:
                return None
            if template.fields.get("type") != "waba":
                raise CrmValidationError.one(NOT_SUPPORTED_CHOICE, "type", "Only a WABA template can be reviewed.")
            review = Review(next(self._review_ids), source_id)
            template.reviews.append(review)
            template.updated_at = self._now()
            return review

    def set_review(self, amojo_id: str, template_id: int, review_id: int, body: Any) -> Review | None:
        """`POST …/{id}/review/{review_id}` with `{status, reject_reason}`."""
        if not isinstance(body, dict):
            raise CrmValidationError.one(NOT_SUPPORTED_CHOICE, "", "The request body must be an object.")
        status = body.get("status")
        if status not in VERDICTS:
            raise CrmValidationError.one(
                NOT_SUPPORTED_CHOICE, "status", "The value you selected is not a valid choice."
            )
        reason = body.get("reject_reason") or ""
        with self._lock:
            template = self._books.get(amojo_id, {}).get(template_id)
            review = next((r for r in template.reviews if r.id == review_id), None) if template else None
            if template is None or review is None:
                return None
            review.status = str(status)
            review.reject_reason = str(reason) if isinstance(reason, str) else ""
            template.updated_at = self._now()
            return review

    async def user_requests_review(
        self, amojo_id: str, template_id: int, account: dict[str, Any], source_id: int = 0
    ) -> tuple[Review, list[dict[str, Any]]]:
        """A user asks, in Kommo, for a waba template's review: a new review (`review`), and the account
        webhook `add_chat_template_review` posted, form-encoded, to its subscribers. The review and what
        each subscriber answered; KeyError for an unknown template."""
        review = self.request_review(amojo_id, template_id, source_id)
        template = self.get(amojo_id, template_id)
        if review is None or template is None:
            raise KeyError(f"no chat template {template_id}")
        added = template.to_json(with_reviews=True)
        added["reviews"] = added.pop("_embedded", {}).get("reviews", [])
        pairs = form_pairs("add[0]", added) + form_pairs("account", account)
        sent = await self.webhooks.fire(amojo_id, "add_chat_template_review", pairs)
        return review, [d.to_json() for d in sent]
