"""Kommo's side of a chat template's review (§11): the subscription to `add_chat_template_review`, reading a
requested template back, and writing the platform's verdict on its review.

The account webhook is only a hint (Kommo signs none): each template it names is fetched with the account's
token, and only a WABA template Kommo says is on review, and that is not one the bridge mirrored from the
platform itself, goes on to the router to be submitted (`SubmitTemplateReview`), naming the review Kommo
opened and the connection of that review's source. The verdict comes back as `SetTemplateReview` and is
written with `POST /api/v4/chats/templates/{id}/review/{review_id}`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Publisher, Stream
from libs.db.schema import kommo_sources
from libs.errors import PermanentError
from libs.kommo.account_hooks import TEMPLATE_REVIEW_EVENT, destination
from libs.kommo.rest import AccountAccess, ChatTemplate, KommoRestClient
from services.kommo_sender.crm import AccountTokens

log = logging.getLogger(__name__)

ON_REVIEW: Final = "review"
_KEY_PARTS: Final = 3
_MEDIA_FORMATS: Final = (("image", "IMAGE"), ("picture", "IMAGE"), ("photo", "IMAGE"), ("video", "VIDEO"))


def _mirror_key(external_id: str) -> bool:
    """A template the bridge mirrored from the platform (`<account>:<name>:<language>`): never submitted."""
    parts = external_id.split(":")
    return len(parts) == _KEY_PARTS and all(parts)


def header_format(attachment: Any) -> str:
    """Meta's header format for the chat template's attachment (a picture, a video, else a document)."""
    kind = str(attachment.get("type") or "").lower() if isinstance(attachment, dict) else ""
    return next((fmt for word, fmt in _MEDIA_FORMATS if word in kind), "DOCUMENT" if kind else "IMAGE")


def platform_template(fields: dict[str, Any]) -> events_pb2.PlatformTemplate:
    """The chat template's fields (§11 model and WABA fields) as the router submits them."""
    header_type = str(fields.get("waba_header_type") or "")
    header = str(fields.get("waba_header") or "")
    if header_type == "media":
        header = header_format(fields.get("attachment"))
    examples = fields.get("waba_examples")
    buttons = [
        events_pb2.TemplateButton(
            type=str(b.get("type") or "inline"), text=str(b.get("text") or ""), url=str(b.get("url") or "")
        )
        for b in fields.get("buttons") or []
        if isinstance(b, dict)
    ]
    return events_pb2.PlatformTemplate(
        name=str(fields.get("name") or ""),
        language=str(fields.get("waba_language") or ""),
        category=str(fields.get("waba_category") or ""),
        content=str(fields.get("content") or ""),
        header=header,
        header_type=header_type if header else "",
        footer=str(fields.get("waba_footer") or ""),
        examples={str(k): str(v) for k, v in examples.items()} if isinstance(examples, dict) else {},
        buttons=buttons,
    )


def _latest_review(template: ChatTemplate) -> dict[str, Any]:
    reviews = (template.fields.get("_embedded") or {}).get("reviews") or []
    return max((r for r in reviews if isinstance(r, dict)), key=lambda r: int(r.get("id") or 0), default={})


class KommoTemplateReviews:
    def __init__(
        self,
        engine: AsyncEngine,
        rest: KommoRestClient,
        tokens: AccountTokens,
        publisher: Publisher,
        public_url: str,
        channel_secret: str,
    ) -> None:
        self._engine = engine
        self._rest = rest
        self._tokens = tokens
        self._publisher = publisher
        self._public_url = public_url
        self._channel_secret = channel_secret
        self._subscribed: set[str] = set()

    async def ensure_subscribed(self, scope_id: str) -> None:
        """Have Kommo post the account's review requests to the bridge (once per account per process)."""
        if scope_id in self._subscribed:
            return
        url = destination(self._public_url, self._channel_secret, scope_id)

        async def subscribe(access: AccountAccess) -> None:
            await self._rest.subscribe_webhook(access, url, [TEMPLATE_REVIEW_EVENT])

        try:
            await self._tokens.using(scope_id, subscribe)
        except PermanentError as exc:  # the templates are synced; the next sync tries again
            log.warning(
                "kommo template review requests not subscribed", extra={"scope_id": scope_id, "reason": str(exc)}
            )
            return
        self._subscribed.add(scope_id)
        log.info("kommo template review requests subscribed", extra={"scope_id": scope_id})

    async def requested(self, command: events_pb2.ChatTemplateReviewRequested) -> None:
        for template_id in command.kommo_template_ids:
            await self._one(command, template_id)

    async def _one(self, command: events_pb2.ChatTemplateReviewRequested, template_id: int) -> None:
        async def read(access: AccountAccess) -> ChatTemplate | None:
            return await self._rest.chat_template(access, template_id)

        template = await self._tokens.using(command.scope_id, read)
        review = _latest_review(template) if template is not None else {}
        if (
            template is None
            or template.fields.get("type") != "waba"
            or _mirror_key(template.external_id)
            or review.get("status") != ON_REVIEW
            or not isinstance(review.get("id"), int)
        ):
            log.info("kommo review request ignored", extra={"scope_id": command.scope_id, "template_id": template_id})
            return
        submit = events_pb2.SubmitTemplateReview(
            scope_id=command.scope_id,
            source_external_id=await self._source_key(command.scope_id, int(review.get("source_id") or 0)),
            kommo_template_id=template.id,
            review_id=int(review["id"]),
            template=platform_template(template.fields),
            kommo_account_id=str(template.fields.get("account_id") or command.kommo_account_id or ""),
        )
        msg_id = f"submit-template-review:{command.scope_id}:{template.id}:{review['id']}"
        await self._publisher.publish(Stream.OUTBOUND, f"template-review:{template.id}", submit, msg_id)
        log.info("kommo template sent for review", extra={"template_id": template.id, "review_id": review["id"]})

    async def _source_key(self, scope_id: str, source_id: int) -> str:
        if not source_id:
            return ""
        query = select(kommo_sources.c.external_id).where(
            kommo_sources.c.scope_id == scope_id, kommo_sources.c.kommo_source_id == source_id
        )
        async with self._engine.connect() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
        return str(found or "")

    async def write_verdict(self, command: events_pb2.SetTemplateReview) -> None:
        async def write(access: AccountAccess) -> None:
            await self._rest.set_review(
                access, command.kommo_template_id, command.review_id, command.status, command.reject_reason
            )

        await self._tokens.using(command.scope_id, write)
        log.info(
            "kommo template review decided",
            extra={"template_id": command.kommo_template_id, "review_id": command.review_id, "status": command.status},
        )
