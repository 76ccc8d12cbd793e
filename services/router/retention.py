"""What the router prunes: the items of albums already sent (`album_items` with `flushed_at`), a day after.

A pending item (not flushed) is never touched. A sent item is pure bookkeeping: a hook that comes again is
stopped by the message's dedup key in `messages` before it could reach the album, and JetStream redelivers
within seconds. `messages` (dedup keys and the message map that quotes, edits and reactions of any past
message name), `held_inbound` / `held_outbound` (rows leave when their work is done) and
`client_identities` stay.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.retention import Pruner, Rule
from libs.db.schema import album_items

SENT_ALBUM_ITEMS_KEPT = timedelta(days=1)


def _sent_before(cutoff: ColumnElement[datetime]) -> ColumnElement[bool]:
    return and_(album_items.c.flushed_at.is_not(None), album_items.c.flushed_at < cutoff)


def retention_rules() -> list[Rule]:
    return [Rule(album_items.c.id, SENT_ALBUM_ITEMS_KEPT, _sent_before)]


def router_pruner(engine: AsyncEngine) -> Pruner:
    return Pruner(engine, "router", retention_rules())
