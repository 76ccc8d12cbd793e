"""A manager's message of a chat template written in Kommo and approved through the bridge's review
(services/router/template_reviews.py): Kommo names it by its own id only (no `external_id`, which it does
not let an integration set on a template under review), with params keyed by Kommo's markers, so the hook
arrives as its text (or file). Before the message is routed, the raw hook's template id is looked up in
`template_reviews`: found, the message becomes that template, with the platform's key and each param keyed
as the platform's placeholder of its component (`body:{{1}}`, `header:{{1}}`, `button1:{{1}}`), the file
its header's. A template the bridge never submitted is Kommo's own and goes as the manager saw it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kommo_bridge.events.v1 import content_pb2, events_pb2
from sqlalchemy import desc, select
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.schema import connections, template_reviews

log = logging.getLogger(__name__)


def platform_params(
    params: list[content_pb2.TemplateParam], markers: dict[str, Any]
) -> list[content_pb2.TemplateParam]:
    """The hook's params keyed as the platform's placeholders, component by component."""
    values = {p.key.replace(" ", ""): p.value for p in params}
    keyed: list[content_pb2.TemplateParam] = []
    for component, order in markers.items():
        if not isinstance(order, list):
            continue
        for number, kommo_marker in enumerate(order, start=1):
            value = values.get(str(kommo_marker).replace(" ", ""), "")
            keyed.append(content_pb2.TemplateParam(key=f"{component}:{{{{{number}}}}}", value=value))
    return keyed


def kommo_template_of(raw: bytes) -> dict[str, Any] | None:
    """The hook's `message.message.template` when Kommo named it by its own id only (no external_id)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    message = body.get("message") if isinstance(body, dict) else None
    inner = message.get("message") if isinstance(message, dict) else None
    template = inner.get("template") if isinstance(inner, dict) else None
    if not isinstance(template, dict) or template.get("external_id"):
        return None
    template_id = template.get("id")
    return template if isinstance(template_id, int) and not isinstance(template_id, bool) else None


class ReviewedTemplates:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def resolve(self, event: events_pb2.KommoOutboundMessage) -> None:
        """In place: a message of a template submitted through the bridge goes as that template."""
        kind = event.content.WhichOneof("body")
        template = kommo_template_of(event.raw) if kind in ("text", "media") else None
        if template is None:
            return
        query = (
            select(template_reviews.c.external_key, template_reviews.c.markers)
            .join(connections, connections.c.id == template_reviews.c.connection_id)
            .where(
                template_reviews.c.kommo_template_id == int(template["id"]),
                template_reviews.c.external_key != "",
                connections.c.scope_id == event.scope_id,
            )
            .order_by(desc(template_reviews.c.id))
            .limit(1)
        )
        async with self._engine.connect() as conn:
            found = (await conn.execute(query)).first()
        if found is None:
            return  # Kommo's own: it goes as what the manager saw
        params = [
            content_pb2.TemplateParam(key=str(p.get("key") or ""), value=str(p.get("value") or ""))
            for p in template.get("params") or []
            if isinstance(p, dict)
        ]
        resolved = content_pb2.Template(
            kommo_template_id=int(template["id"]),
            external_id=found.external_key,
            content=str(template.get("content") or ""),
            params=platform_params(params, dict(found.markers or {})),
            rendered=event.content.text.body if kind == "text" else event.content.media.caption,
        )
        if kind == "media":
            resolved.header_media.CopyFrom(event.content.media)
            resolved.header_media.caption = ""
        event.content.CopyFrom(content_pb2.Content(template=resolved))
        log.info("kommo template resolved", extra={"template_id": resolved.kommo_template_id})
