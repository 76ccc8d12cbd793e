"""What auth prunes: install states and settings sessions a day after they expired (until then a late
click is still told "expired" rather than "unknown"), and used widget-token ids once their token expired
(a replay of an expired token is refused by its `exp` anyway). An expired row can never be used again, so
deleting it changes no answer that matters. Installations and secrets stay (the uninstall hook removes those).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.db.retention import Pruner, Rule
from libs.db.schema import oauth_states, settings_sessions, used_widget_tokens

EXPIRED_KEPT = timedelta(days=1)


def _state_expired(cutoff: ColumnElement[datetime]) -> ColumnElement[bool]:
    return oauth_states.c.expires_at < cutoff


def _session_expired(cutoff: ColumnElement[datetime]) -> ColumnElement[bool]:
    return settings_sessions.c.expires_at < cutoff


def _token_expired(cutoff: ColumnElement[datetime]) -> ColumnElement[bool]:
    return used_widget_tokens.c.expires_at < cutoff


def retention_rules() -> list[Rule]:
    return [
        Rule(oauth_states.c.state, EXPIRED_KEPT, _state_expired),
        Rule(settings_sessions.c.ticket_hash, EXPIRED_KEPT, _session_expired),
        Rule(used_widget_tokens.c.jti, timedelta(0), _token_expired),
    ]


def auth_pruner(engine: AsyncEngine) -> Pruner:
    return Pruner(engine, "auth", retention_rules())
