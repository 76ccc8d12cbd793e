"""Kommo's review requests of chat templates, submitted to the platform, and its verdicts written back.

kommo_sender reads a requested template back from Kommo and hands it here (`SubmitTemplateReview`); the
connection of the review's source submits it (WhatsApp: `POST /{waba-id}/message_templates`). Each review
is one row of `template_reviews`, claimed before anything is submitted, so the same request twice (Kommo's
retries, bus redeliveries) submits once. A refusal at once (a name taken, an invalid parameter) is the
review's verdict: rejected, with the platform's reason. Later verdicts come with the template list the
router reads after a `message_template_status_update` or on its periodic reading: a template paired with a
review gets its verdict written on that review, and is not mirrored as a template of its own.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

import httpx
from kommo_bridge.auth.v1 import auth_pb2, auth_pb2_grpc
from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery, Publisher, Stream
from libs.config import Settings
from libs.db.schema import connections, template_reviews
from libs.errors import PermanentError
from libs.messengers.registry import TemplateSubmission, adapter_named
from libs.rpc import call
from libs.secret_names import MESSENGER_TOKEN
from services.router.connections import ConnectionRecord, ConnectionStore

log = logging.getLogger(__name__)

SUBMITTING: Final = "submitting"
VERDICTS: Final = frozenset({"approved", "paused", "rejected"})
REASON_LIMIT: Final = 500


def _platform_reason(error: PermanentError) -> str:
    """Meta's words, without our prefix naming the call (`whatsapp create template: (100) …`)."""
    text = str(error)
    _, _, after = text.partition(": ")
    return (after or text)[:REASON_LIMIT]


class TemplateReviews:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        auth: auth_pb2_grpc.AuthServiceAsyncStub,
        http: httpx.AsyncClient,
        publisher: Publisher,
        store: ConnectionStore,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._auth = auth
        self._http = http
        self._publisher = publisher
        self._store = store

    async def _connection_for(self, command: events_pb2.SubmitTemplateReview) -> ConnectionRecord | None:
        """The connection of the review's source; without one named, the account's only such connection."""
        candidates = [
            r
            for r in await self._store.list("")
            if r.scope_id == command.scope_id
            and r.state != "disconnected"
            and isinstance(adapter_named(r.platform), TemplateSubmission)
        ]
        named = [
            r for r in candidates if command.source_external_id and r.source_external_id == command.source_external_id
        ]
        if named:
            return named[0]
        return candidates[0] if len(candidates) == 1 else None

    async def submit(self, delivery: Delivery) -> None:
        command = delivery.decode(events_pb2.SubmitTemplateReview)
        record = await self._connection_for(command)
        if record is None:
            await self._verdict(
                command.scope_id, command.kommo_template_id, command.review_id, "rejected",
                "No WhatsApp number of this account is connected for the template's source.",
            )  # fmt: skip
            return
        async with self._engine.begin() as conn:
            claimed = await conn.execute(
                insert(template_reviews)
                .values(
                    account_id=command.kommo_account_id or command.scope_id,
                    kommo_template_id=command.kommo_template_id,
                    review_id=command.review_id,
                    connection_id=record.id,
                )
                .on_conflict_do_nothing(constraint="uq_template_reviews_review")
                .returning(template_reviews.c.id)
            )
            row_id = claimed.scalar_one_or_none()
            resumed = row_id is None  # claimed before: that attempt may have reached the platform
            if row_id is None:
                existing = await conn.execute(
                    select(template_reviews.c.id, template_reviews.c.status).where(
                        and_(
                            template_reviews.c.account_id == (command.kommo_account_id or command.scope_id),
                            template_reviews.c.kommo_template_id == command.kommo_template_id,
                            template_reviews.c.review_id == command.review_id,
                        )
                    )
                )
                found = existing.one()
                if found.status != SUBMITTING:
                    log.info("template review already submitted", extra={"template_id": command.kommo_template_id})
                    return
                row_id = found.id
        adapter = adapter_named(record.platform)
        assert isinstance(adapter, TemplateSubmission)
        token = (
            await call(self._auth.GetSecret, auth_pb2.GetSecretRequest(owner=record.id, kind=MESSENGER_TOKEN))
        ).value
        fallback = f"kommo_template_{command.kommo_template_id}"
        try:
            submitted = await adapter.submit_template(
                self._http,
                adapter_named(record.platform).api_base_url(self._settings),
                token,
                command.template,
                fallback,
                resumed,
            )
        except PermanentError as exc:
            reason = _platform_reason(exc)
            await self._record(row_id, status="rejected", reject_reason=reason, reported_status="rejected")
            await self._verdict(command.scope_id, command.kommo_template_id, command.review_id, "rejected", reason)
            log.info(
                "template refused by the platform", extra={"template_id": command.kommo_template_id, "reason": reason}
            )
            return
        waba_id, name, language = [*submitted.external_id.split(":"), "", "", ""][:3]
        await self._record(
            row_id,
            status=submitted.review_status,
            meta_template_id=submitted.platform_template_id,
            external_key=submitted.external_id,
            waba_id=waba_id,
            meta_name=name,
            language=language,
            markers={component: list(order) for component, order in submitted.markers.items()},
        )
        log.info(
            "template submitted for review",
            extra={"template_id": command.kommo_template_id, "platform_template_id": submitted.platform_template_id},
        )
        if submitted.review_status in VERDICTS:
            await self._record(row_id, reported_status=submitted.review_status)
            await self._verdict(
                command.scope_id, command.kommo_template_id, command.review_id, submitted.review_status, ""
            )

    async def _record(self, row_id: int, **values: object) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(template_reviews).where(template_reviews.c.id == row_id).values(**values))

    async def _verdict(
        self, scope_id: str, template_id: int, review_id: int, status: str, reason: str, reading: str = ""
    ) -> None:
        """`reading` tells verdicts apart that may recur (approved, paused, approved again)."""
        command = events_pb2.SetTemplateReview(
            scope_id=scope_id, kommo_template_id=template_id, review_id=review_id, status=status, reject_reason=reason
        )
        msg_id = f"template-review:{scope_id}:{template_id}:{review_id}:{status}:{reading}"
        await self._publisher.publish(Stream.CRM_COMMANDS, f"template-review:{template_id}", command, msg_id)

    async def paired(
        self, record: ConnectionRecord, templates: list[events_pb2.PlatformTemplate]
    ) -> list[events_pb2.PlatformTemplate]:
        """Write the platform's verdict on each template submitted for a Kommo review (once per change);
        returns the others, which are mirrored as templates of their own."""
        keys = {t.external_id: t for t in templates}
        if not keys:
            return templates
        # Only this account's reviews: two accounts may connect numbers of one business account, and each
        # account's reviews are written (and marked written) in its own Kommo only.
        of_this_account = select(connections.c.id).where(connections.c.scope_id == record.scope_id)
        query = select(template_reviews).where(
            template_reviews.c.external_key.in_(list(keys)), template_reviews.c.connection_id.in_(of_this_account)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        paired = {row.external_key for row in rows}
        for row in rows:
            template = keys[row.external_key]
            status = template.review_status
            if status not in VERDICTS or (
                status == row.reported_status and template.reject_reason == row.reject_reason
            ):
                continue
            await self._verdict(
                record.scope_id, row.kommo_template_id, row.review_id, status, template.reject_reason, str(uuid.uuid4())
            )
            await self._record(row.id, status=status, reported_status=status, reject_reason=template.reject_reason)
            log.info(
                "template verdict written to its kommo review",
                extra={"template_id": row.kommo_template_id, "status": status},
            )
        return [t for t in templates if t.external_id not in paired]
