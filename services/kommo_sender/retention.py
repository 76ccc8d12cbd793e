"""What kommo_sender prunes: a manager message's delivery history (`delivery_events`), kept for audit and
debugging only, after `BRIDGE_HISTORY_RETENTION_DAYS` (0: forever).

`kommo_statuses` (the rank Kommo last saw) stays: a receipt can come weeks late, and without the rank a
late "delivered" would be posted over "read", a step back. `kommo_deliveries` and `kommo_chats` stay:
they are the Kommo hop's idempotency and the conversations' chats.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import Settings
from libs.db.retention import Pruner, Rule, history_keep
from libs.db.schema import delivery_events


def _recorded_before(cutoff: ColumnElement[datetime]) -> ColumnElement[bool]:
    return delivery_events.c.recorded_at < cutoff


def retention_rules(settings: Settings) -> list[Rule]:
    return [Rule(delivery_events.c.id, history_keep(settings.history_retention_days), _recorded_before)]


def kommo_sender_pruner(engine: AsyncEngine, settings: Settings) -> Pruner:
    return Pruner(engine, "kommo_sender", retention_rules(settings))
