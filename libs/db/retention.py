"""Retention: rows whose time is over are deleted, a bounded batch at a time, by the service owning them.

Some tables only grow: a message's delivery history, album items already sent, install states and
settings sessions long expired. Each owning service lists its tables' `Rule`s (what has expired, keyed
by its primary key) and runs one `Pruner`, which deletes at most `batch_size` rows per statement in a
transaction of its own and pauses between batches, so no lock is held long and the service's own work
is never starved. Deleting rows that have expired is idempotent, so replicas could all run it; a
session advisory lock per service makes one of them do the work each time and the others skip.

Only what no invariant needs is ever named by a rule (see README, "Data retention"): nothing pending,
no dedup key within a platform's retry window, no message-map row a quote, edit or reaction may name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.schema import Column

from libs.observability import count_pruned

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
"""Rows per DELETE: small enough that a statement holds its row locks for milliseconds."""
BATCH_PAUSE_S = 0.2
"""Between two batches of a long backlog, so the owner's own queries always get their turn."""
RUN_EVERY_S = 3600.0
"""A run an hour (each replica waits this, give or take `JITTER`, so replicas do not line up)."""
JITTER = 0.2
FIRST_RUN_DELAY_S = 60.0
"""The first run comes within this after start-up (a random share of it), not an hour later."""

_LOCK = text("SELECT pg_try_advisory_lock(hashtext('retention'), hashtext(:name))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext('retention'), hashtext(:name))")


def history_keep(days: int) -> timedelta | None:
    """`BRIDGE_HISTORY_RETENTION_DAYS` as a window; 0 keeps history forever (None)."""
    return timedelta(days=days) if days > 0 else None


@dataclass(frozen=True)
class Rule:
    """Which rows of one table have expired.

    `expired(cutoff)` is the condition on the table's columns, where `cutoff` is the database's now minus
    `keep`; it must be served by an index. `key` is the table's primary key, by which a batch is chosen.
    `keep` None means keep forever: the rule does nothing.
    """

    key: Column[object]
    keep: timedelta | None
    expired: Callable[[ColumnElement[datetime]], ColumnElement[bool]]

    @property
    def table(self) -> str:
        return self.key.table.name

    def batch(self, keep: timedelta, size: int) -> Select[Any]:
        """The keys of at most `size` expired rows."""
        return select(self.key).where(self.expired(func.now() - keep)).limit(size)


class Pruner:
    """Deletes the expired rows of one service's tables, in bounded batches, now or every hour."""

    def __init__(
        self,
        engine: AsyncEngine,
        owner: str,
        rules: Sequence[Rule],
        *,
        batch_size: int = BATCH_SIZE,
        pause_s: float = BATCH_PAUSE_S,
        every_s: float = RUN_EVERY_S,
        first_run_delay_s: float = FIRST_RUN_DELAY_S,
    ) -> None:
        self._engine = engine
        self._owner = owner
        self._rules = list(rules)
        self._batch_size = batch_size
        self._pause_s = pause_s
        self._every_s = every_s
        self._first_run_delay_s = first_run_delay_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run_periodically())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run_once(self) -> dict[str, int] | None:
        """Prune every rule's table now: rows deleted per table, or None when another replica is at it."""
        async with self._engine.connect() as lock_conn:
            locked = bool(await lock_conn.scalar(_LOCK, {"name": self._owner}))
            await lock_conn.commit()  # the session lock outlives the transaction; nothing is left open
            if not locked:
                log.info("retention: another replica is pruning", extra={"owner": self._owner})
                return None
            try:
                return await self._prune_all()
            finally:
                await lock_conn.scalar(_UNLOCK, {"name": self._owner})
                await lock_conn.commit()

    async def _prune_all(self) -> dict[str, int]:
        started = time.monotonic()
        pruned: dict[str, int] = {}
        for rule in self._rules:
            if rule.keep is not None:
                pruned[rule.table] = pruned.get(rule.table, 0) + await self._prune(rule, rule.keep)
        log.info(
            "retention run",
            extra={"owner": self._owner, "pruned": pruned, "seconds": round(time.monotonic() - started, 3)},
        )
        return pruned

    async def _prune(self, rule: Rule, keep: timedelta) -> int:
        total = 0
        while True:
            chosen = rule.batch(keep, self._batch_size).scalar_subquery()
            async with self._engine.begin() as conn:
                result = await conn.execute(delete(rule.key.table).where(rule.key.in_(chosen)))
            deleted = result.rowcount or 0
            if deleted:
                count_pruned(rule.table, deleted)
            total += deleted
            if deleted < self._batch_size or self._stop.is_set():
                return total
            await self._pause(self._pause_s)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _run_periodically(self) -> None:
        await self._pause(random.uniform(0, self._first_run_delay_s))
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the next run tries again; retention never takes its service down
                log.exception("retention run failed", extra={"owner": self._owner})
            await self._pause(self._every_s * random.uniform(1 - JITTER, 1 + JITTER))
