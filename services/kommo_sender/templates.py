"""A messenger channel's templates as Kommo chat templates (§11 "Chat templates", type `waba`).

Each template is found by its `external_id` (the platform's key) before anything is written, under a lock
per template shared by every replica, so a list synced twice, or by two replicas at once, creates each
template once and afterwards only updates it. Kommo keeps a WABA template's verdict in reviews: a new one
is put on review (`POST …/review`), and the review then gets Meta's verdict (approved, paused, rejected);
a later verdict is written on the latest review, and a template Meta is reviewing again gets a new one.
Kommo lets a WABA template's content change only while it is a draft, so content is compared and written
only then (Meta too re-reviews an edited template, which arrives here as a new verdict).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from google.protobuf.json_format import MessageToDict
from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.kommo.rest import AccountAccess, ChatTemplate, KommoRestClient
from services.kommo_sender.crm import AccountTokens

log = logging.getLogger(__name__)

DRAFT: Final = "draft"
ON_REVIEW: Final = "review"


def template_fields(template: events_pb2.PlatformTemplate) -> dict[str, Any]:
    """The chat template's model fields (§11) for a platform template."""
    fields: dict[str, Any] = {
        "name": template.name,
        "content": template.content,
        "type": "waba",
        "external_id": template.external_id,
        "waba_category": template.category,
        "waba_language": template.language,
        "buttons": [MessageToDict(b, preserving_proto_field_name=True) for b in template.buttons],
    }
    if template.footer:
        fields["waba_footer"] = template.footer
    if template.header_type:
        fields["waba_header_type"] = template.header_type
    if template.header:
        fields["waba_header"] = template.header
    if template.examples:
        fields["waba_examples"] = dict(template.examples)
    return fields


def _changed(found: ChatTemplate, wanted: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in wanted.items() if found.fields.get(key) != value}


class TemplateSync:
    def __init__(self, engine: AsyncEngine, rest: KommoRestClient, tokens: AccountTokens) -> None:
        self._engine = engine
        self._rest = rest
        self._tokens = tokens

    async def sync(self, command: events_pb2.SyncTemplates) -> None:
        for template in command.templates:
            await self._one(command.scope_id, template)
        log.info(
            "kommo chat templates synced",
            extra={
                "scope_id": command.scope_id,
                "connection_id": command.connection_id,
                "templates": len(command.templates),
            },
        )

    async def _one(self, scope_id: str, template: events_pb2.PlatformTemplate) -> None:
        async with self._engine.begin() as conn:
            # One writer per template across replicas; the lock ends with the transaction.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"chat-template:{scope_id}:{template.external_id}"},
            )

            async def in_kommo(access: AccountAccess) -> None:
                await self._put(access, template)

            await self._tokens.using(scope_id, in_kommo)

    async def _put(self, access: AccountAccess, template: events_pb2.PlatformTemplate) -> None:
        wanted = template_fields(template)
        found = await self._rest.find_chat_template(access, template.external_id)
        if found is None:
            template_id = await self._rest.create_chat_template(access, wanted)
            status, reviews = DRAFT, tuple[int, ...]()
            log.info("kommo chat template created", extra={"template_id": template_id, "name": template.name})
        else:
            template_id, status, reviews = found.id, found.review_status or DRAFT, found.reviews
            changes = _changed(found, wanted)
            if changes and status == DRAFT:
                await self._rest.update_chat_template(access, template_id, changes)
            elif changes:
                log.info(
                    "kommo chat template content differs but is no longer editable",
                    extra={"template_id": template_id, "fields": sorted(changes)},
                )
        wanted_status = template.review_status
        if wanted_status == status and not (
            wanted_status == "rejected" and found is not None and self._reason_differs(found, template)
        ):
            return
        if wanted_status == ON_REVIEW or status in (DRAFT, "") or not reviews:
            review_id = await self._rest.request_review(access, template_id)
        else:
            review_id = max(reviews)
        if wanted_status != ON_REVIEW:
            await self._rest.set_review(access, template_id, review_id, wanted_status, template.reject_reason)
        log.info(
            "kommo chat template reviewed",
            extra={"template_id": template_id, "from": status, "to": wanted_status},
        )

    @staticmethod
    def _reason_differs(found: ChatTemplate, template: events_pb2.PlatformTemplate) -> bool:
        reviews = (found.fields.get("_embedded") or {}).get("reviews") or []
        latest = max((r for r in reviews if isinstance(r, dict)), key=lambda r: r.get("id", 0), default={})
        return str(latest.get("reject_reason") or "") != template.reject_reason
