"""The message map: each carried message as both sides know it, so a quote, an edit or a reaction that
names a message by one side's id reaches the same message on the other side.

A client's message is known by its platform id from the start (the router records it) and by our msgid
(the row's id); Kommo's id of it arrives later, when kommo_sender reports `KommoAccepted`. A manager's
message is known by Kommo's id from the start; the platform's id arrives with messenger_sender's
`DeliveryReport`. Both reports come over the reports stream, on the router's own consumer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from kommo_bridge.events.v1 import events_pb2
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.bus import Delivery
from libs.db.schema import conversations, messages
from libs.errors import RetryableError

log = logging.getLogger(__name__)

TARGET_WAIT_S: Final = 1.0
"""How long an action on a message not mapped yet waits before it is tried again."""
TARGET_WAIT_ATTEMPTS: Final = 6
"""How many times it is tried: the report that maps a message normally follows its send in well under a
second, so after this the message is taken as one the bridge never carried (older than the bridge)."""
REPORT_EXPECTED_WITHIN: Final = timedelta(minutes=1)
"""A message carried this recently whose other id is still unknown has its report coming."""


@dataclass(frozen=True)
class MappedMessage:
    # Our id of the message: the msgid at amojo of a client's message.
    id: str
    conversation_id: str
    # "in" (client → Kommo) or "out" (manager → client).
    direction: str
    platform_message_id: str
    kommo_message_id: str
    content_digest: str
    manager_reaction: str

    def as_kommo_ref(self) -> events_pb2.MessageRef:
        """How amojo knows this message: our msgid for a client's message (valid from the moment amojo
        took it, whether or not its Kommo id has reached the map), Kommo's id for a manager's."""
        if self.direction == "in":
            return events_pb2.MessageRef(msgid=self.id)
        return events_pb2.MessageRef(kommo_message_id=self.kommo_message_id)


_COLUMNS = [messages.c[name] for name in MappedMessage.__dataclass_fields__]


def wait_for_target(attempt: int, what: str, *, pending: bool, **context: str) -> None:
    """An action names a message the map does not know (yet). While a report that may map it is still
    coming (`pending`), retry a bounded number of times; then give up with a warning. Returns only when
    giving up; the caller then drops the action.

    Waiting helps only for ids that arrive in another lane (the reports): the action's own lane is held
    while it waits, so a target behind it in that lane would never be reached by waiting.
    """
    if pending and attempt < TARGET_WAIT_ATTEMPTS:
        raise RetryableError(f"{what}: the target message is not mapped yet", retry_after=TARGET_WAIT_S)
    log.warning(
        "dropped: the message it names is unknown to the bridge", extra={**context, "what": what, "attempts": attempt}
    )


class MessageMap:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def conversation_of(self, connection_id: str, chat_id: str) -> str | None:
        """The conversation of a client's chat, if the client ever wrote."""
        query = select(conversations.c.id).where(
            conversations.c.connection_id == connection_id, conversations.c.chat_id == chat_id
        )
        async with self._engine.connect() as conn:
            found = (await conn.execute(query)).scalar()
        return str(found) if found is not None else None

    async def by_platform_id(self, conversation_id: str, platform_message_id: str) -> MappedMessage | None:
        if not platform_message_id:
            return None
        query = select(*_COLUMNS).where(
            messages.c.conversation_id == conversation_id, messages.c.platform_message_id == platform_message_id
        )
        return await self._one(query)

    async def by_kommo_ref(self, conversation_id: str, ref: events_pb2.MessageRef) -> MappedMessage | None:
        """The message a Kommo hook names: by Kommo's id, or by our msgid (a client's message)."""
        named = [
            *([messages.c.kommo_message_id == ref.kommo_message_id] if ref.kommo_message_id else []),
            *([messages.c.id == ref.msgid] if ref.msgid else []),
        ]
        if not named:
            return None
        query = select(*_COLUMNS).where(messages.c.conversation_id == conversation_id, or_(*named))
        return await self._one(query)

    async def _one(self, query: Select[Any]) -> MappedMessage | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return MappedMessage(**{name: getattr(row, name) for name in MappedMessage.__dataclass_fields__})

    async def report_pending(self, conversation_id: str) -> bool:
        """A message of this conversation was carried a moment ago and the id its report brings is not
        known yet (the platform's id of a manager's message, Kommo's of a client's): an action that names
        a message the map does not know may name one of these."""
        since = datetime.now(UTC) - REPORT_EXPECTED_WITHIN
        unmapped = or_(
            (messages.c.direction == "out") & (messages.c.platform_message_id == ""),
            (messages.c.direction == "in") & (messages.c.kommo_message_id == ""),
        )
        query = select(func.count()).where(
            messages.c.conversation_id == conversation_id, messages.c.created_at >= since, unmapped
        )
        async with self._engine.connect() as conn:
            return bool((await conn.execute(query)).scalar())

    async def last_manager_message_at(self, conversation_id: str) -> datetime | None:
        query = select(func.max(messages.c.created_at)).where(
            messages.c.conversation_id == conversation_id, messages.c.direction == "out"
        )
        async with self._engine.connect() as conn:
            found: datetime | None = (await conn.execute(query)).scalar()
        return found

    async def learn_platform_id(self, kommo_message_id: str, platform_message_id: str) -> bool:
        statement = (
            update(messages)
            .where(messages.c.kommo_message_id == kommo_message_id, messages.c.direction == "out")
            .values(platform_message_id=platform_message_id)
        )
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def learn_kommo_id(self, msgid: str, kommo_message_id: str) -> bool:
        statement = update(messages).where(messages.c.id == msgid).values(kommo_message_id=kommo_message_id)
        async with self._engine.begin() as conn:
            return bool((await conn.execute(statement)).rowcount)

    async def set_content_digest(self, message_id: str, digest: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(messages).where(messages.c.id == message_id).values(content_digest=digest))

    async def set_manager_reaction(self, message_id: str, emoji: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(messages).where(messages.c.id == message_id).values(manager_reaction=emoji))


class MapLearner:
    """The router's consumer of the reports stream: it only learns ids for the map (the statuses in the
    same reports are kommo_sender's business)."""

    def __init__(self, message_map: MessageMap) -> None:
        self._map = message_map

    async def delivery_report(self, delivery: Delivery) -> None:
        report = delivery.decode(events_pb2.DeliveryReport)
        if report.platform_message_id and report.kommo_message_id:
            await self._map.learn_platform_id(report.kommo_message_id, report.platform_message_id)

    async def kommo_accepted(self, delivery: Delivery) -> None:
        accepted = delivery.decode(events_pb2.KommoAccepted)
        if accepted.msgid and accepted.kommo_message_id:
            await self._map.learn_kommo_id(accepted.msgid, accepted.kommo_message_id)
