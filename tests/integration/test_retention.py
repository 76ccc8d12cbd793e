"""Retention (libs/db/retention.py and each owner's rules) against real PostgreSQL: expired rows go, in
batches that loop until the backlog is gone; recent rows and rows still needed (pending album items,
unexpired sessions, a message's last status) stay; retention 0 keeps history forever; a replica finding
another one at work skips; the periodic job runs on its own and stops when told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.config import ConfigError, Settings, load_settings
from libs.db import create_engine
from libs.db.retention import Pruner
from libs.db.schema import (
    album_items,
    delivery_events,
    kommo_statuses,
    oauth_states,
    settings_sessions,
    used_widget_tokens,
)
from libs.observability import service_name
from services.auth.retention import auth_pruner
from services.auth.retention import retention_rules as auth_rules
from services.kommo_sender.retention import kommo_sender_pruner, retention_rules
from services.router.retention import SENT_ALBUM_ITEMS_KEPT, router_pruner
from services.router.retention import retention_rules as router_rules
from tests.support import wait_for

NOW = datetime.now(UTC)
RETENTION_DAYS = 30
OLD = NOW - timedelta(days=RETENTION_DAYS + 1)
RECENT = NOW - timedelta(days=RETENTION_DAYS - 1)
SMALL_BATCH = 3
NO_PAUSE_S = 0.0


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _settings(days: int) -> Settings:
    return Settings(_env_file=None, history_retention_days=days)  # type: ignore[call-arg]


async def _count(engine: AsyncEngine, table: object, *where: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)))  # type: ignore[arg-type]


async def _add_events(engine: AsyncEngine, prefix: str, count: int, recorded_at: datetime) -> None:
    rows = [
        {
            "kommo_msgid": f"{prefix}-{i}",
            "scope_id": "scope",
            "state": "delivered",
            "occurred_at": recorded_at,
            "recorded_at": recorded_at,
            "posted": True,
        }
        for i in range(count)
    ]
    async with engine.begin() as conn:
        await conn.execute(delivery_events.insert(), rows)


def _pruned_counter(table: str) -> float:
    value = REGISTRY.get_sample_value("bridge_rows_pruned_total", {"service": service_name(), "table": table})
    return value or 0.0


async def test_old_delivery_history_goes_in_batches_and_recent_history_stays(engine: AsyncEngine) -> None:
    await _add_events(engine, "old", 10, OLD)
    await _add_events(engine, "recent", 2, RECENT)
    async with engine.begin() as conn:  # the rank Kommo last saw is never history: it stays
        await conn.execute(kommo_statuses.insert().values(kommo_msgid="old-0", scope_id="scope", state=4))
    counted_before = _pruned_counter("delivery_events")

    pruner = Pruner(
        engine,
        "kommo_sender",
        retention_rules(_settings(RETENTION_DAYS)),
        batch_size=SMALL_BATCH,
        pause_s=NO_PAUSE_S,
    )
    # Ten rows in batches of three: one statement would have left seven; the loop takes them all.
    assert await pruner.run_once() == {"delivery_events": 10}
    assert await _count(engine, delivery_events) == 2
    assert await _count(engine, delivery_events, delivery_events.c.kommo_msgid.like("recent-%")) == 2
    assert await _count(engine, kommo_statuses) == 1
    assert _pruned_counter("delivery_events") - counted_before == 10
    # Running again finds nothing more: deleting is idempotent.
    assert await pruner.run_once() == {"delivery_events": 0}


async def test_retention_zero_keeps_history_forever(engine: AsyncEngine) -> None:
    ancient = NOW - timedelta(days=3650)
    await _add_events(engine, "ancient", 4, ancient)
    assert await kommo_sender_pruner(engine, _settings(0)).run_once() == {}
    assert await _count(engine, delivery_events) == 4


async def test_items_of_sent_albums_go_and_pending_items_stay(engine: AsyncEngine) -> None:
    long_sent = NOW - SENT_ALBUM_ITEMS_KEPT - timedelta(hours=1)
    just_sent = NOW - timedelta(hours=1)
    rows = [
        # A pending item is never touched, however old: it is still to be sent.
        {"kommo_message_id": "pending", "created_at": OLD, "flushed_at": None},
        {"kommo_message_id": "long-sent", "created_at": long_sent, "flushed_at": long_sent},
        {"kommo_message_id": "just-sent", "created_at": just_sent, "flushed_at": just_sent},
    ]
    async with engine.begin() as conn:
        await conn.execute(
            album_items.insert(),
            [{"conversation_id": "conv", "media_group_id": "album", "command": b"\x00", **row} for row in rows],
        )

    assert await router_pruner(engine).run_once() == {"album_items": 1}
    async with engine.connect() as conn:
        left = set((await conn.scalars(select(album_items.c.kommo_message_id))).all())
    assert left == {"pending", "just-sent"}


async def test_expired_install_states_and_sessions_go_and_live_ones_stay(engine: AsyncEngine) -> None:
    long_expired = NOW - timedelta(days=2)
    just_expired = NOW - timedelta(minutes=5)
    valid = NOW + timedelta(hours=1)
    async with engine.begin() as conn:
        await conn.execute(
            oauth_states.insert(),
            [
                {"state": "long-expired", "expires_at": long_expired},
                {"state": "just-expired", "expires_at": just_expired},
                {"state": "valid", "expires_at": valid},
            ],
        )
        await conn.execute(
            settings_sessions.insert(),
            [
                {"ticket_hash": name, "account_id": "acc", "ticket_expires_at": expires, "expires_at": expires}
                for name, expires in (("long-expired", long_expired), ("just-expired", just_expired), ("valid", valid))
            ],
        )
        await conn.execute(
            used_widget_tokens.insert(),
            [{"jti": "expired", "expires_at": just_expired}, {"jti": "valid", "expires_at": valid}],
        )

    assert await auth_pruner(engine).run_once() == {
        "oauth_states": 1,
        "settings_sessions": 1,
        "used_widget_tokens": 1,
    }
    async with engine.connect() as conn:
        assert set((await conn.scalars(select(oauth_states.c.state))).all()) == {"just-expired", "valid"}
        assert set((await conn.scalars(select(settings_sessions.c.ticket_hash))).all()) == {"just-expired", "valid"}
        assert set((await conn.scalars(select(used_widget_tokens.c.jti))).all()) == {"valid"}


async def test_a_replica_skips_while_another_one_prunes(engine: AsyncEngine) -> None:
    await _add_events(engine, "old", 2, OLD)
    pruner = kommo_sender_pruner(engine, _settings(RETENTION_DAYS))
    key = "hashtext('retention'), hashtext('kommo_sender')"
    async with engine.connect() as other_replica:
        await other_replica.execute(text(f"SELECT pg_advisory_lock({key})"))
        assert await pruner.run_once() is None
        assert await _count(engine, delivery_events) == 2
        await other_replica.execute(text(f"SELECT pg_advisory_unlock({key})"))
        await other_replica.commit()
    assert await pruner.run_once() == {"delivery_events": 2}


async def test_the_periodic_job_prunes_on_its_own_and_stops(engine: AsyncEngine) -> None:
    await _add_events(engine, "old", 5, OLD)
    await _add_events(engine, "recent", 1, RECENT)
    pruner = Pruner(
        engine,
        "kommo_sender",
        retention_rules(_settings(RETENTION_DAYS)),
        batch_size=SMALL_BATCH,
        pause_s=NO_PAUSE_S,
        first_run_delay_s=NO_PAUSE_S,
    )
    pruner.start()
    try:

        async def only_recent_left() -> bool:
            return await _count(engine, delivery_events) == 1

        await wait_for(only_recent_left, what="the periodic run to prune old history")
    finally:
        await pruner.stop()
    assert await _count(engine, delivery_events, delivery_events.c.kommo_msgid == "recent-0") == 1


async def test_every_rule_finds_its_batch_through_an_index(engine: AsyncEngine) -> None:
    """With sequential scans priced out, a plan still scanning a whole table has no index to use."""
    rules = [*retention_rules(_settings(RETENTION_DAYS)), *router_rules(), *auth_rules()]
    async with engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        for rule in rules:
            assert rule.keep is not None
            compiled = rule.batch(rule.keep, SMALL_BATCH).compile(
                engine.sync_engine, compile_kwargs={"literal_binds": True}
            )
            plan = "\n".join((await conn.scalars(text(f"EXPLAIN {compiled}"))).all())
            assert "Seq Scan" not in plan, (rule.table, plan)
            assert "Index" in plan, (rule.table, plan)


def test_history_retention_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGE_HISTORY_RETENTION_DAYS", raising=False)
    assert load_settings().history_retention_days == RETENTION_DAYS  # the default: 30 days
    monkeypatch.setenv("BRIDGE_HISTORY_RETENTION_DAYS", "0")
    assert load_settings().history_retention_days == 0
    monkeypatch.setenv("BRIDGE_HISTORY_RETENTION_DAYS", "-1")
    with pytest.raises(ConfigError, match="BRIDGE_HISTORY_RETENTION_DAYS"):
        load_settings()
